"""The toy model's full recipe, one command, resumable stage by stage:

1. autoencoder codec on rendered frames      -> OUT/autoencoder.safetensors
2. latent cache of rendered clips             -> OUT/cache.pt (not shipped)
3. teacher: buffered flow matching, mixed partitions, text dropout -> OUT/teacher/
3b. teacher-tune (tune_steps > 0): the teacher tuned on streaming partitions only, jumping clips drawn
   more often -> OUT/teacher-tune/ (docs/training.md: the hop's continuation)
4. student: segment-wise distillation (s -> 1, guidance folded in) -> OUT/student/; with the tune, the
   cold-start (uniform-layout) samples take their targets from the teacher before it
5. export: OUT/streamdit-toy.safetensors (student) and OUT/streamdit-toy-teacher.safetensors

Each stage skips itself when its output exists and resumes from its last checkpoint otherwise.

Baselines of the paper's comparison (ToyRecipe.baseline): "diagonal" (c = 1 streaming, FIFO-style) and
"extension" (chunk by chunk: N = 1 with K = 8 reference frames), trained the same way as the teacher,
on the same codec and cache, and exported as teachers only.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..codecs.autoencoder import AutoencoderCodec
from ..sampling.partition import Partition
from ..toyworld.captions import random_caption
from ..toyworld.render import render_batch
from ..toyworld.world import TRAIN_SEED_RANGE, random_scene, random_switch
from .autoencoder import measure_latent_stats, reconstruction_psnr, train_autoencoder
from .flow import PartitionMix
from .toydata import ClipSpec, build_latent_cache


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
    tune_steps: int = 600  # > 0: tune the teacher on streaming partitions (no c = B), to continue hops
    tune_lr: float = 2e-4
    tune_jump_weight: float = 3.0  # clips with a jumping scene are drawn this many times as often
    tune_chunk_sizes: tuple[int, ...] = (1, 2, 4, 8)
    tune_chunk_probs: tuple[float, ...] = (0.2, 0.5, 0.2, 0.1)
    # with tune_steps > 0: which teacher the student's uniform (cold-start) samples are distilled from; the
    # tune never sees the uniform layout, so "untuned" keeps the teacher from before it as their expert
    cold_start_teacher: str = "untuned"
    variant: str = "streamdit"  # or a baseline: "diagonal", "extension"
    codec_from: str | None = None  # take the autoencoder from this checkpoint instead of training one

    def __post_init__(self):
        if self.cold_start_teacher not in ("tuned", "untuned"):
            raise ValueError(f"cold_start_teacher must be 'tuned' or 'untuned', got {self.cold_start_teacher!r}")

    @classmethod
    def quick(cls, out: str) -> ToyRecipe:
        """A few steps of every stage (tests and smoke runs)."""
        return cls(out=out, ae_steps=3, ae_batch=4, cache_clips=8, appear_clips=2, teacher_steps=3, batch=2, warmup=1,
                   distill_steps=2, distill_batch=2, tune_steps=2,
                   teacher_partition=Partition(chunks=8, chunk_frames=2, micro_steps=1))

    @classmethod
    def baseline(cls, variant: str, out: str, **kw) -> ToyRecipe:
        """The paper's comparison models at the teacher's compute per frame (2 network calls per frame).

        diagonal: streaming with c = 1 (N = 16, s = 2); the mix keeps 15% c = 16 samples only so that the
        stream can start coherently, as FIFO-Diffusion starts from a clip of its base model.
        extension: N = 1, c = 8, K = 8 reference frames, s = 16: each chunk is denoised from noise
        next to the last 8 finished frames; 25% of samples have K = 0 (the first chunk).
        Both train on the v3 data (no appearing clips), as they were measured.
        """
        kw.setdefault("appear_clips", 0)
        kw.setdefault("tune_steps", 0)  # measured without the tune (it came later)
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
                if k != "out" and k in stored and stored[k] != v]
        if diff:
            raise ValueError(f"{self.out} was started with another recipe ({'; '.join(diff)}): "
                             "use a new --out, or the same settings to resume")


def random_specs(count: int, recipe: ToyRecipe, g: torch.Generator) -> list[ClipSpec]:
    """Random scenes, a share of them switching scene mid-clip (as a prompt change does)."""
    specs = []
    for _ in range(count):
        scene = random_scene(g, empty_prob=recipe.empty_share)
        after, switch = scene, 10**9
        if float(torch.rand(1, generator=g)) < recipe.transition_share:
            after = random_switch(scene, g)
            switch = int(torch.randint(1, recipe.clip_frames, (1,), generator=g))
        seed = int(torch.randint(TRAIN_SEED_RANGE.stop, (1,), generator=g))
        specs.append(ClipSpec(tuple(scene), tuple(after), switch, seed))
    return specs


def render_specs(specs: list[ClipSpec], frames: int, size: int, masks: bool = False):
    """The clips' frames [b, T, H, W, 3], with masks: (frames, sprite masks [b, T, H, W])."""
    out = render_batch([s.before for s in specs], frames, [s.seed for s in specs], size,
                       switch_to=[s.after if s.switch < frames else None for s in specs],
                       switch_at=[s.switch if s.switch < frames else None for s in specs], truth=masks)
    return (out.frames, torch.stack([t.masks for t in out.truth])) if masks else out.frames


