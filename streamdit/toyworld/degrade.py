"""Degradations of frames [T, H, W, 3] in [0, 1], to check that the judge survives imperfect videos."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DEGRADATIONS = ("blur", "noise", "jpeg", "downup", "jitter", "all")

_Q_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)
_Q_CHROMA = torch.full((8, 8), 99.0)
_Q_CHROMA[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]])
_i = torch.arange(8, dtype=torch.float32)
_DCT = torch.cos((2 * _i[None, :] + 1) * _i[:, None] * torch.pi / 16) * torch.where(_i == 0, 0.5**0.5, 1.0)[:, None] / 2
_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def to_nchw(frames: Tensor) -> Tensor:
    return frames.permute(0, 3, 1, 2)


def to_nhwc(x: Tensor) -> Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def gaussian_blur(frames: Tensor, sigma: float = 1.0) -> Tensor:
    r = max(1, round(3 * sigma))
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma**2))
    g = (g / g.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    x = F.pad(to_nchw(frames), (r, r, r, r), mode="replicate")
    x = F.conv2d(F.conv2d(x, g, groups=3), g.transpose(2, 3), groups=3)
    return to_nhwc(x)


def add_noise(frames: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    return (frames + sigma * torch.randn(frames.shape, generator=generator)).clamp(0, 1)


def down_up(frames: Tensor, factor: int = 2) -> Tensor:
    """Downscale by area averaging, upscale bilinearly (a low-resolution model's look)."""
    h, w = frames.shape[1:3]
    x = F.interpolate(to_nchw(frames), scale_factor=1 / factor, mode="area")
    return to_nhwc(F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False))


def _blocks(x: Tensor, q: Tensor) -> Tensor:
    """Quantise the 8x8 block DCT of x [N, H, W] (H, W multiples of 8) with table q."""
    n, h, w = x.shape
    b = x.view(n, h // 8, 8, w // 8, 8).transpose(2, 3)
    c = _DCT @ b @ _DCT.T
    c = torch.round(c / q) * q
    return (_DCT.T @ c @ _DCT).transpose(2, 3).reshape(n, h, w)


def jpeg_like(frames: Tensor, quality: int = 40) -> Tensor:
    """JPEG's lossy core: YCbCr, 2x chroma subsampling, 8x8 DCT quantised at a quality (1-100)."""
    t, h, w, _ = frames.shape
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    q_luma = ((_Q_LUMA * scale + 50) / 100).floor().clamp(min=1)
    q_chroma = ((_Q_CHROMA * scale + 50) / 100).floor().clamp(min=1)
    ph, pw = -h % 16, -w % 16
    x = to_nchw(frames * 255) if not (ph or pw) else F.pad(to_nchw(frames * 255), (0, pw, 0, ph), mode="replicate")
    ycc = torch.einsum("ij,njhw->nihw", _YCC, x)
    ycc[:, 0] -= 128
    y = _blocks(ycc[:, 0], q_luma)
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    chroma = _blocks(chroma.flatten(0, 1), q_chroma).view(chroma.shape)
    chroma = F.interpolate(chroma, scale_factor=2, mode="nearest")
    ycc = torch.cat([y[:, None] + 128, chroma], dim=1)
    rgb = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_YCC), ycc)[:, :, :h, :w] / 255
    return to_nhwc(rgb).clamp(0, 1)


def color_jitter(frames: Tensor, generator: torch.Generator, gain: float = 0.1, offset: float = 0.05) -> Tensor:
    """One random per-channel gain (1 +- gain) and offset (+- offset) for the whole clip."""
    g = 1 + gain * (2 * torch.rand(3, generator=generator) - 1)
    o = offset * (2 * torch.rand(3, generator=generator) - 1)
    return (frames * g + o).clamp(0, 1)


def degrade(frames: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Apply one named degradation (see DEGRADATIONS); "all" chains blur, jpeg, jitter and noise."""
    if kind == "blur":
        return gaussian_blur(frames, 1.0)
    if kind == "noise":
        return add_noise(frames, 0.08, generator)
    if kind == "jpeg":
        return jpeg_like(frames, 30)
    if kind == "downup":
        return down_up(frames, 2)
    if kind == "jitter":
        return color_jitter(frames, generator)
    if kind == "all":
        x = jpeg_like(gaussian_blur(frames, 0.7), 50)
        return add_noise(color_jitter(x, generator), 0.05, generator)
    raise ValueError(f"unknown degradation {kind!r}; expected one of {DEGRADATIONS}")
