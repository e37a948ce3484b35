"""Wan 2.1 VAE building blocks with Wan's original module names (so `Wan2.1_VAE.pth` loads strictly).

Every temporal convolution is causal. Instead of Wan's indexed `feat_cache` list, each block takes a `cache`
dict keyed by the module itself; a causal conv keeps the last CACHE_T input frames there (zeros before the
first frame), so processing a video in pieces gives the same result as processing it whole.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CACHE_T = 2  # frames of history a 3-tap causal conv needs


class CausalConv3d(nn.Conv3d):
    """Conv3d whose temporal padding is all at the front and comes from the cache (zeros at the start)."""

    def __init__(self, in_dim: int, out_dim: int, kernel, stride=1, padding=0):
        super().__init__(in_dim, out_dim, kernel, stride=stride, padding=0)
        p = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        self.front = 2 * p[0]
        self.space = (p[2], p[2], p[1], p[1])

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        if self.front:
            past = None if cache is None else cache.get(self)
            if past is None:
                past = x.new_zeros(*x.shape[:2], self.front, *x.shape[3:])
            x = torch.cat([past, x], 2)
            if cache is not None:  # clone: a view would keep the whole concatenated chunk alive
                cache[self] = x[:, :, -self.front:].clone()
        if any(self.space):
            x = F.pad(x, self.space)
        return super().forward(x)


class RMS_norm(nn.Module):  # noqa: N801 (Wan's class name)
    """L2-normalise over channels, times sqrt(C) and a learned gain (no mixing across time or space)."""

    def __init__(self, dim: int, images: bool = True):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim, *((1, 1) if images else (1, 1, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    """RMS_norm, SiLU, causal conv, RMS_norm, SiLU, (dropout), causal conv, plus a 1x1x1 shortcut if needed."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.residual = nn.Sequential(
            RMS_norm(in_dim, images=False), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMS_norm(out_dim, images=False), nn.SiLU(), nn.Identity(),  # index 5 is Wan's dropout (inference)
            CausalConv3d(out_dim, out_dim, 3, padding=1))
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame separately (no temporal mixing)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMS_norm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.norm(x.transpose(1, 2).reshape(b * t, c, h, w))
        q, k, v = self.to_qkv(y).flatten(2).transpose(1, 2).unsqueeze(1).chunk(3, dim=-1)  # [bt, 1, hw, c] each
        y = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(b * t, c, h, w)
        y = self.proj(y).view(b, t, c, h, w).transpose(1, 2)
        return x + y


class Resample(nn.Module):
    """Spatial x2 up/down sampling (`resample.1`), with a temporal x2 `time_conv` in the 3d modes."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, dim // 2, 3, padding=1))
        elif mode.startswith("downsample"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        else:
            raise ValueError(f"unknown resample mode {mode!r}")
        if mode == "upsample3d":  # 2C channels = two output frames per input frame
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":  # stride 2, fed the previous chunk's last frame instead of padding
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if self.mode == "upsample3d":
            if self not in cache:
                # Wan's 'Rep' rule: the first call does no temporal upsampling (latent 0 -> 1 frame), and the
                # time_conv's history stays zero: later calls never see those first frames.
                cache[self] = True
            else:
                x = self.time_conv(x, cache).view(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5)
                x = x.reshape(b, c, 2 * t, h, w)
                t *= 2
        x = self.resample(x.transpose(1, 2).reshape(b * t, c, h, w))
        x = x.view(b, t, *x.shape[1:]).transpose(1, 2)
        if self.mode == "downsample3d":
            past = cache.get(self)
            cache[self] = x[:, :, -1:].clone()
            if past is not None:  # the first call (frame 0 alone) passes through: frame 0 -> latent 0
                x = self.time_conv(torch.cat([past, x], 2))
        return x


def _run_head(head: nn.Sequential, x: torch.Tensor, cache: dict) -> torch.Tensor:
    return head[2](head[1](head[0](x)), cache)


class Encoder3d(nn.Module):
    """Frames [B, 3, T, H, W] in [-1, 1] -> [B, out_dim, T', H/8, W/8] (Wan's `encoder.*`)."""

    def __init__(self, dim: int, out_dim: int, dim_mult: list[int], num_res_blocks: int,
                 temperal_downsample: list[bool]):
        super().__init__()
        dims = [dim * u for u in [1, *dim_mult]]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(a, b))
                a = b
            if i != len(dim_mult) - 1:
                blocks.append(Resample(b, "downsample3d" if temperal_downsample[i] else "downsample2d"))
        self.downsamples = nn.ModuleList(blocks)
        c = dims[-1]
        self.middle = nn.ModuleList([ResidualBlock(c, c), AttentionBlock(c), ResidualBlock(c, c)])
        self.head = nn.Sequential(RMS_norm(c, images=False), nn.SiLU(), CausalConv3d(c, out_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        x = self.conv1(x, cache)
        for block in (*self.downsamples, *self.middle):
            x = block(x, cache)
        return _run_head(self.head, x, cache)


class Decoder3d(nn.Module):
    """Latents [B, z_dim, F, h, w] -> frames [B, 3, T, 8h, 8w] (Wan's `decoder.*`)."""

    def __init__(self, dim: int, z_dim: int, dim_mult: list[int], num_res_blocks: int,
                 temperal_upsample: list[bool]):
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        c = dims[0]
        self.middle = nn.ModuleList([ResidualBlock(c, c), AttentionBlock(c), ResidualBlock(c, c)])
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:  # the previous stage's Resample halved the channels
                a //= 2
            for _ in range(num_res_blocks + 1):
                blocks.append(ResidualBlock(a, b))
                a = b
            if i != len(dim_mult) - 1:
                blocks.append(Resample(b, "upsample3d" if temperal_upsample[i] else "upsample2d"))
        self.upsamples = nn.ModuleList(blocks)
        self.head = nn.Sequential(RMS_norm(dims[-1], images=False), nn.SiLU(),
                                  CausalConv3d(dims[-1], 3, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: dict) -> torch.Tensor:
        x = self.conv1(x, cache)
        for block in (*self.middle, *self.upsamples):
            x = block(x, cache)
        return _run_head(self.head, x, cache)
