"""Rendering: clips, batches of clips (with mid-clip scene switches) and their ground truth.

Frames are torch.float32 [..., H, W, 3] in [0, 1]. Everything random comes from each clip's seed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .captions import canonical_caption
from .metrics import mask_centroids
from .motion import ClipParams, MotionState, action_code, advance, pose, sample_params, start
from .sprites import draw_sprites
from .textures import background_texture, paint_background
from .world import (
    ANIMAL_COLORS,
    ANIMALS,
    BACKGROUND_COLORS,
    BACKGROUNDS,
    MOTION_OF_ACTION,
    Scene,
    check_scene,
    frame_size,
)

_ANIMAL_RGB = torch.tensor([ANIMAL_COLORS[a] for a in ANIMALS], dtype=torch.float32) / 255
_BG_RGB = torch.tensor([BACKGROUND_COLORS[b] for b in BACKGROUNDS], dtype=torch.float32) / 255
_CHUNK = 512  # sprite frames drawn at once


@dataclass
class ClipTruth:
    """Ground truth of a clip: per-frame scene, sprite centroid (x, y) in pixels (NaN if none) and mask."""

    scenes: list[Scene]
    centroids: Tensor  # [T, 2] float32
    masks: Tensor  # [T, H, W] bool

    @property
    def animals(self) -> list[str | None]:
        return [s.animal for s in self.scenes]

    @property
    def backgrounds(self) -> list[str]:
        return [s.background for s in self.scenes]

    @property
    def captions(self) -> list[str]:
        return [canonical_caption(s) for s in self.scenes]

    @property
    def motions(self) -> list[str | None]:
        """Per-frame motion as the judge names it ("left", "right", "jump"; None without an animal)."""
        return [MOTION_OF_ACTION[s.action] if s.animal else None for s in self.scenes]


class RenderedBatch(NamedTuple):
    frames: Tensor  # [B, T, H, W, 3]
    captions: list[list[str]]  # canonical caption of every frame of every clip
    truth: list[ClipTruth] | None


def scene_timeline(scene: Scene, num_frames: int, switch_to: Scene | None, switch_at: int | None) -> list[Scene]:
    """Per-frame scenes: `scene`, then `switch_to` from frame `switch_at` on."""
    scene = check_scene(scene)
    if switch_to is None or switch_at is None or switch_at >= num_frames:
        return [scene] * num_frames
    switch_to = check_scene(switch_to)
    at = max(0, int(switch_at))
    return [scene] * at + [switch_to] * (num_frames - at)


def simulate(params: ClipParams, codes: np.ndarray, state: MotionState | None = None
             ) -> tuple[dict[str, np.ndarray], MotionState]:
    """Poses [B, T] for per-frame action codes [B, T]; continues `state` (the previous frame) if given."""
    poses = []
    for t in range(codes.shape[1]):
        if state is None:
            state = start(params, codes[:, 0])
        else:
            advance(state, params, codes[:, t])
        poses.append(pose(state, params))
    return {k: np.stack([p[k] for p in poses], axis=1) for k in poses[0]}, state


TextureSource = Callable[[int, int], tuple[Tensor, int]]  # (clip, background index) -> texture, period


def draw(params: ClipParams, poses: dict, animals: np.ndarray, backgrounds: np.ndarray, times: np.ndarray,
         textures: TextureSource, want_alpha: bool = False) -> tuple[Tensor, Tensor | None]:
    """Frames [B, T, H, W, 3] (and sprite coverage [B, T, H, W]) from poses and per-frame indices [B, T]."""
    B, T = animals.shape
    H, W = params.height, params.width
    frames = torch.empty(B, T, H, W, 3)
    for b in range(B):  # backgrounds: one texture per run of frames on the same background
        t0 = 0
        for t in range(1, T + 1):
            if t == T or backgrounds[b, t] != backgrounds[b, t0]:
                bg = int(backgrounds[b, t0])
                tex, period = textures(b, bg)
                colour = _BG_RGB[bg] + torch.from_numpy(params.bg_jitter[b, bg]).float()
                paint_background(colour, tex, period, times[b, t0:t], frames[b, t0:t])
                t0 = t
    alpha = torch.zeros(B * T, H, W) if want_alpha else None
    flat_poses = {k: v.reshape(-1) for k, v in poses.items()}
    clip_of = np.repeat(np.arange(B), T)
    for a in range(len(ANIMALS)):
        where = np.flatnonzero(animals.reshape(-1) == a)
        for c in range(0, len(where), _CHUNK):
            idx = where[c:c + _CHUNK]
            _paste_sprites(params, a, idx, clip_of[idx], {k: v[idx] for k, v in flat_poses.items()},
                           frames.view(B * T, H, W, 3), alpha)
    frames.clamp_(0, 1)
    return frames, None if alpha is None else alpha.view(B, T, H, W)


def _paste_sprites(params: ClipParams, animal: int, idx: np.ndarray, clips: np.ndarray, poses: dict,
                   frames: Tensor, alpha_out: Tensor | None) -> None:
    """Draw one animal kind into frames[idx] [n, H, W, 3], in a square window around each sprite."""
    _, H, W, _ = frames.shape
    cx, cy, facing, gait = (torch.from_numpy(poses[k]).float() for k in ("cx", "cy", "facing", "gait"))
    px = torch.from_numpy(params.px[clips]).float()
    side = min(int(math.ceil(params.px.max() * 1.05)) + 4, H, W)
    top = (cy.round().long() - side // 2).clamp(0, H - side)
    rows = top[:, None] + torch.arange(side)  # [n, side]
    cols = (cx.round().long()[:, None] + torch.arange(side) - side // 2) % W  # wraps around
    dx = (cols.float() - cx[:, None] + W / 2) % W - W / 2
    u = (dx * facing[:, None] / px[:, None])[:, None, :]
    v = ((rows.float() - cy[:, None]) / px[:, None])[:, :, None]
    body = _ANIMAL_RGB[animal] + torch.from_numpy(params.body_jitter[clips, animal]).float()
    rgb, alpha = draw_sprites(animal, u, v, px[:, None, None], gait[:, None, None], body,
                              torch.from_numpy(params.texture[clips]).float())
    n, r, q = torch.from_numpy(idx)[:, None, None], rows[:, :, None], cols[:, None, :]
    frames[n, r, q] = frames[n, r, q] * (1 - alpha).unsqueeze(-1) + rgb
    if alpha_out is not None:
        alpha_out[n, r, q] = alpha


def _cached_textures(seeds: Sequence[int], H: int, W: int) -> TextureSource:
    cache: dict = {}

    def get(b: int, bg: int):
        key = (int(seeds[b]), bg)
        if key not in cache:
            cache[key] = background_texture(key[0], BACKGROUNDS[bg], H, W)
        return cache[key]
    return get


def truth_of(timeline: list[Scene], alpha: Tensor) -> ClipTruth:
    masks = alpha > 0.5
    return ClipTruth(list(timeline), mask_centroids(masks), masks)


def render_batch(scenes: Sequence[Scene], num_frames: int, seeds: Sequence[int], size: int | tuple[int, int] = 64,
                 *, switch_to: Sequence[Scene | None] | None = None, switch_at: Sequence[int | None] | None = None,
                 truth: bool = False) -> RenderedBatch:
    """B clips at once: frames [B, T, H, W, 3], per-frame canonical captions, optional ground truth.

    switch_to[i] / switch_at[i]: clip i shows switch_to[i] from frame switch_at[i] on (None: no switch);
    the sprite keeps its position and motion across the switch.
    """
    H, W = frame_size(size)
    B = len(scenes)
    if num_frames < 1 or B < 1:
        raise ValueError(f"need at least one clip and one frame, got {B} clips of {num_frames} frames")
    if len(seeds) != B:
        raise ValueError(f"{B} scenes but {len(seeds)} seeds")
    switch_to = switch_to or [None] * B
    switch_at = switch_at or [None] * B
    timelines = [scene_timeline(s, num_frames, st, sa) for s, st, sa in zip(scenes, switch_to, switch_at)]
    params = sample_params(list(seeds), H, W)
    codes = np.array([[action_code(s.action) for s in tl] for tl in timelines]).reshape(B, num_frames)
    animals = np.array([[-1 if s.animal is None else ANIMALS.index(s.animal) for s in tl] for tl in timelines])
    bgs = np.array([[BACKGROUNDS.index(s.background) for s in tl] for tl in timelines])
    poses, _ = simulate(params, codes)
    times = np.broadcast_to(np.arange(num_frames), (B, num_frames))
    frames, alpha = draw(params, poses, animals.reshape(B, num_frames), bgs.reshape(B, num_frames), times,
                         _cached_textures(seeds, H, W), want_alpha=truth)
    captions = [[canonical_caption(s) for s in tl] for tl in timelines]
    truths = [truth_of(tl, alpha[b]) for b, tl in enumerate(timelines)] if truth else None
    return RenderedBatch(frames, captions, truths)


def render_clip(scene: Scene, num_frames: int, seed: int, size: int | tuple[int, int] = 64, *,
                switch_to: Scene | None = None, switch_at: int | None = None) -> tuple[Tensor, ClipTruth]:
    """One clip: frames [T, H, W, 3] float32 in [0, 1] and its ground truth."""
    out = render_batch([scene], num_frames, [seed], size, switch_to=[switch_to], switch_at=[switch_at], truth=True)
    return out.frames[0], out.truth[0]
