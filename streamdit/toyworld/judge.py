"""A classic (non-learned) judge of toy-world videos: what animal, on what background, where, moving how.

Per frame: background = nearest background colour to the frame's (blurred) median colour; foreground =
pixels far from that colour (threshold adapted to the frame's noise), specks removed by an opening, and
the connected blob (wrapping horizontally) around the densest sprite-sized spot kept; animal = nearest
animal colour to the median colour of the blob's least background-mixed half (after removing half of the
background's colour cast), None if the blob is too small; mask = the blob refined at half the sprite's
contrast. Per clip: majority votes, and the motion from the unwrapped centroid trajectory. Any frame size;
it tolerates blur, noise, compression and colour shifts, because it judges generated videos.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .metrics import centroid_distance, mask_centroids, mask_iou
from .world import ANIMAL_COLORS, ANIMALS, BACKGROUND_COLORS, BACKGROUNDS

__all__ = ["ClipVerdict", "FrameVerdicts", "centroid_distance", "classify_motion", "judge_clip", "judge_frames",
           "mask_iou"]

_ANIMAL_RGB = torch.tensor([ANIMAL_COLORS[a] for a in ANIMALS], dtype=torch.float32) / 255
_BG_RGB = torch.tensor([BACKGROUND_COLORS[b] for b in BACKGROUNDS], dtype=torch.float32) / 255

MIN_CONTRAST = 0.18  # colour distance from the background that counts as sprite (nominal contrasts >= 0.4)
MAX_CONTRAST = 0.3
MIN_AREA = 0.006  # smallest sprite blob, as a fraction of the frame (a 64x64 sprite covers >= 0.02)
CORE_QUANTILE = 0.75  # share of the blob (its most background-mixed pixels) left out of its colour
BG_SHIFT_CORRECTION = 0.5  # share of the background's colour cast removed from the sprite's colour
_BATCH = 256  # frames judged at once


@dataclass
class FrameVerdicts:
    animals: list[str | None]
    backgrounds: list[str]
    centroids: Tensor  # [T, 2] (x, y) pixels, NaN without an animal
    masks: Tensor  # [T, H, W] bool


@dataclass
class ClipVerdict(FrameVerdicts):
    animal: str | None  # majority over frames (None wins if most frames show no animal)
    background: str
    motion: str | None  # "left", "right", "jump" or None (no animal or static)


def _pad(x: Tensor, r: int) -> Tensor:
    """Pad [N, C, H, W] by r: circularly left/right (sprites wrap around), zeros top/bottom."""
    return F.pad(F.pad(x, (r, r, 0, 0), mode="circular"), (0, 0, r, r))


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [N, C, H, W] (wrapping horizontally, edges replicated vertically)."""
    r = max(1, math.ceil(2 * sigma))
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    g = (g / g.sum()).tolist()
    H, W = x.shape[-2:]
    p = F.pad(x, (r, r, 0, 0), mode="circular")
    x = sum(w * p[..., i:i + W] for i, w in enumerate(g))
    p = torch.cat([x[..., :1, :].expand(*x.shape[:-2], r, W), x, x[..., -1:, :].expand(*x.shape[:-2], r, W)], -2)
    return sum(w * p[..., i:i + H, :] for i, w in enumerate(g))


def _distance(img: Tensor, colour: Tensor) -> Tensor:
    """Colour distance [N, H, W] of images [N, 3, H, W] to one colour [N, 3] each."""
    return ((img - colour[:, :, None, None]) ** 2).sum(dim=1).sqrt()


def _dilate(m: Tensor, r: int = 1) -> Tensor:
    """Binary dilation of bool masks [N, H, W] by a (2r+1)^2 square, wrapping horizontally."""
    out = m
    for s in range(1, r + 1):
        out = out | m.roll(s, -1) | m.roll(-s, -1)
    m, out = out, out.clone()
    for s in range(1, r + 1):
        out[:, s:] |= m[:, :-s]
        out[:, :-s] |= m[:, s:]
    return out


def _erode(m: Tensor, r: int = 1) -> Tensor:
    return ~_dilate(~m, r)


def _reconstruct(marker: Tensor, mask: Tensor) -> Tensor:
    """Grow marker inside mask (8-connected, wrapping horizontally) until it stops changing."""
    cur = marker & mask
    for i in range(mask.shape[-1] + mask.shape[-2]):
        nxt = _dilate(cur) & mask
        if i % 4 == 3 and torch.equal(nxt, cur):
            break
        cur = nxt
    return cur


def _nearest(colours: Tensor, palette: Tensor) -> Tensor:
    return torch.cdist(colours, palette).argmin(dim=1)


def _foreground(smooth: Tensor, bg: Tensor) -> tuple[Tensor, Tensor]:
    """Distance to the background [N, H, W] and the pixels far from it (threshold adapts to the noise)."""
    dist = _distance(smooth, bg)
    flat = dist.flatten(1)
    med = flat.median(dim=1).values
    mad = (flat - med[:, None]).abs().median(dim=1).values
    thresh = (med + 6 * 1.4826 * mad).clamp(MIN_CONTRAST, MAX_CONTRAST)
    return dist, dist > thresh[:, None, None]


