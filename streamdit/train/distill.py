"""Multistep (segment-wise) distillation: a guided teacher with s micro steps per buffer position
becomes a student that covers each segment in one unguided step (s -> 1): one call per emitted chunk.

Per sample every chunk k starts at the top of its segment, u = k/N (streaming layout), or, for a
fraction of samples, all frames share one level u = k/N (the uniform pass of the cold start, which a
streaming-only student would not know). The teacher runs its s guided micro steps on the whole
buffer; the student regresses, per frame, the displacement divided by that frame's own signed
segment length in sigma: (x_end - x_start) / (sigma_end - sigma_start).

With K > 0 reference frames the buffer is K + F frames: in the streaming layout the K oldest stay
clean (u = 0) and are context only, out of the loss; the uniform layout (the cold start, which with
K > 0 runs the whole buffer down to u = 0) puts all K + F frames at one level.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..sampling.partition import Partition, Schedule


@dataclass(frozen=True)
class DistillConfig:
    teacher: Partition  # the guided partition, e.g. N=8, c=2, s=4
    cfg_scale: float = 3.0
    uniform_fraction: float = 0.25  # samples laid out as the cold start's uniform pass


def segment_starts(partition: Partition, batch: int, uniform: torch.Tensor, generator: torch.Generator):
    """u at the start of each frame's segment [B, K + F] (float64) and the u it reaches after s steps
    (reference frames of streaming samples stay at 0)."""
    n, c, k = partition.chunks, partition.chunk_frames, partition.ref_frames
    streaming = torch.cat([torch.zeros(k, dtype=torch.float64),
                           (torch.arange(1, n + 1, dtype=torch.float64) / n).repeat_interleave(c)])  # chunk i at i/N
    level = torch.randint(1, n + 1, (batch,), generator=generator).to(torch.float64) / n
    u0 = torch.where(uniform.view(-1, 1), level.view(-1, 1), streaming.view(1, -1))
    return u0, (u0 - 1.0 / n).clamp(min=0.0)


@torch.no_grad()
def teacher_segment(teacher: nn.Module, x: torch.Tensor, u0: torch.Tensor, partition: Partition,
                    schedule: Schedule, cond, uncond, cfg_scale: float) -> torch.Tensor:
    """Run the teacher's s guided micro steps of 1/(s N) in u from u0; returns x at u0 - 1/N."""
    s, n = partition.micro_steps, partition.chunks
    b = x.shape[0]
    for j in range(s):  # clean reference frames stay at u = 0: a zero step leaves them as they are
        sig = schedule.sigmas((u0 - j / (s * n)).clamp(min=0.0))
        sig_next = schedule.sigmas((u0 - (j + 1) / (s * n)).clamp(min=0.0))
        t = (sig * 1000).float().to(x.device)
        if cfg_scale == 1.0:
            v = teacher(x, t, cond).float()
        else:
            both = teacher(torch.cat([x, x]), torch.cat([t, t]), _cat(cond, uncond)).float()
            v_c, v_u = both[:b], both[b:]
            v = v_u + cfg_scale * (v_c - v_u)
        x = x + (sig_next - sig).to(x).view(b, 1, -1, 1, 1) * v
    return x


def _pick(context, mask: torch.Tensor):
    """The samples of a context (prompts or embeddings) where mask is True."""
    if isinstance(context, (list, tuple)):
        return [c for c, m in zip(context, mask.tolist()) if m]
    return context[mask.to(context.device)]


def _cat(a, b):
    return list(a) + list(b) if isinstance(a, (list, tuple)) else torch.cat([a, b])


def distill_loss(student: nn.Module, teacher: nn.Module, batch: dict, config: DistillConfig, schedule: Schedule,
                 generator: torch.Generator, uniform_teacher: nn.Module | None = None) -> tuple[torch.Tensor, dict]:
    """batch: latents [B, C, >= F, h, w] (clean), context: prompts or embeddings. Teachers frozen.

    uniform_teacher, if given, supplies the targets of the uniform (cold-start) samples instead of
    `teacher`: a teacher tuned on streaming layouts only is no longer the expert for them."""
    p = config.teacher
    f = p.buffer_frames
    if batch["latents"].shape[2] < f:
        raise ValueError(f"batch has {batch['latents'].shape[2]} frames, the teacher's buffer holds {f} (K + N c)")
    x0 = batch["latents"][:, :, -f:].float()
    b = x0.shape[0]
    uniform = torch.rand(b, generator=generator) < config.uniform_fraction
    u0, u1 = segment_starts(p, b, uniform, generator)
    sig0, sig1 = schedule.sigmas(u0), schedule.sigmas(u1)
    eps = torch.randn(x0.shape, generator=generator).to(x0)
    s0 = sig0.to(x0).view(b, 1, -1, 1, 1)
    x_start = (1 - s0) * x0 + s0 * eps
    cond = batch["context"]
    if isinstance(cond, (list, tuple)):
        uncond = [""] * b
    elif batch.get("null_context") is not None:  # the encoded empty prompt (Wan's unconditional branch)
        uncond = batch["null_context"].to(cond).expand_as(cond)
    else:
        uncond = torch.zeros_like(cond)
    if uniform_teacher is None:
        x_end = teacher_segment(teacher, x_start, u0, p, schedule, cond, uncond, config.cfg_scale)
    else:  # each teacher runs on its own samples only
        x_end = torch.empty_like(x_start)
        for who, mask in ((teacher, ~uniform), (uniform_teacher, uniform)):
            if bool(mask.any()):
                x_end[mask] = teacher_segment(who, x_start[mask], u0[mask], p, schedule, _pick(cond, mask),
                                              _pick(uncond, mask), config.cfg_scale)
    seg = (sig1 - sig0).to(x0)
    moved = seg != 0  # False on clean reference frames: context only
    target = (x_end - x_start) / torch.where(moved, seg, 1.0).view(b, 1, -1, 1, 1)
    pred = student(x_start, (sig0 * 1000).float().to(x0.device), cond).float()
    loss = (pred - target).pow(2).transpose(1, 2)[moved].mean()
    return loss, {"uniform_share": uniform.float().mean().item()}
