"""Judge v2: a classic judge of toy-world videos that checks shape, count, speed, hop height and texture.

Per frame: the background colour is the frame's median; foreground = pixels far from it (as judge v1);
its connected parts (wrapping horizontally) are labelled; a part is a *sprite* if its size and colour
are a sprite's; the *main* part (the largest) is an animal only if its colour is near that animal's
palette colour, its fur is smooth, and its mask matches that animal's silhouette (IoU with the
renderer's own shapes, centred, at the size its area implies, every facing and leg phase). The
background is the nearest background whose colour and grain (rendered empty backgrounds) the
non-sprite pixels match, or None. Per clip: majority votes, the share of frames with exactly one
sprite, the walking speed (within the world's speeds) or the hops (repeated rises of the world's hop
heights and periods), from the main part's centroids.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .judge import _blur, _dilate, _distance, _erode, _foreground
from .metrics import mask_centroids
from .render import render_batch
from .sprites import draw_sprites
from .world import ANIMAL_COLORS, ANIMALS, BACKGROUND_COLORS, BACKGROUNDS, MOTION_OF_ACTION, Scene, check_scene

# ---- Thresholds, frozen by the calibration of 2026-12-04 (docs/judge-v2.md, negatives.calibrate).
# ---- They must not be tuned on model outputs: a change needs a new calibration on renders and negatives.
SPRITE_AREA = (0.5, 2.5)  # a sprite's area, relative to the world's smallest / largest sprite at this size
ANIMAL_COLOUR_TOL = 0.25  # from the animal's palette colour, after half the colour cast (renders <= 0.24)
FUR_SPREAD_MAX = 0.25  # median colour deviation in the sprite's core (renders <= 0.17 even with noise)
# mask IoU with the animal's best silhouette: per animal, as a disc of a sprite's area matches a round pig
# (IoU ~0.75) far better than a slim cat (~0.5), and thin legs and tails suffer most from blur and JPEG
SHAPE_IOU_MIN = {"pig": 0.8, "cat": 0.57, "dog": 0.62, "duck": 0.69}
ONE_SPRITE_SHARE = 0.9  # frames with exactly one sprite for the clip to count as "one sprite"
WALK_SPEED_TOL = 0.25  # measured walking speed within the world's speeds -/+ this share of them
JUMP_HEIGHT_TOL = 0.3  # hop height within the world's heights -/+ this share of them
JUMP_PERIOD_TOL = 1.0  # frames: hop period within the world's periods -/+ this
JUMP_FIT_MIN = 0.6  # share of the centroid's vertical variance the hop model explains
JUMP_MIN_RISES = 2  # complete hops of the right height in a clip
BG_COLOUR_TOL = 0.2  # distance of the non-sprite pixels' median colour from the background's (renders <= 0.15)
BG_GRAIN_TOL = 0.12  # grain (median neighbour difference) above the background's own (renders <= 0.08)

# ---- The world as motion.sample_params draws it, at 64x64 (scaled with min(H, W) / 64); a test checks them.
WORLD_SPRITE_PX = (15.0, 21.0)  # pixels per sprite unit
WORLD_SPEED = (0.5, 1.25)  # walking, px per frame
WORLD_JUMP_HEIGHT = (5.0, 11.0)  # px
WORLD_JUMP_PERIOD = (8, 16)  # frames per hop

_ANIMAL_RGB = torch.tensor([ANIMAL_COLORS[a] for a in ANIMALS], dtype=torch.float32) / 255
_BG_RGB = torch.tensor([BACKGROUND_COLORS[b] for b in BACKGROUNDS], dtype=torch.float32) / 255
_GAITS = (-math.pi / 2, -math.pi / 6, math.pi / 6, math.pi / 2)  # leg phases the silhouettes are tried at
_BATCH = 256  # frames judged at once


@dataclass
class FrameVerdicts:
    animals: list[str | None]  # the main part's animal, None if it is none (or there is no part)
    backgrounds: list[str | None]  # None: the non-sprite pixels match no background
    sprite_counts: list[int]
    centroids: Tensor  # [T, 2] (x, y) pixels of the main part, NaN without an animal
    masks: Tensor  # [T, H, W] bool, the main part if it is an animal
    shape_iou: Tensor  # [T] the main part's IoU with its colour's animal silhouettes (0 without)


@dataclass
class ClipVerdict(FrameVerdicts):
    animal: str | None  # majority over frames
    background: str | None
    motion: str | None  # "left", "right", "jump" or None
    one_sprite: float  # share of frames with exactly one sprite
    speed: float  # px per frame, signed (+: right), NaN without an animal
    hop_height: float  # px of the best-fitting hop model, NaN if none
    hop_period: float  # frames
    hop_fit: float  # share of the vertical variance that model explains
    rises: int  # complete hops of the world's height

    def checks(self, scene: Scene | tuple) -> dict[str, bool]:
        """Which measures agree with the scene: animal, background, motion, sprites (one), and all four."""
        scene = check_scene(scene)
        want_motion = MOTION_OF_ACTION[scene.action] if scene.animal else None
        out = {"animal": self.animal == scene.animal, "background": self.background == scene.background,
               "motion": self.motion == want_motion,
               "sprites": (self.one_sprite >= ONE_SPRITE_SHARE) if scene.animal else self.one_sprite == 0}
        out["all"] = all(out.values())
        return out


# ---------------------------------------------------------------- parts of a frame


def _components(fg: Tensor, seeds: Tensor) -> Tensor:
    """Labels [N, H, W] (0: none) of fg's 8-connected parts that contain a seed, wrapping horizontally."""
    N, H, W = fg.shape
    index = torch.arange(1, H * W + 1, dtype=torch.float32).view(1, H, W)
    labels = torch.where(seeds & fg, index, 0.0)
    while True:
        grown = F.max_pool2d(F.pad(labels[:, None], (1, 1, 0, 0), mode="circular"), 3, 1, padding=(1, 0))[:, 0]
        grown = torch.where(fg, grown, 0.0)
        if torch.equal(grown, labels):
            return labels.long()
        labels = grown


