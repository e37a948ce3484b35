"""Pixel/patch codec: the latent is the frame itself, rescaled to [-1, 1] and folded p x p into channels."""
from __future__ import annotations

import torch
from einops import rearrange

from .base import Codec, StreamDecoder, StreamEncoder, register_codec


@register_codec("patch")
class PatchCodec(Codec):
    """Identity latent (p = 1) or space-to-depth with p x p pixels per latent cell. Stateless."""

    temporal_factor = 1

    def __init__(self, patch: int = 1):
        super().__init__()
        if not isinstance(patch, int) or patch < 1:
            raise ValueError(f"patch={patch!r} must be a positive integer")
        self.patch = patch
        self.spatial_factor = patch
        self.latent_channels = 3 * patch * patch

    @property
    def spec(self) -> dict:
        return {"kind": "patch", "patch": self.patch}

    def to_latent(self, frames: torch.Tensor) -> torch.Tensor:
        """[T, H, W, 3] in [0, 1] -> [3 p p, T, H/p, W/p] in [-1, 1]."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3], got {tuple(frames.shape)}")
        self.latent_size(frames.shape[1], frames.shape[2])
        x = frames.float() * 2 - 1
        return rearrange(x, "t (h p) (w q) c -> (c p q) t h w", p=self.patch, q=self.patch)

    def to_frames(self, latent: torch.Tensor) -> torch.Tensor:
        """[3 p p, T, h, w] -> [T, h p, w p, 3] in [0, 1] (clamped), float32 on the CPU."""
        if latent.ndim != 4 or latent.shape[0] != self.latent_channels:
            raise ValueError(f"latent must be [{self.latent_channels}, F, h, w], got {tuple(latent.shape)}")
        x = rearrange(latent.float(), "(c p q) t h w -> t (h p) (w q) c", p=self.patch, q=self.patch)
        return ((x + 1) / 2).clamp(0, 1).cpu()

    def stream_decoder(self) -> StreamDecoder:
        return _Stateless(self.to_frames)

    def stream_encoder(self) -> StreamEncoder:
        return _StatelessEnc(self.to_latent)


class _Stateless(StreamDecoder):
    def __init__(self, fn):
        self.fn = fn

    def decode(self, latent):
        return self.fn(latent)


class _StatelessEnc(StreamEncoder):
    def __init__(self, fn):
        self.fn = fn

    def encode(self, frames):
        return self.fn(frames)
