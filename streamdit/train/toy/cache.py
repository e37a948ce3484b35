"""The toy recipe's latent caches: OUT/cache.pt (random clips) and OUT/cache-appear.pt (appearing clips),
rendered and encoded once, then merged for training (not shipped)."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ...codecs.autoencoder import AutoencoderCodec
from ..toydata import build_latent_cache
from .clips import appear_specs, random_specs, render_specs
from .recipe import ToyRecipe, record_stage


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
    record_stage(recipe, path.stem, {"clips": len(specs), "frames": recipe.clip_frames,
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
