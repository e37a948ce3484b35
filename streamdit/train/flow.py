"""Buffered flow matching with mixed partitions (the training objective of STREAMDIT.md).

One training sample is a buffer of K + F consecutive latent frames: K clean reference frames
(context only, excluded from the loss) and F frames to denoise. Per sample a chunk size c is drawn
from the mix (N = F / c chunks); chunk i gets one u_i ~ U[(i-1)/N, i/N], shared by its c frames;
one noise tensor covers the whole buffer; the target is the velocity eps - x0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..network.text import TextEncoder
from ..sampling.partition import Schedule


@dataclass(frozen=True)
class PartitionMix:
    """Chunk sizes drawn per sample, reference-frame counts drawn per batch (buffers of one length)."""

    stream_frames: int = 16
    chunk_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    chunk_probs: tuple[float, ...] = (0.15, 0.35, 0.15, 0.1, 0.25)
    ref_frames: tuple[int, ...] = (0,)
    ref_probs: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        bad = [c for c in self.chunk_sizes if c < 1 or self.stream_frames % c]
        if bad:
            divisors = [d for d in range(1, self.stream_frames + 1) if self.stream_frames % d == 0]
            raise ValueError(f"chunk sizes {bad} do not divide stream_frames={self.stream_frames}; use {divisors}")
        if len(self.chunk_probs) != len(self.chunk_sizes) or len(self.ref_probs) != len(self.ref_frames):
            raise ValueError("give one probability per chunk size and per reference-frame count")
        for probs in (self.chunk_probs, self.ref_probs):
            if min(probs) < 0 or abs(sum(probs) - 1) > 1e-6:
                raise ValueError(f"probabilities {probs} must be >= 0 and sum to 1")

    @property
    def includes_uniform(self) -> bool:
        """c = F (plain text-to-video) is in the mix: the cold start needs it."""
        return self.stream_frames in self.chunk_sizes

    def sample_chunks(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.multinomial(torch.tensor(self.chunk_probs), batch, replacement=True, generator=generator)
        return torch.tensor(self.chunk_sizes)[idx]

    def sample_refs(self, generator: torch.Generator) -> int:
        idx = torch.multinomial(torch.tensor(self.ref_probs), 1, generator=generator)
        return int(self.ref_frames[int(idx)])


def sample_band_u(chunk_sizes: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """u per frame [B, F] (float64): chunk i of a sample with N chunks draws one u in [(i-1)/N, i/N)."""
    rows = []
    for c in chunk_sizes.tolist():
        n = frames // c
        r = torch.rand(n, generator=generator, dtype=torch.float64)
        rows.append(((torch.arange(n, dtype=torch.float64) + r) / n).repeat_interleave(c))
    return torch.stack(rows)


class TextConditionedDiT(nn.Module):
    """The DiT plus its text encoder as one trainable module: forward(x, t, prompts or embeddings)."""

    def __init__(self, dit: nn.Module, text_encoder: TextEncoder | None):
        super().__init__()
        self.dit, self.text_encoder = dit, text_encoder

    def compiled(self) -> TextConditionedDiT:
        """A view that runs a compiled DiT with the same parameters; the text encoder stays eager (prompts are
        Python strings: a graph would be specialised on them). Nothing here changes: copies of this module (an
        EMA, a student) stay plain, where an in-place compile would leave them calling this module's forward."""
        return TextConditionedDiT(torch.compile(self.dit), self.text_encoder)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context) -> torch.Tensor:
        if isinstance(context, (list, tuple)):
            context = self.text_encoder.encode(list(context))
        return self.dit(x, t, context)


def sprite_weights(masks: torch.Tensor, weight: float, frames: torch.Tensor | None = None) -> torch.Tensor:
    """Per latent cell loss weights [B, 1, T, h, w]: 1 + weight on sprite cells grown by one cell (edges), on
    the frames where `frames` [B, T] (bool) is true (None: every frame)."""
    m = torch.nn.functional.max_pool2d(masks.flatten(0, 1)[:, None].float(), 3, stride=1, padding=1)
    if frames is not None:
        m = m * frames.flatten()[:, None, None, None].to(m)
    return (1 + weight * m).unflatten(0, masks.shape[:2]).transpose(1, 2)