def caption(scene, rng: random.Random) -> str:
    return random_caption(scene, rng)


def frame_source(recipe: ToyRecipe):
    """(count, generator) -> single frames from random clips and their sprite masks, for the autoencoder."""
    def frames(count: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        scenes = [random_scene(g, empty_prob=recipe.empty_share) for _ in range(count)]
        seeds = [int(torch.randint(TRAIN_SEED_RANGE.stop, (1,), generator=g)) for _ in range(count)]
        out = render_batch(scenes, 12, seeds, recipe.size, truth=True)
        pick = torch.randint(12, (count,), generator=g)
        masks = torch.stack([t.masks[p] for t, p in zip(out.truth, pick.tolist())])
        return out.frames[torch.arange(count), pick], masks
    return frames


def stage_autoencoder(recipe: ToyRecipe) -> AutoencoderCodec:
    path = Path(recipe.out) / "autoencoder.safetensors"
    if recipe.codec_from:
        from ..io.checkpoint import load_checkpoint

        codec = load_checkpoint(recipe.codec_from).codec
        if not isinstance(codec, AutoencoderCodec):
            raise ValueError(f"{recipe.codec_from} has no autoencoder codec to reuse")
        return codec.float().eval()
    codec = AutoencoderCodec(recipe.ae_channels, recipe.ae_widths)
    if path.is_file():
        codec.load_state_dict(load_file(str(path)))
        return codec.eval()
    torch.manual_seed(recipe.seed)
    start = time.perf_counter()
    source = frame_source(recipe)
    losses = train_autoencoder(codec, source, recipe.ae_steps, recipe.ae_batch, seed=recipe.seed,
                               sprite_weight=recipe.ae_sprite_weight)
    measure_latent_stats(codec, source)
    psnr = reconstruction_psnr(codec, *source(256, torch.Generator().manual_seed(10**6 + recipe.seed)))
    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(path))
    _record(recipe, "autoencoder", {"steps": recipe.ae_steps, "final_loss": losses[-1], "psnr_db": psnr,
                                    "seconds": time.perf_counter() - start, "losses": losses[::10]})
    return codec.eval()


def appear_specs(count: int, recipe: ToyRecipe, g: torch.Generator) -> list[ClipSpec]:
    """Clips that show an empty background and then an animal from a random frame on (same background).

    A crop is captioned with its newest frame's scene, so these are the only samples where the clean end
    of the buffer lacks the prompted animal and the model is asked to bring one in: the recovery a long
    stream needs once its sprite has faded."""
    specs = []
    for _ in range(count):
        scene = random_scene(g)
        switch = int(torch.randint(1, recipe.clip_frames, (1,), generator=g))
        seed = int(torch.randint(TRAIN_SEED_RANGE.stop, (1,), generator=g))
        specs.append(ClipSpec((None, None, scene.background), tuple(scene), switch, seed))
    return specs


def _cache_file(recipe: ToyRecipe, codec: AutoencoderCodec, name: str, specs) -> dict:
    """Load OUT/<name> or render, encode and save it (atomically) from specs() -> clip specs."""
    path = Path(recipe.out) / name
    if path.is_file():
        return torch.load(str(path), weights_only=True)
    start = time.perf_counter()
    specs = specs()
    cache = build_latent_cache(codec, specs, recipe.clip_frames, recipe.size,
                               lambda part, frames, size: render_specs(part, frames, size,
                                                                       masks=recipe.sprite_weight_flow > 0))
    tmp = path.with_suffix(".tmp")
    torch.save(cache, str(tmp))
    tmp.replace(path)
    _record(recipe, path.stem, {"clips": len(specs), "frames": recipe.clip_frames,
                                "seconds": time.perf_counter() - start})
    return cache


