"""Animal sprites as signed-distance shapes, drawn for many frames at once.

Coordinates are in sprite units (1 unit = the sprite's size in pixels), u forward (the way the animal
faces), v down; the anchor (0, 0) is mid-body. Every sprite fits u in [-0.5, 0.5], v in [-0.42, 0.42].
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

FOOT_V = 0.4  # where the feet are, below the anchor
EDGE = 1.4  # edge sharpness: antialiasing ramps over 1 / EDGE pixels


def circle(u: Tensor, v: Tensor, x: float, y: float, r: float) -> Tensor:
    return torch.sqrt((u - x) ** 2 + (v - y) ** 2) - r


def ellipse(u: Tensor, v: Tensor, x: float, y: float, a: float, b: float) -> Tensor:
    return (torch.sqrt(((u - x) / a) ** 2 + ((v - y) / b) ** 2) - 1) * min(a, b)


def capsule(u: Tensor, v: Tensor, x0, y0, x1, y1, r: float) -> Tensor:
    """Distance to the segment (x0, y0)-(x1, y1) minus r; the endpoints may be per-frame tensors."""
    dx, dy = x1 - x0, y1 - y0
    h = (((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy + 1e-9)).clamp(0, 1)
    return torch.sqrt((u - x0 - h * dx) ** 2 + (v - y0 - h * dy) ** 2) - r


def triangle(u: Tensor, v: Tensor, pts: tuple) -> Tensor:
    """Approximate signed distance to a triangle (max over its edges' half-planes)."""
    (ax, ay), (bx, by), (cx, cy) = pts
    sign = 1.0 if (bx - ax) * (cy - ay) - (by - ay) * (cx - ax) > 0 else -1.0
    out = None
    for (px, py), (qx, qy) in (((ax, ay), (bx, by)), ((bx, by), (cx, cy)), ((cx, cy), (ax, ay))):
        ex, ey = qx - px, qy - py
        n = math.hypot(ex, ey)
        d = sign * ((u - px) * ey - (v - py) * ex) / n
        out = d if out is None else torch.maximum(out, d)
    return out


def _legs(u, v, hips: tuple, top: float, radius: float, gait: Tensor, swing: float) -> Tensor:
    """Legs from (hip, top) to the feet, alternate pairs swinging with the gait phase."""
    out = None
    s = torch.sin(gait)
    for i, x in enumerate(hips):
        foot = x + swing * (s if i % 2 == 0 else -s)
        d = capsule(u, v, x, top, foot, FOOT_V - radius, radius)
        out = d if out is None else torch.minimum(out, d)
    return out


def _min(*ds: Tensor) -> Tensor:
    out = ds[0]
    for d in ds[1:]:
        out = torch.minimum(out, d)
    return out


# Detail colours (RGB 0-1)
def _rgb(*c: int) -> Tensor:
    return torch.tensor(c, dtype=torch.float32) / 255


_EYE, _SNOUT, _CAT_EYE = _rgb(20, 15, 20), _rgb(222, 118, 150), _rgb(30, 60, 20)
_DOG_EAR, _WING, _ORANGE = _rgb(105, 64, 32), _rgb(240, 202, 34), _rgb(240, 130, 30)


def pig(u: Tensor, v: Tensor, gait: Tensor) -> tuple[Tensor, list]:
    """Round pink body, big head with a snout, small ears, stubby legs."""
    body = _min(ellipse(u, v, -0.06, 0.02, 0.36, 0.27), circle(u, v, 0.24, -0.08, 0.2),
                triangle(u, v, ((0.14, -0.2), (0.26, -0.25), (0.15, -0.36))),
                _legs(u, v, (-0.3, -0.16, 0.04, 0.16), 0.15, 0.065, gait, 0.06),
                capsule(u, v, -0.42, 0.0, -0.48, -0.08, 0.03))
    return body, [(ellipse(u, v, 0.43, -0.04, 0.06, 0.085), _SNOUT),
                  (circle(u, v, 0.3, -0.14, 0.035), _EYE)]


def cat(u: Tensor, v: Tensor, gait: Tensor) -> tuple[Tensor, list]:
    """Slim orange body, pointed ears, a raised tail, thin legs."""
    body = _min(ellipse(u, v, -0.04, 0.06, 0.32, 0.16), circle(u, v, 0.28, -0.1, 0.16),
                triangle(u, v, ((0.14, -0.16), (0.27, -0.22), (0.15, -0.36))),
                triangle(u, v, ((0.29, -0.23), (0.42, -0.17), (0.41, -0.35))),
                capsule(u, v, -0.33, 0.02, -0.44, -0.14, 0.04), capsule(u, v, -0.44, -0.14, -0.41, -0.3, 0.04),
                _legs(u, v, (-0.28, -0.16, 0.1, 0.2), 0.12, 0.045, gait, 0.07))
    return body, [(circle(u, v, 0.34, -0.12, 0.03), _CAT_EYE)]


def dog(u: Tensor, v: Tensor, gait: Tensor) -> tuple[Tensor, list]:
    """Brown body, long muzzle with a black nose, floppy dark ears, a wagging tail."""
    body = _min(ellipse(u, v, -0.06, 0.05, 0.33, 0.18), circle(u, v, 0.25, -0.12, 0.15),
                ellipse(u, v, 0.38, -0.07, 0.11, 0.075), capsule(u, v, -0.36, -0.02, -0.46, -0.2, 0.04),
                _legs(u, v, (-0.3, -0.17, 0.06, 0.18), 0.12, 0.05, gait, 0.07))
    return body, [(ellipse(u, v, 0.17, -0.07, 0.045, 0.1), _DOG_EAR),
                  (circle(u, v, 0.48, -0.09, 0.035), _EYE), (circle(u, v, 0.28, -0.16, 0.03), _EYE)]


def duck(u: Tensor, v: Tensor, gait: Tensor) -> tuple[Tensor, list]:
    """Yellow body with a raised tail, round head on a neck, orange beak and feet."""
    body = _min(ellipse(u, v, -0.06, 0.1, 0.34, 0.2), circle(u, v, 0.22, -0.2, 0.15),
                capsule(u, v, 0.1, 0.02, 0.2, -0.15, 0.09),
                triangle(u, v, ((-0.3, 0.02), (-0.5, -0.1), (-0.36, 0.16))))
    feet = _legs(u, v, (-0.08, 0.06), 0.28, 0.025, gait, 0.06)
    return body, [(ellipse(u, v, -0.08, 0.07, 0.16, 0.08), _WING),
                  (ellipse(u, v, 0.39, -0.17, 0.09, 0.04), _ORANGE), (feet, _ORANGE),
                  (circle(u, v, 0.27, -0.24, 0.03), _EYE)]


SHAPES = (pig, cat, dog, duck)  # in ANIMALS order


def draw_sprites(animal: int, u: Tensor, v: Tensor, px: Tensor, gait: Tensor, body_rgb: Tensor,
                 texture: Tensor) -> tuple[Tensor, Tensor]:
    """Colour [n, H, W, 3] and coverage [n, H, W] of one animal kind on n frames.

    u [n, 1, W], v [n, H, 1]: sprite coordinates; px [n, 1, 1]: pixels per unit; gait [n, 1, 1]: leg phase;
    body_rgb [n, 3]; texture [n, 5]: amplitude, u and v frequencies and phases of the fur pattern.
    """
    body, details = SHAPES[animal](u, v, gait)
    cover = (0.5 - body * px * EDGE).clamp(0, 1)
    amp, fu, fv, pu, pv = (texture[:, i, None, None] for i in range(5))
    shade = 1 + amp * torch.sin(fu * u + pu) * torch.sin(fv * v + pv)  # [n, H, W]
    rgb = body_rgb[:, None, None, :] * shade.unsqueeze(-1)
    alpha = cover
    rgb = rgb * cover.unsqueeze(-1)
    for d, colour in details:
        c = (0.5 - d * px * EDGE).clamp(0, 1)
        rgb = rgb * (1 - c).unsqueeze(-1) + c.unsqueeze(-1) * colour
        alpha = alpha * (1 - c) + c
    return rgb, alpha  # rgb is premultiplied by alpha
