"""The toy recipe's settings (ToyRecipe) and the run folder's record of them, OUT/recipe.json."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...sampling.partition import Partition
from ..flow import PartitionMix

# the recipe's stages, in order: the one list of their names (command line, checks, run)
STAGES = ("autoencoder", "cache", "teacher", "student", "export")


@dataclass
class ToyRecipe:
    """Every number of the shipped model's recipe (docs/training.md says why)."""

    out: str = "runs/toy"
    seed: int = 0
    size: int = 64
    ae_channels: int = 8
    ae_widths: tuple[int, ...] = (32, 64)
    ae_sprite_weight: float = 20.0
    ae_steps: int = 1200
    ae_batch: int = 32
    cache_clips: int = 6000
    clip_frames: int = 24
    transition_share: float = 0.2
    empty_share: float = 0.03
    appear_clips: int = 600  # extra clips (cache-appear.pt): background only, then an animal from a random frame on
    teacher_steps: int = 2400
    batch: int = 16
    lr: float = 5e-4
    warmup: int = 200
    ema: float = 0.999
    text_dropout: float = 0.1
    mix: PartitionMix = field(default_factory=PartitionMix)
    teacher_partition: Partition = field(default_factory=lambda: Partition(chunks=8, chunk_frames=2, micro_steps=4))
    cfg_scale: float = 1.5  # the teacher's guidance, folded into the student (docs/training.md: the scan)
    distill_steps: int = 1000
    distill_batch: int = 8
    distill_lr: float = 1e-4
    uniform_fraction: float = 0.25
    sprite_weight_flow: float = 10.0  # sprite cells weigh 1 + this in the teacher's loss (cache with masks)
    teacher_weights: str = "raw"  # "raw" or "ema": which teacher weights are shipped and distilled from
    # hidden channels of the DiT's per-frame conv refiner (ModelConfig.head_conv; 0: none, as shipped up to v12); a
    # teacher_from file without one grows it (its output unchanged until the refiner trains)
    head_conv: int = 0
    # > 0: the teacher continued on the full mix with the sprite weight only on frames with sigma <= this bound
    # (stage teacher-refine). Weighing the true sprite's cells biases the loss's minimiser towards drawing a
    # sprite wherever the noisy input leaves its place open: a second sprite (docs/training.md). On clean
    # enough frames the place is decided and the weight only sharpens the sprite. Off in the shipped recipe:
    # measured, it halves the doubles but the sprite is then lost on a quarter of the frames
    refine_steps: int = 0
    refine_lr: float = 2e-4
    refine_sprite_sigma_max: float = 0.5
    # which frames of a sample the refine's and tune's bounds select: "frame" (each by its own sigma) or "context"
    # (all of a sample's frames when its cleanest frame is within the bound; v14 measured it: better shapes and
    # walking, more doubles; flow_matching_loss, docs/training.md)
    sprite_gate: str = "frame"
    # clips with a jumping scene are drawn this many times as often in the refine (1: as the cache holds them); the
    # refine trains the uniform layout too, where the cold start's first hops are drawn (docs/training.md: jumps)
    refine_jump_weight: float = 1.0
    # > 0: every flow stage weighs frames with sigma in [sigma_boost_lo, sigma_boost_hi] 1 + this (a weight of the
    # noise level alone does not bias the minimiser): where the sprite's shape forms (docs/training.md). Off in v7
    sigma_boost: float = 0.0
    sigma_boost_lo: float = 0.7
    sigma_boost_hi: float = 0.95
    tune_steps: int = 600  # > 0: tune the teacher on streaming partitions (no c = B), to continue hops
    tune_sprite_sigma_max: float = 1.0  # sprite_weight_flow on the tune's frames with sigma <= this (1: every frame)
    tune_lr: float = 2e-4
    tune_jump_weight: float = 3.0  # clips with a jumping scene are drawn this many times as often
    tune_chunk_sizes: tuple[int, ...] = (1, 2, 4, 8)
    tune_chunk_probs: tuple[float, ...] = (0.2, 0.5, 0.2, 0.1)
    # with tune_steps > 0: which teacher the student's uniform (cold-start) samples are distilled from; the
    # tune never sees the uniform layout, so "untuned" keeps the teacher from before it as their expert
    cold_start_teacher: str = "untuned"
    # the exported models' uniform start, calls per band (a model default; 0: as streaming): 4 was chosen for v12
    # on the dev set (half its empty first frames gone, docs/training.md); the probes keep the streaming steps
    cold_micro_steps: int = 4
    variant: str = "streamdit"  # or a baseline: "diagonal", "extension"
    codec_from: str | None = None  # take the autoencoder from this checkpoint instead of training one
    teacher_from: str | None = None  # start from this exported teacher (DiT, text encoder) instead of training one
    # every stage's training steps: "bfloat16" autocast and/or torch.compile (1.4-1.7x together on the 2-core
    # CPU, docs/training.md); off in the shipped recipe, which was trained in float32, eager
    train_autocast: str = ""
    train_compile: int = 0
    # where the DiT stages train ("cpu", "cuda", "cuda:1"); the autoencoder, the latent cache, the probes and the
    # exports stay on the CPU. Not part of a run's identity: a run started on one device resumes on another
    device: str = "cpu"

    def __post_init__(self):
        if self.cold_start_teacher not in ("tuned", "untuned"):
            raise ValueError(f"cold_start_teacher must be 'tuned' or 'untuned', got {self.cold_start_teacher!r}")
        if self.sprite_gate not in ("frame", "context"):
            raise ValueError(f"sprite_gate must be 'frame' or 'context', got {self.sprite_gate!r}")
        for name in ("refine_jump_weight", "tune_jump_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more (how often a jumping clip is drawn), "
                                 f"got {getattr(self, name)!r}")
        if self.head_conv < 0:
            raise ValueError(f"head_conv must be 0 (no refiner) or a positive channel count, got {self.head_conv!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, ValueError):
            raise ValueError(f"device must name a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                             f"got {self.device!r}") from None
        if self.train_autocast not in ("", "bfloat16"):
            raise ValueError(f"train_autocast must be '' (float32) or 'bfloat16', got {self.train_autocast!r}")

    @classmethod
    def quick(cls, out: str) -> ToyRecipe:
        """A few steps of every stage (tests and smoke runs)."""
        return cls(out=out, ae_steps=3, ae_batch=4, cache_clips=8, appear_clips=2, teacher_steps=3, batch=2, warmup=1,
                   distill_steps=2, distill_batch=2, tune_steps=2, refine_steps=2,
                   teacher_partition=Partition(chunks=8, chunk_frames=2, micro_steps=1))

    @classmethod
    def baseline(cls, variant: str, out: str, **kw) -> ToyRecipe:
        """The paper's comparison models at the teacher's compute per frame (2 network calls per frame).

        Trained the same way as the teacher, on the same codec and cache, and exported as teachers only.
        diagonal: streaming with c = 1 (N = 16, s = 2); the mix keeps 15% c = 16 samples only so that the
        stream can start coherently, as FIFO-Diffusion starts from a clip of its base model.
        extension: N = 1, c = 8, K = 8 reference frames, s = 16: each chunk is denoised from noise
        next to the last 8 finished frames; 25% of samples have K = 0 (the first chunk).
        Both train on the v3 data (no appearing clips), as they were measured.
        """
        kw.setdefault("appear_clips", 0)
        kw.setdefault("tune_steps", 0)  # measured without the tune (it came later)
        kw.setdefault("refine_steps", 0)  # nor the refinement
        if variant == "diagonal":
            return cls(out=out, variant=variant, mix=PartitionMix(16, (1, 16), (0.85, 0.15)),
                       teacher_partition=Partition(chunks=16, chunk_frames=1, micro_steps=2), **kw)
        if variant == "extension":
            return cls(out=out, variant=variant, mix=PartitionMix(8, (8,), (1.0,), (0, 8), (0.25, 0.75)),
                       teacher_partition=Partition(chunks=1, chunk_frames=8, micro_steps=16, ref_frames=8), **kw)
        raise ValueError(f"unknown baseline {variant!r}; use 'diagonal' or 'extension'")

    @property
    def crop_frames(self) -> int:
        """Frames per training crop: the longest reference context plus the denoised frames."""
        return max(self.mix.ref_frames) + self.mix.stream_frames

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["teacher_partition"] = self.teacher_partition.to_dict()
        return d

    def override(self, pairs: list[str]) -> ToyRecipe:
        """Set plain number or text fields from "key=value" strings (the CLI's --set); errors list the keys."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("out", "variant")}
        plain = [k for k, v in values.items() if type(v) in (int, float, str)]
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in plain:
                raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(plain))}")
            before = getattr(self, key)
            kind = type(before)
            try:
                setattr(self, key, kind(value))
            except ValueError:
                raise ValueError(f"--set {pair!r}: {key} takes a {kind.__name__}, got {value!r}") from None
            try:
                self.__post_init__()
            except ValueError:
                setattr(self, key, before)  # a refused value leaves the recipe as it was
                raise
        return self

    def check_resumable(self) -> None:
        """Refuse to continue a run folder started with another recipe (its checkpoints would not match)."""
        path = Path(self.out) / "recipe.json"
        if not path.is_file():
            return
        stored = json.loads(path.read_text()).get("recipe", {})
        now = json.loads(json.dumps(self.to_dict()))
        # keys a run did not record (written before they existed) are not compared
        diff = [f"{k}: {stored[k]!r} there, {v!r} now" for k, v in now.items()
                if k not in ("out", "device") and k in stored and stored[k] != v]
        if diff:
            raise ValueError(f"{self.out} was started with another recipe ({'; '.join(diff)}): "
                             "use a new --out, or the same settings to resume")


def record_stage(recipe: ToyRecipe, stage: str, info: dict) -> None:
    """Add a finished stage's numbers to OUT/recipe.json (written with the recipe on first use)."""
    path = Path(recipe.out) / "recipe.json"
    data = json.loads(path.read_text()) if path.is_file() else {"recipe": recipe.to_dict(), "stages": {}}
    data["stages"][stage] = info
    path.write_text(json.dumps(data, indent=2))
