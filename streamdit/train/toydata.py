"""Training data for the toy model: rendered clips encoded once into a latent cache, then sampled
as random temporal crops with freshly worded captions (so users are not held to one template).

A clip may switch scene (animal and/or background) at a frame, as a prompt change does; a crop is
captioned with the scene its newest frame shows, which is what the model sees after a live change.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..codecs.autoencoder import AutoencoderCodec
from ..io.progress import Progress

Scene = tuple  # (animal, action, background), as the toy world names them


@dataclass
class ClipSpec:
    before: Scene
    after: Scene
    switch: int  # first frame showing `after`; >= clip length means no switch
    seed: int


@torch.no_grad()
def build_latent_cache(codec: AutoencoderCodec, specs: list[ClipSpec], frames: int, size: int,
                       render: Callable, batch: int = 16) -> dict:
    """Render and encode every clip: latents float16 [n, C, T, h, w] plus the clip specs.

    render(specs, frames, size) returns the video [b, T, H, W, 3], or (video, sprite masks [b, T, H, W]);
    with masks the cache also holds them at the latent grid ("masks" [n, T, h, w] bool: a cell is sprite
    if any of its pixels is).
    """
    out, masks = [], []
    with Progress(len(specs), desc="latent cache", unit="clip") as bar:
        for i in range(0, len(specs), batch):
            part = specs[i:i + batch]
            video = render(part, frames, size)  # [b, T, H, W, 3]
            if isinstance(video, tuple):
                video, mask = video
                f = codec.spatial_factor
                masks.append(torch.nn.functional.max_pool2d(mask.flatten(0, 1)[:, None].float(), f)[:, 0]
                             .unflatten(0, (len(part), frames)) > 0)
            flat = codec.to_latent(video.flatten(0, 1))  # [C, b T, h, w]
            out.append(flat.unflatten(1, (len(part), frames)).permute(1, 0, 2, 3, 4).half())
            bar.update(len(part))
    cache = {"latents": torch.cat(out), "specs": [vars(s) for s in specs], "frames": frames, "size": size}
    if masks:
        cache["masks"] = torch.cat(masks)
    return cache


class LatentClips:
    """data(step, generator) -> {"latents": [B, C, frames, h, w], "context": [captions]}: deterministic."""

    def __init__(self, cache: dict, batch_size: int, frames: int, caption: Callable[[Scene, random.Random], str],
                 weights: torch.Tensor | None = None):
        self.latents = cache["latents"]
        self.masks = cache.get("masks")  # [n, T, h, w] sprite cells, when the cache has them
        self.specs = [ClipSpec(**{**s, "before": tuple(s["before"]), "after": tuple(s["after"])})
                      for s in cache["specs"]]
        self.batch_size, self.frames, self.caption = batch_size, frames, caption
        if self.latents.shape[2] < frames:
            raise ValueError(f"cached clips have {self.latents.shape[2]} frames; crops need {frames}")
        if weights is not None and (weights.shape != (len(self.specs),) or bool((weights < 0).any())
                                    or float(weights.sum()) <= 0):
            raise ValueError(f"clip weights must be {len(self.specs)} non-negative numbers with a positive sum")
        self.weights = weights  # per-clip sampling weights (None: uniform)

    def __call__(self, step: int, generator: torch.Generator) -> dict:
        n, t = self.latents.shape[0], self.latents.shape[2]
        if self.weights is None:
            idx = torch.randint(n, (self.batch_size,), generator=generator).tolist()
        else:
            idx = torch.multinomial(self.weights.double(), self.batch_size, replacement=True,
                                    generator=generator).tolist()
        off = torch.randint(t - self.frames + 1, (self.batch_size,), generator=generator).tolist()
        words = random.Random(int(torch.randint(2**31, (1,), generator=generator)))
        latents, captions, masks = [], [], []
        for i, o in zip(idx, off):
            latents.append(self.latents[i, :, o:o + self.frames])
            if self.masks is not None:
                masks.append(self.masks[i, o:o + self.frames])
            spec = self.specs[i]
            newest = o + self.frames - 1
            captions.append(self.caption(spec.after if newest >= spec.switch else spec.before, words))
        batch = {"latents": torch.stack(latents).float(), "context": captions}
        if masks:
            batch["masks"] = torch.stack(masks)
        return batch
