"""Clips judge v2 must reject, built from the renderer's own clips, and the calibration of judge v2.

A rendered clip is split into its layers (the empty background, the sprite's premultiplied colour and
its coverage); a negative replaces or alters the sprite layer (a disc at its positions, a smear, a
jittering copy, a second copy, other colours, noise) or the whole frame (another background, noise,
flat grey, a flood of the animal's colour). Positives and negatives get the same random degradation.

    python -m streamdit.toyworld.negatives [clips] [negatives per kind]   # the calibration table
"""
from __future__ import annotations

import math
import sys
import time
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .degrade import DEGRADATIONS, degrade, gaussian_blur
from .judge_v2 import judge_clip
from .metrics import mask_centroids
from .motion import action_code, sample_params
from .render import draw, render_clip, simulate
from .textures import background_texture
from .world import ANIMAL_COLORS, ANIMALS, BACKGROUNDS, Scene, all_scenes, check_scene, eval_seed, frame_size

# kind -> the judge's measure that must reject it
SPRITE_NEGATIVES = {"disc": "animal", "smear": "animal", "jitter": "motion", "two_sprites": "sprites",
                    "recolour": "animal", "noise_texture": "animal", "flood": "animal"}
BACKGROUND_NEGATIVES = {"wrong_background": "background", "noise_frame": "background", "grey_frame": "background",
                        "colour_flood": "background"}
NEGATIVES = {**SPRITE_NEGATIVES, **BACKGROUND_NEGATIVES}
VARIANTS = ("none", *DEGRADATIONS)  # what a calibration clip goes through, by clip index
CALIBRATION_SEED_BLOCK = 9_000_000  # calibration renders: eval_seed(9_000_000 + i), negatives from 10_000_000
NEGATIVE_BLOCK = 1_000_000  # (seed_sets.RETIRED keeps both blocks out of the eval's sets)


class Layers(NamedTuple):
    background: Tensor  # [T, H, W, 3] the clip without its sprite
    rgb: Tensor  # [T, H, W, 3] sprite colour, premultiplied by alpha
    alpha: Tensor  # [T, H, W] sprite coverage


def render_layers(scene: Scene, num_frames: int, seed: int, size: int | tuple[int, int] = 64) -> Layers:
    """The layers of render_clip(scene, num_frames, seed, size): frames = background * (1 - alpha) + rgb."""
    scene = check_scene(scene)
    H, W = frame_size(size)
    params = sample_params([seed], H, W)
    poses, _ = simulate(params, np.full((1, num_frames), action_code(scene.action)))
    times = np.arange(num_frames)[None]
    bgs = np.full((1, num_frames), BACKGROUNDS.index(scene.background))
    textures = {}

    def texture(_clip: int, bg: int):
        if bg not in textures:
            textures[bg] = background_texture(seed, BACKGROUNDS[bg], H, W)
        return textures[bg]

    background, _ = draw(params, poses, np.full((1, num_frames), -1), bgs, times, texture)
    animal = np.full((1, num_frames), ANIMALS.index(scene.animal))
    frames, alpha = draw(params, poses, animal, bgs, times, texture, want_alpha=True)
    alpha = alpha[0]
    return Layers(background[0], frames[0] - background[0] * (1 - alpha[..., None]), alpha)


def composite(background: Tensor, rgb: Tensor, alpha: Tensor) -> Tensor:
    return (background * (1 - alpha[..., None]) + rgb).clamp(0, 1)


def _body_colour(layers: Layers) -> Tensor:
    """The sprite's median colour [3] over its fully covered pixels."""
    inside = layers.alpha > 0.95
    return layers.rgb[inside].median(dim=0).values


def _discs(centres: Tensor, radii: Tensor, H: int, W: int) -> Tensor:
    """Antialiased disc coverage [T, H, W] at centres [T, 2] (x, y) of radii [T], wrapping horizontally."""
    y = torch.arange(H, dtype=torch.float32)[None, :, None]
    x = torch.arange(W, dtype=torch.float32)[None, None, :]
    dx = (x - centres[:, 0, None, None] + W / 2) % W - W / 2
    d = (dx**2 + (y - centres[:, 1, None, None]) ** 2).sqrt()
    return (radii[:, None, None] + 0.5 - d).clamp(0, 1)


def _disc(layers: Layers, rng: np.random.Generator) -> Tensor:
    """A flat disc of the sprite's colour and area at the sprite's positions."""
    T, H, W = layers.alpha.shape
    radii = (layers.alpha.sum(dim=(1, 2)) / math.pi).sqrt()
    alpha = _discs(mask_centroids(layers.alpha > 0.5), radii, H, W)
    return composite(layers.background, alpha[..., None] * _body_colour(layers), alpha)