def stage_cache(recipe: ToyRecipe, codec: AutoencoderCodec) -> dict:
    """OUT/cache.pt (random scenes and switches), plus OUT/cache-appear.pt when recipe.appear_clips > 0.

    The two files are separate so that the main cache stays the same file across recipes that differ
    only in their appearing clips (it can be linked from another run)."""
    def gen(offset: int) -> torch.Generator:
        return torch.Generator().manual_seed(recipe.seed + offset)

    cache = _cache_file(recipe, codec, "cache.pt", lambda: random_specs(recipe.cache_clips, recipe, gen(1)))
    if recipe.appear_clips <= 0:
        return cache
    extra = _cache_file(recipe, codec, "cache-appear.pt", lambda: appear_specs(recipe.appear_clips, recipe, gen(3)))
    return merge_caches(cache, extra)


def merge_caches(a: dict, b: dict) -> dict:
    """One cache holding the clips of both (same clip length, size and mask presence)."""
    if a["frames"] != b["frames"] or a["size"] != b["size"] or ("masks" in a) != ("masks" in b):
        raise ValueError("latent caches differ in clip length, size or masks: delete the older one and rerun "
                         f"({a['frames']} vs {b['frames']} frames, size {a['size']} vs {b['size']})")
    out = {"latents": torch.cat([a["latents"], b["latents"]]), "specs": a["specs"] + b["specs"],
           "frames": a["frames"], "size": a["size"]}
    if "masks" in a:
        out["masks"] = torch.cat([a["masks"], b["masks"]])
    return out


def _record(recipe: ToyRecipe, stage: str, info: dict) -> None:
    path = Path(recipe.out) / "recipe.json"
    data = json.loads(path.read_text()) if path.is_file() else {"recipe": recipe.to_dict(), "stages": {}}
    data["stages"][stage] = info
    path.write_text(json.dumps(data, indent=2))


def run(recipe: ToyRecipe, stages: tuple[str, ...] = ("autoencoder", "cache", "teacher", "student", "export"),
        probe_every: int = 1000) -> dict[str, Path]:
    """Run the stages in order (each resumes or skips itself); returns the files written."""
    Path(recipe.out).mkdir(parents=True, exist_ok=True)
    recipe.check_resumable()
    torch.set_float32_matmul_precision("high")
    codec = stage_autoencoder(recipe)
    if stages == ("autoencoder",):
        return {"autoencoder": Path(recipe.out) / "autoencoder.safetensors"}
    cache = stage_cache(recipe, codec)
    written: dict[str, Path] = {}
    if "teacher" in stages or "student" in stages or "export" in stages:
        teacher = stage_teacher(recipe, codec, cache, probe_every)
        cold_start_teacher = None
        if recipe.tune_steps > 0:
            if recipe.cold_start_teacher == "untuned":
                cold_start_teacher = copy.deepcopy(teacher)  # stage_student freezes it
            teacher = stage_teacher_tune(recipe, codec, cache, teacher)
        if recipe.variant != "streamdit":  # baselines are compared as teachers: no distillation
            if "export" in stages:
                p = recipe.teacher_partition
                written["teacher"] = export(recipe, teacher, codec, f"streamdit-toy-{recipe.variant}.safetensors",
                                            p.micro_steps, {"role": "baseline", "variant": recipe.variant,
                                                            "cfg_scale": recipe.cfg_scale,
                                                            "recipe": json.dumps(recipe.to_dict())})
        elif "student" in stages or "export" in stages:
            student = stage_student(recipe, codec, cache, teacher, cold_start_teacher)
            if "export" in stages:
                t_steps = recipe.teacher_partition.micro_steps
                written["teacher"] = export(recipe, teacher, codec, "streamdit-toy-teacher.safetensors", t_steps,
                                            {"role": "teacher", "cfg_scale": recipe.cfg_scale,
                                             "recipe": json.dumps(recipe.to_dict())})
                written["student"] = export(recipe, student, codec, "streamdit-toy.safetensors", 1,
                                            {"role": "student", "distilled_from": "streamdit-toy-teacher",
                                             "recipe": json.dumps(recipe.to_dict())})
    return written


def final_module(trainer, weights: str):
    """The weights a stage hands on: "raw" (the trained weights) or "ema" (their moving average)."""
    if weights not in ("raw", "ema"):
        raise ValueError(f"weights must be 'raw' or 'ema', got {weights!r}")
    return trainer.raw_module() if weights == "raw" else trainer.ema_module()