def _part_animal(img: Tensor, dist: Tensor, part: Tensor, cast: Tensor) -> tuple[int, bool]:
    """The animal whose palette colour is nearest a part's [H, W] colour, and whether the colour is that
    animal's and the fur smooth. The colour: median of the part's least background-mixed quarter, less
    half of the background's colour cast (as judge v1)."""
    d = dist[part]
    core = img[:, part][:, d >= d.quantile(0.75)]  # [3, n]
    colour = core.median(dim=1).values
    spread = float((core - colour[:, None]).norm(dim=0).median())
    near = torch.cdist((colour - 0.5 * cast)[None], _ANIMAL_RGB)[0]
    animal = int(near.argmin())
    return animal, bool(near[animal] <= ANIMAL_COLOUR_TOL) and spread <= FUR_SPREAD_MAX


def _sprite_area(H: int, W: int) -> tuple[float, float]:
    """Pixels of the world's smallest and largest sprites at this frame size, widened by SPRITE_AREA."""
    k = min(H, W) / 64
    areas = [area for area, _, _ in _unit_silhouettes().values()]
    lo, hi = min(areas), max(areas)
    return SPRITE_AREA[0] * lo * (WORLD_SPRITE_PX[0] * k) ** 2, SPRITE_AREA[1] * hi * (WORLD_SPRITE_PX[1] * k) ** 2


def _outline(part: Tensor, sharp: Tensor) -> Tensor:
    """The part [H, W] refined to the pixels at least half as far from the background as its core."""
    contrast = sharp[part].quantile(0.9)
    return _dilate(part[None])[0] & (sharp > 0.5 * contrast)


# ---------------------------------------------------------------- silhouettes


def _silhouettes(animal: int, u: Tensor, v: Tensor, px: Tensor, gait: Tensor) -> Tensor:
    """Coverage > 0.5 of the animal's sprites (body and details) at sprite coordinates u [n,1,w], v [n,h,1]."""
    n = u.shape[0]
    _, alpha = draw_sprites(animal, u, v, px, gait, torch.ones(n, 3), torch.zeros(n, 5))
    return alpha > 0.5


@cache
def _unit_silhouettes() -> dict[tuple[int, float], tuple[float, float, float]]:
    """Area (sprite units^2) and centroid (u, v) of every (animal, leg phase) silhouette facing forward."""
    g = torch.linspace(-0.6, 0.6, 241)
    step = float(g[1] - g[0])
    out = {}
    for a in range(len(ANIMALS)):
        for gait in _GAITS:
            m = _silhouettes(a, g.view(1, 1, -1), g.view(1, -1, 1), torch.full((1, 1, 1), 1 / step),
                             torch.full((1, 1, 1), gait))[0].float()
            n = m.sum()
            out[(a, gait)] = (float(n) * step**2, float((m.sum(0) * g).sum() / n), float((m.sum(1) * g).sum() / n))
    return out