def _smear(layers: Layers, rng: np.random.Generator) -> Tensor:
    """The sprite streaked sideways over 1-2 of its widths and blurred: a blob with no shape left."""
    length = round(float((layers.alpha > 0.5).any(dim=1).sum(dim=1).float().mean()) * rng.uniform(1.0, 2.0))
    step = 1 if rng.random() < 0.5 else -1
    rgba = torch.cat([layers.rgb, layers.alpha[..., None]], dim=-1)
    rgba = sum(rgba.roll(step * s, dims=2) for s in range(length)) / length
    rgb = gaussian_blur(rgba[..., :3].contiguous(), 2.0)
    alpha = gaussian_blur(rgba[..., 3:].expand(-1, -1, -1, 3).contiguous(), 2.0)[..., 0]
    return composite(layers.background, rgb, alpha)


def _shift(x: Tensor, dy: int, dx: int) -> Tensor:
    return x.roll((dy, dx), dims=(0, 1))


def _jitter(layers: Layers, rng: np.random.Generator) -> Tensor:
    """The first frame's sprite, standing still but jittering by up to 2 px each frame."""
    T = layers.alpha.shape[0]
    offsets = rng.integers(-2, 3, (T, 2))
    rgb = torch.stack([_shift(layers.rgb[0], int(dy), int(dx)) for dy, dx in offsets])
    alpha = torch.stack([_shift(layers.alpha[0], int(dy), int(dx)) for dy, dx in offsets])
    return composite(layers.background, rgb, alpha)


def _two_sprites(layers: Layers, rng: np.random.Generator) -> Tensor:
    """The sprite plus a copy of it shifted sideways by 35-65% of the width."""
    W = layers.alpha.shape[-1]
    shift = int(round(W * rng.uniform(0.35, 0.65)))
    once = composite(layers.background, layers.rgb, layers.alpha)
    return composite(once, layers.rgb.roll(shift, dims=2), layers.alpha.roll(shift, dims=2))


def _recolour(layers: Layers, rng: np.random.Generator, animal: str) -> Tensor:
    """The sprite's shape and shading with another animal's colours."""
    other = [a for a in ANIMALS if a != animal][int(rng.integers(3))]
    gain = torch.tensor(ANIMAL_COLORS[other], dtype=torch.float32) / torch.tensor(ANIMAL_COLORS[animal])
    return composite(layers.background, (layers.rgb * gain).minimum(layers.alpha[..., None]), layers.alpha)


def _noise_texture(layers: Layers, rng: np.random.Generator) -> Tensor:
    """The sprite's shape filled with random colours."""
    noise = torch.from_numpy(rng.random(layers.rgb.shape, dtype=np.float32))
    return composite(layers.background, noise * layers.alpha[..., None], layers.alpha)


def _flood(layers: Layers, rng: np.random.Generator) -> Tensor:
    """A large disc of the sprite's colour (25-45% of the frame's side in radius) around the sprite."""
    T, H, W = layers.alpha.shape
    radius = torch.full((T,), min(H, W) * rng.uniform(0.25, 0.45))
    alpha = _discs(mask_centroids(layers.alpha > 0.5), radius, H, W)
    flooded = composite(layers.background, alpha[..., None] * _body_colour(layers), alpha)
    return composite(flooded, layers.rgb, layers.alpha)


def negative_clip(kind: str, scene: Scene, num_frames: int, seed: int, size: int | tuple[int, int] = 64
                  ) -> Tensor:
    """Frames [T, H, W, 3] of the negative `kind` (see NEGATIVES) made from render_clip(scene, ...)."""
    scene = check_scene(scene)
    if kind not in NEGATIVES or scene.animal is None:
        raise ValueError(f"unknown negative {kind!r} or scene without an animal; kinds: {', '.join(NEGATIVES)}")
    rng = np.random.default_rng([int(seed), 25])
    H, W = frame_size(size)
    if kind == "wrong_background":
        other = [b for b in BACKGROUNDS if b != scene.background][int(rng.integers(3))]
        layers = render_layers(scene._replace(background=other), num_frames, seed, size)
        return composite(*layers)
    if kind == "noise_frame":
        return torch.from_numpy(rng.random((num_frames, H, W, 3), dtype=np.float32))
    if kind == "grey_frame":
        return torch.full((num_frames, H, W, 3), float(rng.uniform(0.25, 0.75)))
    layers = render_layers(scene, num_frames, seed, size)
    if kind == "colour_flood":
        return _body_colour(layers).expand(num_frames, H, W, 3).contiguous()
    if kind == "recolour":
        return _recolour(layers, rng, scene.animal)
    make = {"disc": _disc, "smear": _smear, "jitter": _jitter, "two_sprites": _two_sprites,
            "noise_texture": _noise_texture, "flood": _flood}[kind]
    return make(layers, rng)