def flow_matching_loss(model: nn.Module, batch: dict, mix: PartitionMix, schedule: Schedule,
                       generator: torch.Generator, text_dropout: float = 0.1,
                       sprite_weight: float = 0.0, sprite_sigma_max: float = 1.0,
                       sigma_boost: float = 0.0,
                       sigma_band: tuple[float, float] = (0.7, 0.95),
                       sprite_gate: str = "frame") -> tuple[torch.Tensor, dict]:
    """batch: latents [B, C, K_max + F, h, w] (clean), context (prompts or embeddings [B, L, D]), optionally
    masks [B, K_max + F, h, w] (sprite cells): with sprite_weight > 0 they weigh 1 + sprite_weight in the
    loss, because sprites cover a few percent of the frame and would otherwise be learnt last; only on frames
    with sigma <= sprite_sigma_max. Why a bound: the weight depends on where the sprite truly is, so the loss's
    minimiser is E[w v | x] / E[w | x], not E[v | x]: where the noisy input leaves the sprite's place open, the
    model learns to draw a sprite at every likely place (docs/training.md, the second sprite).
    sprite_gate "context": a sample's every frame carries the weight when its cleanest frame (a reference frame
    counts as sigma 0) is within the bound (the idea: the buffer's clean end shows where the sprite is), none of a
    sample without one (the cold start's uniform layout at high noise). Measured in v14: the teacher drew the animal and
    the walking better, and more doubles (docs/training.md). "frame": each frame by its own sigma.
    sigma_boost > 0: frames with sigma in `sigma_band` weigh 1 + sigma_boost more (every cell alike). A weight
    that depends on the noise level alone leaves the minimiser E[v | x] as it is; it spends more of the loss
    where the sprite's shape forms (measured: docs/training.md).

    Uses the last K + F frames, K drawn from the mix for the whole batch.
    """
    x0_all = batch["latents"]
    b, f = x0_all.shape[0], mix.stream_frames
    k = mix.sample_refs(generator)
    if x0_all.shape[2] < k + f:
        raise ValueError(f"batch has {x0_all.shape[2]} frames, the mix needs up to {k + f}")
    x0 = x0_all[:, :, x0_all.shape[2] - (k + f):].float()
    chunks = mix.sample_chunks(b, generator)
    u = sample_band_u(chunks, f, generator)
    sigma = torch.cat([torch.zeros(b, k, dtype=torch.float64), schedule.sigmas(u)], dim=1)  # [B, K + F]
    eps = torch.randn(x0.shape, generator=generator).to(x0)  # one noise tensor per buffer
    s = sigma.to(x0).view(b, 1, -1, 1, 1)
    x = (1 - s) * x0 + s * eps  # reference frames (sigma 0) stay clean
    context = _drop_text(batch["context"], text_dropout, generator, batch.get("null_context"))
    pred = model(x, (sigma * 1000).float().to(x0.device), context)
    err = (pred.float() - (eps - x0)).pow(2)[:, :, k:]  # reference frames are not in the loss
    w = None
    if sprite_weight > 0:
        if "masks" not in batch:
            raise ValueError("sprite_weight > 0 needs sprite masks in the batch (a latent cache built with masks)")
        w = sprite_weights(batch["masks"][:, batch["masks"].shape[1] - f:], sprite_weight,
                           _weighted_frames(sigma, k, sprite_sigma_max, sprite_gate)).to(err)
    if sigma_boost > 0:
        band = (sigma[:, k:] >= sigma_band[0]) & (sigma[:, k:] <= sigma_band[1])
        by_sigma = (1 + sigma_boost * band.to(err)).view(b, 1, f, 1, 1)
        w = by_sigma.expand(b, 1, f, *err.shape[3:]) if w is None else w * by_sigma
    loss = err.mean() if w is None else (err * w).sum() / (w.sum() * err.shape[1])
    with torch.no_grad():
        per_c = {f"loss_c{c}": err[chunks == c].mean().item() for c in mix.chunk_sizes if bool((chunks == c).any())}
    return loss, {"refs": float(k), **per_c}


def _weighted_frames(sigma: torch.Tensor, k: int, bound: float, gate: str) -> torch.Tensor:
    """Which of the F noised frames [B, F] carry the sprite weight (see flow_matching_loss's sprite_gate)."""
    if gate == "frame":
        return sigma[:, k:] <= bound
    if gate == "context":
        return (sigma.min(dim=1, keepdim=True).values <= bound).expand(-1, sigma.shape[1] - k)
    raise ValueError(f"sprite_gate must be 'frame' or 'context', got {gate!r}")


def _drop_text(context, p: float, generator: torch.Generator, null: torch.Tensor | None = None):
    """Replace a fraction p of the prompts by the empty prompt: the unconditional branch. Embeddings become
    `null` (the encoded empty prompt, [L, D], as Wan's sampler uses it) or zeros when none is given."""
    if p <= 0:
        return context
    n = len(context)
    drop = (torch.rand(n, generator=generator) < p).tolist()
    if isinstance(context, (list, tuple)):
        return ["" if d else c for c, d in zip(context, drop)]
    keep = torch.tensor([not d for d in drop], device=context.device, dtype=context.dtype).view(-1, 1, 1)
    if null is None:
        return context * keep
    return torch.where(keep.bool(), context, null.to(context.device, context.dtype).expand_as(context))