def _window(mask: Tensor, cx: float, cy: float, side: int) -> Tensor:
    """A side x side crop [side, side] of mask [H, W] centred on (cx, cy), wrapping x, zeros past y."""
    H, W = mask.shape
    x0, y0 = round(cx) - side // 2, round(cy) - side // 2
    cols = (torch.arange(side) + x0) % W
    rows = torch.arange(side) + y0
    ok = (rows >= 0) & (rows < H)
    out = torch.zeros(side, side, dtype=torch.bool)
    out[ok] = mask[rows[ok].clamp(0, H - 1)][:, cols]
    return out


def shape_iou(mask: Tensor, animal: int, k: float) -> float:
    """Best IoU of a part's mask [H, W] with the animal's silhouettes centred on it, at the size its area
    implies, facing either way, at several leg phases."""
    cx, cy = (float(c) for c in mask_centroids(mask[None])[0])
    side = int(math.ceil(WORLD_SPRITE_PX[1] * k * 1.3)) + 6
    crop = _window(mask, cx, cy, side)
    fx, fy = cx - round(cx) + side // 2, cy - round(cy) + side // 2  # the centroid inside the crop
    area = float(mask.sum())
    u0 = torch.arange(side, dtype=torch.float32) - fx
    v0 = torch.arange(side, dtype=torch.float32) - fy
    best = 0.0
    for gait in _GAITS:
        unit_area, cu, cv = _unit_silhouettes()[(animal, gait)]
        px = math.sqrt(area / unit_area)
        facing = torch.tensor([1.0, -1.0]).view(2, 1, 1)
        u = facing * u0.view(1, 1, -1) / px + cu
        v = (v0.view(1, -1, 1) / px + cv).expand(2, -1, -1)
        sil = _silhouettes(animal, u, v, torch.full((2, 1, 1), px), torch.full((2, 1, 1), gait))
        inter = (sil & crop).sum(dim=(1, 2)).float()
        union = (sil | crop).sum(dim=(1, 2)).float()
        best = max(best, float((inter / union.clamp(min=1)).max()))
    return best


# ---------------------------------------------------------------- backgrounds


@cache
def _background_references(H: int, W: int) -> tuple[Tensor, Tensor]:
    """Median colour [4, 3] and grain [4] of each background, from empty renders at this size."""
    seeds = [7_000 + i for i in range(6)]
    colours, grains = [], []
    for b in BACKGROUNDS:
        frames = render_batch([Scene(None, None, b)] * len(seeds), 4, seeds, (H, W)).frames.flatten(0, 1)
        img = frames.permute(0, 3, 1, 2)
        colours.append(img.flatten(2).median(dim=2).values.median(dim=0).values)
        grains.append(_grain(img, torch.ones(img.shape[0], H, W, dtype=torch.bool)).median())
    return torch.stack(colours), torch.stack(grains)


def _grain(img: Tensor, keep: Tensor) -> Tensor:
    """Median colour difference [N] between horizontal neighbours that are both kept."""
    d = (img[..., 1:] - img[..., :-1]).abs().mean(dim=1)  # [N, H, W-1]
    both = keep[..., 1:] & keep[..., :-1]
    d = torch.where(both, d, torch.full_like(d, float("nan")))
    return d.flatten(1).nanmedian(dim=1).values


def _backgrounds(img: Tensor, sprite_pixels: Tensor) -> tuple[Tensor, Tensor]:
    """Background index [N] (-1: none matches) and the median colour [N, 3] of the non-sprite pixels."""
    N, _, H, W = img.shape
    ref_colour, ref_grain = _background_references(H, W)
    keep = ~_dilate(sprite_pixels, 2)
    pix = torch.where(keep[:, None], img, torch.full_like(img, float("nan"))).flatten(2)
    colour = pix.nanmedian(dim=2).values  # [N, 3]
    grain = _grain(img, keep)
    dist = torch.cdist(colour.nan_to_num(-1), ref_colour)  # [N, 4]
    best = dist.argmin(dim=1)
    ok = (dist.min(dim=1).values <= BG_COLOUR_TOL) & (grain <= ref_grain[best] + BG_GRAIN_TOL)
    ok &= keep.flatten(1).float().mean(dim=1) >= 0.25  # a quarter of the frame at least must be background
    return torch.where(ok, best, -1), colour


