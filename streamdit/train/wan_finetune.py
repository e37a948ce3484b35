"""Fine-tune a Wan 2.1 DiT into a StreamDiT model, then distil it: the recipe docs/wan.md explains.

Stage "teacher": buffered flow matching with the mixed partitions on precomputed latents (LatentFolder),
starting from a Wan 2.1 text-to-video file in any layout. Stage "student": segment-wise distillation of the
teacher's guided s-step partition into one step per chunk. Both run single-process or under torchrun
(FSDP2 or DDP), in bf16 autocast with fp32 master weights, with activation checkpointing, and resume exactly
from OUT's checkpoints. Each stage exports a StreamDiT checkpoint (DiT only: the decoder and umT5 come from
ComfyUI's files) whose stream defaults are the partition it was trained for.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io.checkpoint import save_checkpoint
from ..network.config import ModelConfig, StreamDefaults
from ..sampling.partition import Partition, Schedule
from . import distributed
from .flow import PartitionMix


def default_mix(buffer_frames: int) -> PartitionMix:
    """The toy recipe's mix for B = 16 (docs/training.md says why); otherwise the power-of-two chunk sizes that
    divide B, with c = B (plain text-to-video, what the cold start needs) at 25% and the rest equal."""
    if buffer_frames == 16:
        return PartitionMix(16)
    sizes = [c for c in (1, 2, 4, 8, 16, 32, 64) if c < buffer_frames and buffer_frames % c == 0] + [buffer_frames]
    rest = [0.75 / (len(sizes) - 1)] * (len(sizes) - 1) if len(sizes) > 1 else []
    return PartitionMix(buffer_frames, tuple(sizes), tuple(rest) + ((0.25,) if rest else (1.0,)))


@dataclass
class WanFinetune:
    """Every setting of one stage (defaults: the 1.3B recipe of docs/wan.md, per GPU)."""

    data: str
    out: str
    stage: str = "teacher"  # or "student"
    init: str | None = None  # teacher: a Wan 2.1 DiT file; student: the teacher's export (default OUT/../teacher)
    config: ModelConfig | None = None  # random init of this shape when init is None (tests, from-scratch runs)
    steps: int = 10_000
    lr: float = 1e-5
    warmup: int = 200
    batch: int = 1  # clips per process and step
    chunks: int = 8  # N
    chunk_frames: int = 2  # c, the deployed partition
    mix: PartitionMix | None = None  # default: default_mix(N * c); B = 16 gives the toy model's mix
    shift: float = 5.0  # Wan 2.1's sigma shift at 480p
    text_dropout: float = 0.1
    ema: float = 0.999
    teacher_micro_steps: int = 4  # student stage: the teacher's guided partition (N, c, s)
    cfg_scale: float = 5.0
    uniform_fraction: float = 0.25
    precision: str = "bf16"  # autocast dtype of the forward pass; weights and optimizer stay fp32
    checkpointing: bool = True  # recompute each block in the backward pass (activation memory / layers)
    parallel: str = "fsdp"  # under torchrun: "fsdp" (FSDP2 fully_shard per block) or "ddp"
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.mix is None:
            self.mix = default_mix(self.chunks * self.chunk_frames)
        if self.stage not in ("teacher", "student"):
            raise ValueError(f"stage={self.stage!r}; choose 'teacher' or 'student'")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision={self.precision!r}; choose 'bf16' or 'fp32'")
        if self.mix.stream_frames != self.chunks * self.chunk_frames:
            raise ValueError(f"the mix trains {self.mix.stream_frames}-frame buffers, the partition N={self.chunks} "
                             f"x c={self.chunk_frames} has {self.chunks * self.chunk_frames}")

    @property
    def buffer_frames(self) -> int:
        return self.chunks * self.chunk_frames

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["config"] = dataclasses.asdict(self.config) if self.config is not None else None
        return d


def build_model(recipe: WanFinetune, device: torch.device):
    """The network to train: a Wan 2.1 file, a StreamDiT export, or a random model of recipe.config."""
    from ..io.checkpoint import load_checkpoint
    from ..network.model import WanDiT
    from ..wan.loading import is_streamdit_file

    if recipe.init is None:
        if recipe.config is None:
            raise ValueError("give init (a Wan 2.1 DiT file) or a config to start from random weights")
        torch.manual_seed(recipe.seed)  # identical weights on every rank
        model = WanDiT(recipe.config)
        model.init_weights(recipe.seed)
        return model.to(device), recipe.config
    if is_streamdit_file(recipe.init):
        bundle = load_checkpoint(recipe.init, device=device, dtype=torch.float32)
        return bundle.model, bundle.config
    from ..wan.checkpoint import load_wan_dit

    model, config, _ = load_wan_dit(recipe.init, device, torch.float32)
    return model, config


def _autocast(recipe: WanFinetune, device: torch.device):
    if recipe.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    import contextlib
    return contextlib.nullcontext()


def run(recipe: WanFinetune) -> Path | None:
    """Train the stage (resuming from OUT), export OUT/streamdit-wan-<stage>.safetensors; rank 0 returns its path."""
    from .distill import DistillConfig, distill_loss
    from .flow import flow_matching_loss
    from .latent_folder import LatentFolder
    from .trainer import TrainConfig, Trainer, on_device

    device = distributed.init_from_env()
    model, config = build_model(recipe, device)
    model.gradient_checkpointing = recipe.checkpointing
    data = LatentFolder(recipe.data, recipe.batch, recipe.buffer_frames, config.text_len, config.text_dim,
                        config.in_dim)
    schedule = Schedule(recipe.shift)

    if recipe.stage == "teacher":
        ema = recipe.ema

        def loss_fn(m, batch, g):
            with _autocast(recipe, device):
                return flow_matching_loss(m, on_device(batch, device), recipe.mix, schedule, g, recipe.text_dropout)
    else:
        import copy

        ema = 0.99
        teacher = copy.deepcopy(model).eval()
        teacher.gradient_checkpointing = False
        for p in teacher.parameters():
            p.requires_grad_(False)
        distill = DistillConfig(Partition(recipe.chunks, recipe.chunk_frames, micro_steps=recipe.teacher_micro_steps),
                                recipe.cfg_scale, recipe.uniform_fraction)

        def loss_fn(m, batch, g):
            with _autocast(recipe, device):
                return distill_loss(m, teacher, on_device(batch, device), distill, schedule, g)

    out = Path(recipe.out)
    cfg = TrainConfig(out=str(out), steps=recipe.steps, lr=recipe.lr, warmup=recipe.warmup, ema=ema,
                      seed=recipe.seed, checkpoint_every=recipe.checkpoint_every, log_every=recipe.log_every,
                      desc=f"wan {recipe.stage}")
    trainer = Trainer(model, loss_fn, data, cfg, parallel=recipe.parallel)
    trainer.resume()
    if trainer.step < recipe.steps:
        trainer.run()
    path = None
    if distributed.rank() == 0:
        path = export(recipe, trainer.ema_module(), config, data)
    distributed.shutdown()
    return path


def export(recipe: WanFinetune, module, config: ModelConfig, data) -> Path:
    """The stage's EMA weights as a StreamDiT checkpoint (bf16 DiT) with the partition it streams with."""
    (_, h, w) = sorted(data.buckets)[0]
    micro = recipe.teacher_micro_steps if recipe.stage == "teacher" else 1
    defaults = StreamDefaults(width=w * 8, height=h * 8, fps=16.0, codec={"kind": "wan2.1-vae"},
                              buffer_frames=recipe.buffer_frames, chunk_frames=recipe.chunk_frames,
                              micro_steps=micro, shift=recipe.shift)
    path = Path(recipe.out) / f"streamdit-wan-{recipe.stage}.safetensors"
    meta = {"role": recipe.stage, "recipe": json.dumps(recipe.to_dict())}
    if recipe.stage == "teacher":
        meta["cfg_scale"] = recipe.cfg_scale
    save_checkpoint(str(path), module, config, defaults=defaults, meta=meta, dtype=torch.bfloat16)
    return path
