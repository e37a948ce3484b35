"""The codec interface every decoder (patch, Wan VAE, TAEHV, learned) implements.

Frames are float32 [T, H, W, 3] in [0, 1] on the CPU (ComfyUI's IMAGE layout); latents are
[C, F, h, w]. A stream decoder is stateful: decode(chunk) returns the frames that chunk completes,
and its state (causal caches) carries over to the next chunk, so chunked decoding has no seams.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class StreamDecoder:
    """Stateful chunk-by-chunk decoder. Subclasses keep causal state between decode() calls."""

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class StreamEncoder:
    """Stateful chunk-by-chunk encoder (video-to-video sources)."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Codec(nn.Module):
    """Latent <-> RGB. `spec` is the JSON-able description stored in checkpoints."""

    latent_channels: int
    spatial_factor: int
    temporal_factor: int = 1

    @property
    def spec(self) -> dict:
        raise NotImplementedError

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent grid for a frame size; errors say which sizes work."""
        f = self.spatial_factor
        if height % f or width % f or height <= 0 or width <= 0:
            raise ValueError(f"frame size {width}x{height} is not a positive multiple of {f} (this codec's "
                             f"spatial factor); try {max(f, width // f * f)}x{max(f, height // f * f)}")
        return height // f, width // f

    def video_frames(self, latent_frames: int, first: bool = False) -> int:
        """Video frames produced by a chunk of latent frames (first: the chunk that starts the stream)."""
        return latent_frames * self.temporal_factor

    def latent_frames(self, video_frames: int) -> int:
        """Latent frames an encoder gives for the first `video_frames` frames of a clip (complete groups only)."""
        return video_frames // self.temporal_factor

    def end_padding(self, video_frames: int) -> int:
        """Frames to append after a clip of `video_frames` (repeating its last frame) so that its last group is
        complete and the decode of its latents covers every one of its frames (the rest is trimmed)."""
        pad = 0
        while True:
            n = video_frames + pad
            complete = n == 0 or self.latent_frames(n) > self.latent_frames(n - 1)
            if complete and self.video_frames(self.latent_frames(n), first=True) >= video_frames:
                return pad
            pad += 1

    def stream_decoder(self) -> StreamDecoder:
        raise NotImplementedError

    def stream_encoder(self) -> StreamEncoder:
        raise NotImplementedError

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Whole-clip decode through a fresh stream decoder."""
        return self.stream_decoder().decode(latent)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.stream_encoder().encode(frames)


_CODECS: dict[str, Callable[..., Codec]] = {}


def register_codec(kind: str):
    def wrap(factory):
        _CODECS[kind] = factory
        return factory
    return wrap


def build_codec(spec: dict) -> Codec:
    """Construct a codec from its spec, e.g. {"kind": "patch", "patch": 4}."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in _CODECS:
        raise ValueError(f"unknown codec kind {kind!r}; known kinds: {', '.join(sorted(_CODECS))}")
    return _CODECS[kind](**spec)