# ---------------------------------------------------------------- frames


def _judge(x: Tensor) -> tuple[list, list, list, Tensor, Tensor]:
    """Frames [N, H, W, 3] -> animal indices (-1 none), background indices, sprite counts, masks, IoUs."""
    N, H, W, _ = x.shape
    k = min(H, W) / 64
    img = x.permute(0, 3, 1, 2).float().nan_to_num(0.0).clamp(0, 1)
    smooth = _blur(img, max(0.8 * k, 0.7))
    median = smooth.flatten(2).median(dim=2).values  # [N, 3]
    dist, fg = _foreground(smooth, median)
    r = max(1, round(k))
    labels = _components(fg, _dilate(_erode(fg, r), r) & fg)  # parts with a core wider than a speck
    sharp = _distance(_blur(img, 0.5 * k), median)  # for the main part's outline: the blur above widens it
    background, bg_colour = _backgrounds(img, labels > 0)
    cast = bg_colour - _BG_RGB[background.clamp(min=0)]
    cast = torch.where((background >= 0)[:, None], cast, 0.0)
    lo, hi = _sprite_area(H, W)
    animals, counts, ious = [], [], torch.zeros(N)
    masks = torch.zeros(N, H, W, dtype=torch.bool)
    for n in range(N):
        ids, areas = labels[n][labels[n] > 0].unique(return_counts=True)
        parts = []  # (mask, animal by colour, looks like a sprite), largest first
        for i in areas.argsort(descending=True).tolist():
            if areas[i] < lo:
                break
            part = labels[n] == ids[i]
            animal, looks = _part_animal(img[n], dist[n], part, cast[n])
            parts.append((part, animal, looks and bool(areas[i] <= hi)))
        counts.append(sum(int(looks) for *_, looks in parts))
        animals.append(-1)
        if parts and parts[0][2]:  # the main part: the animal only if it also has that animal's shape
            part, animal, _ = parts[0]
            outline = _outline(part, sharp[n])
            ious[n] = shape_iou(outline, animal, k)
            if ious[n] >= SHAPE_IOU_MIN[ANIMALS[animal]]:
                animals[n], masks[n] = animal, outline
    return animals, background.tolist(), counts, masks, ious


@torch.no_grad()
def judge_frames(frames: Tensor) -> FrameVerdicts:
    """Per-frame verdicts for frames [T, H, W, 3] (float in [0, 1] or uint8), any size."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got {tuple(frames.shape)}")
    if frames.dtype == torch.uint8:
        frames = frames.float() / 255
    parts = [_judge(frames[i:i + _BATCH].detach().cpu()) for i in range(0, frames.shape[0], _BATCH)]
    animals = [a for p in parts for a in p[0]]
    bgs = [b for p in parts for b in p[1]]
    masks = torch.cat([p[3] for p in parts])
    return FrameVerdicts([None if a < 0 else ANIMALS[a] for a in animals],
                         [None if b < 0 else BACKGROUNDS[b] for b in bgs], [c for p in parts for c in p[2]],
                         mask_centroids(masks), masks, torch.cat([p[4] for p in parts]))


# ---------------------------------------------------------------- motion


def walking_speed(centroids: Tensor, width: int) -> float:
    """Least-squares horizontal speed (px/frame) of centroids [T, 2] (NaN rows skipped), unwrapping x."""
    t = torch.nonzero(~centroids.isnan().any(dim=1)).flatten()
    if len(t) < 2:
        return float("nan")
    c = centroids[t].double()
    dx = (c[1:, 0] - c[:-1, 0] + width / 2) % width - width / 2
    x = torch.cat([c[:1, 0], c[0, 0] + dx.cumsum(0)])
    tt = t.double() - t.double().mean()
    return float((tt * (x - x.mean())).sum() / (tt**2).sum())


def fit_hops(y: Tensor, t: Tensor) -> tuple[float, float, float, Tensor]:
    """Best fit of the world's hop y = ground - height * |sin(pi (t + phase) / period)| to heights y [n] at
    frames t [n]: (height px, period frames, explained variance share, peak times [m])."""
    lo, hi = WORLD_JUMP_PERIOD[0] - JUMP_PERIOD_TOL, WORLD_JUMP_PERIOD[1] + JUMP_PERIOD_TOL
    periods = torch.arange(lo, hi + 1e-6, 0.25, dtype=torch.float64)
    phases = torch.linspace(0, 1, 33, dtype=torch.float64)[:-1]  # share of a period
    P = periods[:, None, None]
    s = (torch.pi * (t[None, None, :] / P + phases[None, :, None])).sin().abs()  # [periods, phases, n]
    sc = s - s.mean(dim=-1, keepdim=True)
    yc = y - y.mean()
    cov = (sc * yc).sum(-1)
    var_s = (sc**2).sum(-1).clamp(min=1e-9)
    height = -cov / var_s  # rises go up: y falls
    share = torch.where(height > 0, cov**2 / (var_s * (yc**2).sum().clamp(min=1e-9)), 0.0)
    i = int(share.argmax())
    p, f = divmod(i, len(phases))
    period, phase = float(periods[p]), float(phases[f])
    first = (0.5 - phase) * period  # a peak: (t / period + phase) = 0.5 + j
    peaks = first + period * torch.arange(-1, int(float(t[-1]) / period) + 2, dtype=torch.float64)
    return float(height.flatten()[i]), period, float(share.flatten()[i]), peaks


def count_rises(y: Tensor, t: Tensor, period: float, peaks: Tensor, k: float) -> int:
    """Hops whose whole period lies in the clip and whose rise (ground minus peak) has the world's height."""
    lo = WORLD_JUMP_HEIGHT[0] * k * (1 - JUMP_HEIGHT_TOL)
    hi = WORLD_JUMP_HEIGHT[1] * k * (1 + JUMP_HEIGHT_TOL)
    rises = 0
    for peak in peaks.tolist():
        near = (t - peak).abs() <= period / 2
        if peak - period / 2 < float(t[0]) - 1 or peak + period / 2 > float(t[-1]) + 1 or near.sum() < 3:
            continue
        around = y[near]
        rise = float(around.max() - around.min())
        rises += int(lo <= rise <= hi)
    return rises