def _main_blob(fg: Tensor, k: float) -> Tensor:
    """The connected part of fg around its densest sprite-sized spot, after removing specks."""
    N, H, W = fg.shape
    r = max(1, round(k))
    core = _dilate(_erode(fg, r), r) & fg  # opening: specks and thin noise vanish
    box = max(3, round(7 * k)) | 1
    density = F.avg_pool2d(_pad(core[:, None].float(), box // 2), box, stride=1).flatten(1)
    spot = density.argmax(dim=1)
    yy, xx = spot // W, spot % W
    dx = (torch.arange(W)[None, None, :] - xx[:, None, None] + W // 2) % W - W // 2
    near = ((torch.arange(H)[None, :, None] - yy[:, None, None]).abs() <= box) & (dx.abs() <= box)
    return _reconstruct(core & near, fg)


def _blob_colour(img: Tensor, dist: Tensor, blob: Tensor) -> Tensor:
    """Median colour [N, 3] of the blob's least background-mixed pixels (blur and compression mix edges)."""
    inside = blob.flatten(1)
    far = torch.where(inside, dist.flatten(1), torch.full_like(dist.flatten(1), float("nan")))
    cut = far.nanquantile(CORE_QUANTILE, dim=1, keepdim=True).nan_to_num(0.0)
    use = inside & (far >= cut)
    pix = img.flatten(2).transpose(1, 2)  # [N, HW, 3]
    return torch.where(use[..., None], pix, torch.full_like(pix, float("nan"))).nanmedian(dim=1).values.nan_to_num(0)


def _judge(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Frames [N, H, W, 3] -> background index [N], animal index [N] (-1: none), masks [N, H, W] bool."""
    N, H, W, _ = x.shape
    k = min(H, W) / 64
    img = x.permute(0, 3, 1, 2).float().nan_to_num(0.0).clamp(0, 1)
    smooth = _blur(img, max(0.8 * k, 0.7))
    bg = smooth.flatten(2).median(dim=2).values  # [N, 3]
    background = _nearest(bg, _BG_RGB)
    dist, fg = _foreground(smooth, bg)
    blob = _main_blob(fg, k)
    present = blob.flatten(1).sum(1) >= max(8.0, MIN_AREA * H * W)
    colour = _blob_colour(img, dist, blob)
    corrected = colour - BG_SHIFT_CORRECTION * (bg - _BG_RGB[background])  # half of a global colour cast
    animal = torch.where(present, _nearest(corrected, _ANIMAL_RGB), -1)
    # final mask: next to the blob, pixels at least half as far from the background as the sprite's colour
    contrast = (colour - bg).norm(dim=1).clamp(min=2 * MIN_CONTRAST)
    mask = _dilate(blob) & (_distance(_blur(img, 0.5 * k), bg) > 0.5 * contrast[:, None, None])
    return background, animal, mask & present[:, None, None]


@torch.no_grad()
def judge_frames(frames: Tensor) -> FrameVerdicts:
    """Per-frame verdicts for frames [T, H, W, 3] float in [0, 1] (any size)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got {tuple(frames.shape)}")
    parts = [_judge(frames[i:i + _BATCH].detach().cpu()) for i in range(0, frames.shape[0], _BATCH)]
    bg, animal, masks = (torch.cat(p) for p in zip(*parts))
    return FrameVerdicts([None if a < 0 else ANIMALS[a] for a in animal.tolist()],
                         [BACKGROUNDS[b] for b in bg.tolist()], mask_centroids(masks), masks)


def classify_motion(centroids: Tensor, width: int, height: int | None = None) -> str | None:
    """"left", "right", "jump" or None from centroids [T, 2] (NaN rows: no animal), unwrapping x."""
    k = min(width, height or width) / 64
    t = torch.nonzero(~centroids.isnan().any(dim=1)).flatten()
    if len(t) < 3:
        return None
    c = centroids[t].double()
    gap = (t[1:] - t[:-1]).double()
    dx = ((c[1:, 0] - c[:-1, 0] + width / 2) % width - width / 2) / gap
    velocity = float(dx.median())
    span = float(t[-1] - t[0])
    rise = float(c[:, 1].quantile(0.95) - c[:, 1].quantile(0.05))
    if abs(velocity) >= 0.2 * k and abs(velocity) * span >= max(3 * k, rise):
        return "right" if velocity > 0 else "left"
    if rise >= 2.5 * k:
        return "jump"
    return None


def _majority(items: list):
    return Counter(items).most_common(1)[0][0]


def judge_clip(frames: Tensor) -> ClipVerdict:
    """Verdict on a clip [T, H, W, 3]: majority animal and background, the motion, and per-frame verdicts."""
    v = judge_frames(frames)
    animal = _majority(v.animals)
    motion = classify_motion(v.centroids, frames.shape[2], frames.shape[1]) if animal is not None else None
    return ClipVerdict(v.animals, v.backgrounds, v.centroids, v.masks, animal, _majority(v.backgrounds), motion)
