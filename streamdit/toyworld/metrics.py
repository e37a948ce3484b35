"""Geometry shared by ground truth and the judge: wrap-aware centroids, IoU and distances.

Sprites wrap around horizontally, so a sprite crossing the edge is split in two; its centroid is the
centre of the blob unwrapped around its circular mean, reported in [0, W).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def mask_centroids(masks: Tensor) -> Tensor:
    """Centroids (x, y) [T, 2] in pixels of boolean masks [T, H, W]; NaN for empty masks."""
    T, H, W = masks.shape
    m = masks.float()
    count = m.sum(dim=(1, 2))
    cols = m.sum(dim=1)  # [T, W]
    x = torch.arange(W, dtype=torch.float32)
    angle = 2 * math.pi * x / W
    ref = torch.atan2((cols * torch.sin(angle)).sum(1), (cols * torch.cos(angle)).sum(1)) * W / (2 * math.pi)
    unwrapped = (x - ref[:, None] + W / 2) % W - W / 2 + ref[:, None]  # [T, W]
    cx = ((cols * unwrapped).sum(1) / count) % W
    cy = (m.sum(dim=2) * torch.arange(H, dtype=torch.float32)).sum(1) / count
    out = torch.stack([cx, cy], dim=1)
    out[count == 0] = float("nan")
    return out


def centroid_distance(a: Tensor, b: Tensor, width: int | None = None) -> Tensor:
    """Euclidean distance between centroids [..., 2]; with width, horizontal distance wraps around."""
    d = (a - b).abs()
    if width is not None:
        dx = d[..., 0] % width
        d = torch.stack([torch.minimum(dx, width - dx), d[..., 1]], dim=-1)
    return d.norm(dim=-1)


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of boolean masks [..., H, W] (1 where both are empty)."""
    inter = (a & b).sum(dim=(-2, -1)).float()
    union = (a | b).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