def motion_facts(centroids: Tensor, width: int, height: int | None = None) -> tuple[str | None, dict]:
    """("left" | "right" | "jump" | None, facts: speed and hop fit) from centroids [T, 2] (NaN: no animal)."""
    k = min(width, height or width) / 64
    facts = _no_motion()
    t = torch.nonzero(~centroids.isnan().any(dim=1)).flatten()
    if len(t) < max(8, centroids.shape[0] // 2):
        return None, facts
    speed = walking_speed(centroids, width)
    y, tt = centroids[t, 1].double(), t.double()
    height, period, share, peaks = fit_hops(y, tt)
    rises = count_rises(y, tt, period, peaks, k) if share >= JUMP_FIT_MIN else 0
    facts.update(speed=speed, hop_height=height, hop_period=period, hop_fit=share, rises=rises)
    slow, fast = WORLD_SPEED[0] * k * (1 - WALK_SPEED_TOL), WORLD_SPEED[1] * k * (1 + WALK_SPEED_TOL)
    if slow <= abs(speed) <= fast:
        return ("right" if speed > 0 else "left"), facts
    if abs(speed) < slow and rises >= JUMP_MIN_RISES:
        return "jump", facts
    return None, facts


def classify_motion(centroids: Tensor, width: int, height: int | None = None) -> str | None:
    """"left", "right", "jump" or None from centroids [T, 2] (NaN rows: no animal), as judge v1's."""
    return motion_facts(centroids, width, height)[0]


def _no_motion() -> dict:
    return {"speed": float("nan"), "hop_height": float("nan"), "hop_period": float("nan"), "hop_fit": 0.0,
            "rises": 0}


def _majority(items: list):
    return Counter(items).most_common(1)[0][0]


def judge_clip(frames: Tensor) -> ClipVerdict:
    """Verdict on a clip [T, H, W, 3]: majority animal and background, motion, sprite count, per-frame facts."""
    v = judge_frames(frames)
    animal = _majority(v.animals)
    motion, facts = (motion_facts(v.centroids, frames.shape[2], frames.shape[1]) if animal is not None
                     else (None, _no_motion()))
    one = float(np.mean([c == 1 for c in v.sprite_counts]))
    return ClipVerdict(v.animals, v.backgrounds, v.sprite_counts, v.centroids, v.masks, v.shape_iou, animal,
                       _majority(v.backgrounds), motion, one, **facts)
