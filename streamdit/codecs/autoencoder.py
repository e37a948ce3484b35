"""A small learned autoencoder: 8x spatial compression, per-frame (no temporal state, so no seams).

The toy model diffuses in this latent space: fewer, richer tokens than raw pixels. Latents are
normalised per channel with statistics measured after training (as Wan normalises its VAE latents).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Codec, StreamDecoder, StreamEncoder, register_codec


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    def __init__(self, widths: list[int], latent_channels: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        for a, b in zip(widths, widths[1:] + [widths[-1]]):
            layers += [ResBlock(a), nn.Conv2d(a, b, 4, stride=2, padding=1)]  # halve the size
        layers += [ResBlock(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, widths: list[int], latent_channels: int):
        super().__init__()
        rev = widths[::-1]
        layers: list[nn.Module] = [nn.Conv2d(latent_channels, rev[0], 3, padding=1), ResBlock(rev[0])]
        for a, b in zip(rev, rev[1:] + [rev[-1]]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1), ResBlock(b)]
        layers += [nn.SiLU(), nn.Conv2d(rev[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


@register_codec("ae")
class AutoencoderCodec(Codec):
    """Frames [T, H, W, 3] in [0, 1] <-> normalised latents [C, T, H/8, W/8]."""

    temporal_factor = 1

    def __init__(self, latent_channels: int = 16, widths: tuple[int, ...] | list[int] = (32, 64, 128)):
        super().__init__()
        self.widths = list(widths)
        self.latent_channels = latent_channels
        self.spatial_factor = 2 ** len(self.widths)
        self.encoder = Encoder(self.widths, latent_channels)
        self.decoder = Decoder(self.widths, latent_channels)
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    @property
    def spec(self) -> dict:
        return {"kind": "ae", "latent_channels": self.latent_channels, "widths": self.widths}

    def _device(self):
        return self.latent_mean.device

    def encode_raw(self, frames: torch.Tensor) -> torch.Tensor:
        """[T, H, W, 3] -> unnormalised latents [T, C, h, w] (used in training)."""
        x = frames.to(self._device(), torch.float32).permute(0, 3, 1, 2) * 2 - 1
        return self.encoder(x)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Unnormalised latents [T, C, h, w] -> frames [T, 3, H, W] in about [0, 1] (unclamped)."""
        return (self.decoder(z) + 1) / 2

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean.view(1, -1, 1, 1)) / self.latent_std.view(1, -1, 1, 1)

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latent_std.view(1, -1, 1, 1) + self.latent_mean.view(1, -1, 1, 1)

    @torch.no_grad()
    def to_latent(self, frames: torch.Tensor, batch: int = 64) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3], got {tuple(frames.shape)}")
        self.latent_size(frames.shape[1], frames.shape[2])
        out = [self.normalise(self.encode_raw(frames[i:i + batch])) for i in range(0, frames.shape[0], batch)]
        return torch.cat(out).permute(1, 0, 2, 3)  # [C, T, h, w]

    @torch.no_grad()
    def to_frames(self, latent: torch.Tensor, batch: int = 64) -> torch.Tensor:
        if latent.ndim != 4 or latent.shape[0] != self.latent_channels:
            raise ValueError(f"latent must be [{self.latent_channels}, F, h, w], got {tuple(latent.shape)}")
        z = latent.to(self._device(), torch.float32).permute(1, 0, 2, 3)
        out = [self.decode_raw(self.denormalise(z[i:i + batch])) for i in range(0, z.shape[0], batch)]
        return torch.cat(out).clamp(0, 1).permute(0, 2, 3, 1).cpu()

    def stream_decoder(self) -> StreamDecoder:
        return _Dec(self)

    def stream_encoder(self) -> StreamEncoder:
        return _Enc(self)


class _Dec(StreamDecoder):
    def __init__(self, codec: AutoencoderCodec):
        self.codec = codec

    def decode(self, latent):
        return self.codec.to_frames(latent)


class _Enc(StreamEncoder):
    def __init__(self, codec: AutoencoderCodec):
        self.codec = codec

    def encode(self, frames):
        return self.codec.to_latent(frames)
