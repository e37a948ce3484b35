"""Background textures: small brightness variations around each background's colour.

A texture depends on (seed, background, size) only, so a clip that switches back to a background,
or a stream, sees the same ground. Pixel = colour + static + amp * sin(omega * t + phase).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .world import BACKGROUNDS


def _smooth(rng: np.random.Generator, h: int, w: int, gh: int, gw: int) -> torch.Tensor:
    """Unit-variance-ish noise on a gh x gw grid, bilinearly upsampled to h x w."""
    grid = torch.from_numpy(rng.standard_normal((1, 1, gh, gw)).astype(np.float32))
    return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)[0, 0]


def background_texture(seed: int, background: str, height: int, width: int) -> tuple[torch.Tensor, int]:
    """([3, H, W]: static offset, animation amplitude and phase; the animation period in frames, 0 if none)."""
    b = BACKGROUNDS.index(background)
    rng = np.random.default_rng([int(seed), 2, b, height, width])
    k = min(height, width) / 64
    fine = torch.from_numpy(rng.standard_normal((height, width)).astype(np.float32))
    amp = torch.zeros(height, width)
    phase = torch.zeros(height, width)
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    period = 0
    if background == "grass":  # blades: streaks taller than wide, darker and lighter
        static = 0.035 * _smooth(rng, height, width, 6, max(8, width // 3)) + 0.012 * fine
    elif background == "snow":  # soft drifts and a little sparkle
        static = 0.02 * _smooth(rng, height, width, 4, 4) + 0.01 * fine
    elif background == "sea":  # slow swell and travelling waves
        static = 0.025 * _smooth(rng, height, width, 3, 5) + 0.008 * fine
        wavelength = (7 + 5 * rng.random()) * k
        wobble = 2 * math.pi / ((18 + 10 * rng.random()) * k)
        amp = torch.full((height, width), 0.04)
        phase = 2 * math.pi * y / wavelength + 1.2 * torch.sin(wobble * x + 6.3 * rng.random())
        period = int(24 + rng.integers(0, 25))
    else:  # night: a faint haze and sparse twinkling stars
        static = 0.015 * _smooth(rng, height, width, 4, 4) + 0.006 * fine
        stars = torch.from_numpy((rng.random((height, width)) < 0.003).astype(np.float32))
        brightness = stars * torch.from_numpy(rng.uniform(0.15, 0.3, (height, width)).astype(np.float32))
        static = static + 0.7 * brightness
        amp = 0.3 * brightness
        phase = torch.from_numpy(rng.uniform(0, 2 * math.pi, (height, width)).astype(np.float32))
        period = int(16 + rng.integers(0, 25))
    return torch.stack([static, amp, phase]), period


def paint_background(colour: torch.Tensor, texture: torch.Tensor, period: int, times: np.ndarray,
                     out: torch.Tensor) -> None:
    """Write frames [n, H, W, 3] into out: colour [3] plus the texture at frame indices times."""
    static, amp, phase = texture
    level = static.expand(len(times), -1, -1)
    if period:
        angle = torch.from_numpy(np.asarray(times) % period).float() * (2 * math.pi / period)
        level = level + amp * torch.sin(angle[:, None, None] + phase)
    out.copy_(colour + level.unsqueeze(-1))