def _loop(recipe: ToyRecipe, name: str, model, loss_fn, data, steps: int, lr: float, warmup: int, ema: float,
          probe_every: int = 0, probe=None, weights: str = "ema"):
    """Train one stage in OUT/<name>/ with resume; returns the trainer. Probes judge `weights` ("raw"/"ema")."""
    from .plot import plot_losses
    from .trainer import TrainConfig, Trainer

    out = Path(recipe.out) / name
    cfg = TrainConfig(out=str(out), steps=steps, lr=lr, warmup=warmup, ema=ema, seed=recipe.seed,
                      checkpoint_every=max(1, min(200, steps)), desc=name)

    def on_checkpoint(tr):
        plot_losses({name: out / "log.csv"}, out / "loss.png", title=f"toy {name} loss")
        if probe is not None and probe_every and (tr.step % probe_every == 0 or tr.step == steps):
            rows = out / "probe.jsonl"
            done = {json.loads(line)["step"] for line in rows.read_text().splitlines()} if rows.is_file() else set()
            if tr.step not in done:
                with open(rows, "a") as fh:
                    fh.write(json.dumps({"step": tr.step, "weights": weights,
                                         **probe(final_module(tr, weights))}) + "\n")

    trainer = Trainer(model, loss_fn, data, cfg, on_checkpoint=on_checkpoint)
    start = time.perf_counter()
    resumed = trainer.resume()
    if trainer.step < steps:
        trainer.run()
    if not resumed or trainer.step == steps:
        _record(recipe, name, {"steps": steps, "seconds_this_run": time.perf_counter() - start})
    return trainer


def _flow_stage(recipe: ToyRecipe, codec: AutoencoderCodec, name: str, model, mix: PartitionMix, data, steps: int,
                lr: float, warmup: int, ema: float, probe_every: int, weights: str):
    """Buffered flow matching of `model` on `data` with `mix` in OUT/<name>/; returns the `weights` module."""
    from ..sampling.partition import Schedule
    from .flow import flow_matching_loss

    schedule = Schedule(1.0)

    def loss_fn(m, batch, g):
        return flow_matching_loss(m, batch, mix, schedule, g, recipe.text_dropout, recipe.sprite_weight_flow)

    probe = partial(probe_adherence, recipe=recipe, codec=codec, micro_steps=recipe.teacher_partition.micro_steps,
                    cfg_scale=recipe.cfg_scale)
    trainer = _loop(recipe, name, model, loss_fn, data, steps, lr, warmup, ema, probe_every, probe, weights)
    return final_module(trainer, weights).eval()


def stage_teacher(recipe: ToyRecipe, codec: AutoencoderCodec, cache: dict, probe_every: int = 1000):
    """Buffered flow matching with the partition mix and text dropout; returns recipe.teacher_weights.

    Raw by default: at 2,400 steps the model still improves fast and even a warmed-up 0.999 EMA
    averages weights from a thousand steps back (docs/training.md has the measurement)."""
    from .toydata import LatentClips

    model, _ = build_teacher(recipe, codec)
    data = LatentClips(cache, recipe.batch, recipe.crop_frames, caption)
    return _flow_stage(recipe, codec, "teacher", model, recipe.mix, data, recipe.teacher_steps, recipe.lr,
                       recipe.warmup, recipe.ema, probe_every, recipe.teacher_weights)