def degraded(frames: Tensor, variant: str, seed: int) -> Tensor:
    """frames through one of VARIANTS ("none" or a degrade.DEGRADATIONS kind), random from the seed."""
    if variant == "none":
        return frames
    return degrade(frames, variant, torch.Generator().manual_seed(int(seed)))


def calibration_cases(n: int, block: int = 0) -> list[tuple[Scene, int, str]]:
    """n (scene, seed, degradation) cases: scenes in an order that cycles the animals, degradations in turn."""
    scenes = all_scenes()
    return [(scenes[(13 * i) % len(scenes)], eval_seed(CALIBRATION_SEED_BLOCK + block + i), VARIANTS[i % len(VARIANTS)])
            for i in range(n)]


MEASURES = ("animal", "background", "motion", "sprites", "all")


def frame_passes(v, scene: Scene) -> dict[str, float]:
    """Share of a verdict's frames whose own animal, background and sprite count agree with the scene."""
    n = len(v.animals)
    return {"animal": sum(a == scene.animal for a in v.animals) / n,
            "background": sum(b == scene.background for b in v.backgrounds) / n,
            "sprites": sum(c == 1 for c in v.sprite_counts) / n}


def calibrate(clips: int = 336, per_kind: int = 112, num_frames: int = 48, size: int | tuple[int, int] = 64,
              kinds: tuple[str, ...] = tuple(NEGATIVES), log=None) -> dict:
    """Judge v2 on `clips` degraded renders (share of clips right per measure, and of frames) and `per_kind`
    clips of each negative kind (share rejected by the measure that must reject it and by any measure;
    share of frames that pass that measure on their own)."""
    right, frames_right = dict.fromkeys(MEASURES, 0), dict.fromkeys(("animal", "background", "sprites"), 0.0)
    for scene, seed, variant in calibration_cases(clips):
        frames, _ = render_clip(scene, num_frames, seed, size)
        v = judge_clip(degraded(frames, variant, seed))
        checks = v.checks(scene)
        for m in MEASURES:
            right[m] += checks[m]
        for m, share in frame_passes(v, scene).items():
            frames_right[m] += share
    out = {"clips": clips, "frames": num_frames, "right": {m: n / clips for m, n in right.items()},
           "frames_right": {m: n / clips for m, n in frames_right.items()}, "negatives": {}}
    for kind in kinds:
        measure = NEGATIVES[kind]
        rejected = anything = 0
        passing = 0.0
        for scene, seed, variant in calibration_cases(per_kind, block=NEGATIVE_BLOCK):
            v = judge_clip(degraded(negative_clip(kind, scene, num_frames, seed, size), variant, seed))
            checks = v.checks(scene)
            rejected += not checks[measure]
            anything += not checks["all"]
            passing += frame_passes(v, scene).get(measure, float("nan"))
        out["negatives"][kind] = {"clips": per_kind, "measure": measure, "rejected": rejected / per_kind,
                                  "rejected_any": anything / per_kind, "frames_passing": passing / per_kind}
        if log:
            log(f"{kind}: {out['negatives'][kind]}")
    return out


def wilson_low(share: float, n: int, z: float = 1.96) -> float:
    """Lower end of the 95% Wilson interval of a share observed on n clips."""
    centre = share + z * z / (2 * n)
    return (centre - z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))) / (1 + z * z / n)


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    clips, per_kind = (int(argv[0]) if argv else 336), (int(argv[1]) if len(argv) > 1 else 112)
    start = time.perf_counter()
    result = calibrate(clips, per_kind, log=print)
    print(f"renders ({clips} clips): " + ", ".join(f"{m} {100 * v:.1f}% (>= {100 * wilson_low(v, clips):.1f}%)"
                                                   for m, v in result["right"].items())
          + "; frames right: " + ", ".join(f"{m} {100 * v:.2f}%" for m, v in result["frames_right"].items()))
    for kind, r in result["negatives"].items():
        print(f"{kind} ({r['clips']} clips): rejected by {r['measure']} {100 * r['rejected']:.1f}% (>= "
              f"{100 * wilson_low(r['rejected'], r['clips']):.1f}%), by any {100 * r['rejected_any']:.1f}%; "
              f"frames passing {r['measure']} {100 * r['frames_passing']:.1f}%")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