def stage_teacher_tune(recipe: ToyRecipe, codec: AutoencoderCodec, cache: dict, teacher):
    """Continue the teacher on streaming partitions only (tune_chunk_sizes, no c = B) with jumping clips drawn
    tune_jump_weight times as often, at tune_lr without EMA; returns the tuned raw weights. Measured: the
    teacher alone continues a hop for about one period from a rendered start and then damps; this stage is
    what holds the hop up (docs/training.md)."""
    from .toydata import LatentClips

    mix = dataclasses.replace(recipe.mix, chunk_sizes=tuple(recipe.tune_chunk_sizes),
                              chunk_probs=tuple(recipe.tune_chunk_probs))
    jumping = torch.tensor([float("jumping" in (s["before"][1], s["after"][1])) for s in cache["specs"]])
    data = LatentClips(cache, recipe.batch, recipe.crop_frames, caption,
                       weights=1.0 + (recipe.tune_jump_weight - 1.0) * jumping)
    # stage_teacher hands over trainable weights
    return _flow_stage(recipe, codec, "teacher-tune", teacher.train(), mix, data, recipe.tune_steps, recipe.tune_lr,
                       max(1, recipe.tune_steps // 30), 0.0, recipe.tune_steps, "raw")


def stage_student(recipe: ToyRecipe, codec: AutoencoderCodec, cache: dict, teacher, cold_start_teacher=None):
    """Segment-wise distillation from the teacher (the student starts as a copy); returns its EMA (0.99).
    cold_start_teacher, if given, supplies the targets of the uniform (cold-start) samples."""
    from ..sampling.partition import Schedule
    from .distill import DistillConfig, distill_loss
    from .toydata import LatentClips

    for frozen in (teacher, cold_start_teacher):
        if frozen is not None:
            frozen.eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    data = LatentClips(cache, recipe.distill_batch, recipe.teacher_partition.buffer_frames, caption)
    config = DistillConfig(recipe.teacher_partition, recipe.cfg_scale, recipe.uniform_fraction)
    schedule = Schedule(1.0)

    def loss_fn(m, batch, g):
        return distill_loss(m, teacher, batch, config, schedule, g, uniform_teacher=cold_start_teacher)

    probe = partial(probe_adherence, recipe=recipe, codec=codec, micro_steps=1, cfg_scale=1.0)
    trainer = _loop(recipe, "student", student, loss_fn, data, recipe.distill_steps, recipe.distill_lr,
                    max(1, recipe.distill_steps // 20), 0.99, max(1, recipe.distill_steps // 2), probe)
    return trainer.ema_module().eval()


@torch.no_grad()
def probe_adherence(module, recipe: ToyRecipe, codec: AutoencoderCodec, micro_steps: int, cfg_scale: float,
                    clips: int = 4, frames: int = 32) -> dict:
    """A quick judged sample during training: held-out seeds, canonical prompts, animal/background/motion hits."""
    from ..io.checkpoint import Bundle
    from ..pipeline import Pipeline
    from ..toyworld import MOTION_OF_ACTION, all_scenes, canonical_caption, eval_seed, judge_clip

    was_training = module.training
    module.eval()
    bundle = Bundle(module.dit, module.dit.config, module.text_encoder, codec,
                    defaults_for(recipe, codec, micro_steps), {"probe": True})
    pipe = Pipeline(bundle, torch.device("cpu"), torch.float32)
    scenes = all_scenes()
    hits = {"animal": 0, "background": 0, "motion": 0}
    start = time.perf_counter()
    for i in range(clips):
        scene = scenes[(7 * i + 3) % len(scenes)]
        stream = pipe.stream(canonical_caption(scene), seed=eval_seed(900_000 + i), micro_steps=micro_steps,
                             cfg_scale=cfg_scale)
        verdict = judge_clip(torch.cat(list(stream.frames(frames))))
        hits["animal"] += verdict.animal == scene[0]
        hits["background"] += verdict.background == scene[2]
        hits["motion"] += verdict.motion == MOTION_OF_ACTION[scene[1]]
    module.train(was_training)
    return {**{k: v / clips for k, v in hits.items()}, "seconds": round(time.perf_counter() - start, 1)}


def build_teacher(recipe: ToyRecipe, codec: AutoencoderCodec):
    """The toy preset's DiT plus its word-level text encoder, trained together."""
    from ..network.config import get_preset
    from ..network.model import WanDiT
    from ..network.text import ToyTextEncoder
    from ..toyworld.captions import VOCABULARY
    from .flow import TextConditionedDiT

    cfg = get_preset("toy").model
    torch.manual_seed(recipe.seed)
    dit = WanDiT(cfg)
    dit.init_weights(recipe.seed)
    text = ToyTextEncoder(list(VOCABULARY), cfg.text_dim, cfg.text_len)
    return TextConditionedDiT(dit, text), cfg


def defaults_for(recipe: ToyRecipe, codec: AutoencoderCodec, micro_steps: int):
    from ..network.config import StreamDefaults

    p = recipe.teacher_partition
    return StreamDefaults(width=recipe.size, height=recipe.size, fps=16.0, codec=codec.spec,
                          buffer_frames=p.stream_frames, chunk_frames=p.chunk_frames, micro_steps=micro_steps,
                          ref_frames=p.ref_frames, shift=1.0)


def export(recipe: ToyRecipe, module, codec: AutoencoderCodec, name: str, micro_steps: int, meta: dict) -> Path:
    """Write a shippable checkpoint (bf16 DiT, fp32 text encoder and codec)."""
    from ..io.checkpoint import save_checkpoint

    path = Path(recipe.out) / name
    save_checkpoint(str(path), module.dit, module.dit.config, text_encoder=module.text_encoder, codec=codec,
                    defaults=defaults_for(recipe, codec, micro_steps), meta=meta, dtype=torch.bfloat16,
                    parts_dtype=torch.float16)
    return path
