"""TAEHV (madebyollin's tiny video autoencoder, the `taew2_1` layout) as a streaming decode-only codec.

It decodes the DiT's normalised Wan 2.1 latents straight to RGB in [0, 1], ~10M parameters instead of the
VAE's 73M. Key names are the original `nn.Sequential` indices (`decoder.1.weight` ... `decoder.22.bias`), so a
real taew2_1 state dict loads. Temporal state is one frame per MemBlock (the previous timestep's input), so
decoding chunk by chunk equals decoding the whole video at once.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .base import Codec, StreamDecoder, StreamEncoder, register_codec


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the input latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """relu(conv(relu(conv(relu(conv(cat[x, past]))))) + skip(x)); `past` is the previous frame's input."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in * 2, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(),
                                  _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TGrow(nn.Module):
    """Temporal upsampling: a 1x1 conv C -> C * stride, channel group s becoming frame t * stride + s."""

    def __init__(self, n_f: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, c, h, w = x.shape
        return self.conv(x).reshape(t * self.stride, c, h, w)


@register_codec("taehv")
class TAEHVCodec(Codec):
    """Normalised Wan latents [C, F, h, w] -> frames [1 + 4(F-1), 8h, 8w, 3] (decode only).

    widths: channels of the three stages and the last conv (taew2_1: 256, 128, 64, 64).
    time_upscale: whether each of the three TGrow layers doubles the frame rate (taew2_1: False, True, True).
    """

    spatial_factor = 8

    def __init__(self, latent_channels: int = 16, widths=(256, 128, 64, 64), time_upscale=(False, True, True)):
        super().__init__()
        self.latent_channels = int(latent_channels)
        self.widths = [int(w) for w in widths]
        self.time_upscale = [bool(t) for t in time_upscale]
        if len(self.widths) != 4 or len(self.time_upscale) != 3:
            raise ValueError(f"TAEHV needs 4 widths and 3 time_upscale flags, got {self.widths} and "
                             f"{self.time_upscale}")
        n = self.widths
        strides = [2 if t else 1 for t in self.time_upscale]
        self.temporal_factor = strides[0] * strides[1] * strides[2]
        self.frames_to_trim = self.temporal_factor - 1  # the start-up frames before frame 0 of the video
        layers: list[nn.Module] = [Clamp(), _conv(self.latent_channels, n[0]), nn.ReLU()]  # 0-2
        for i in range(3):  # 3-8, 9-14, 15-20
            layers += [MemBlock(n[i], n[i]) for _ in range(3)]
            layers += [nn.Upsample(scale_factor=2), TGrow(n[i], strides[i]), _conv(n[i], n[i + 1], bias=False)]
        layers += [nn.ReLU(), _conv(n[3], 3)]  # 21, 22
        self.decoder = nn.Sequential(*layers)

    @property
    def spec(self) -> dict:
        return {"kind": "taehv", "latent_channels": self.latent_channels, "widths": self.widths,
                "time_upscale": self.time_upscale}

    def video_frames(self, latent_frames: int, first: bool = False) -> int:
        if first and latent_frames > 0:
            return self.temporal_factor * latent_frames - self.frames_to_trim
        return self.temporal_factor * latent_frames

    def stream_decoder(self) -> TAEHVStreamDecoder:
        return TAEHVStreamDecoder(self)

    def stream_encoder(self) -> StreamEncoder:
        raise NotImplementedError("TAEHV is decode-only here: its encoder groups frames differently from Wan's "
                                  "(1, 4, 4, ...), so encode with the Wan 2.1 VAE codec (wan2.1-vae) instead")

    def decode_pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """Whole-video decode to [T, 3, H, W] in [0, 1], in the codec's dtype and device."""
        return self.stream_decoder().decode_pixels(latent)


class TAEHVStreamDecoder(StreamDecoder):
    """Chunk-by-chunk TAEHV decode. Each MemBlock keeps the last input frame it saw (zeros before the first),
    the start-up frames are dropped once, and every chunk is processed in parallel over its frames."""

    def __init__(self, codec: TAEHVCodec):
        self.codec = codec
        self.memory: dict[int, torch.Tensor] = {}  # Sequential index -> last input frame [1, C, h, w]
        self.to_trim = codec.frames_to_trim

    @torch.no_grad()
    def decode_pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents [C, F, h, w] -> the frames they complete, [T, 3, H, W] in [0, 1] (codec dtype)."""
        c = self.codec
        if latent.ndim != 4 or latent.shape[0] != c.latent_channels:
            raise ValueError(f"latent must be [{c.latent_channels}, F, h, w], got {tuple(latent.shape)}")
        p = c.decoder[1].weight
        if latent.shape[1] == 0:
            return p.new_zeros(0, 3, latent.shape[2] * c.spatial_factor, latent.shape[3] * c.spatial_factor)
        x = latent.to(p.device, p.dtype).transpose(0, 1)  # frames as the batch
        for i, layer in enumerate(c.decoder):
            if isinstance(layer, MemBlock):
                past = self.memory.get(i)
                if past is None:
                    past = torch.zeros_like(x[:1])
                self.memory[i] = x[-1:].clone()
                x = layer(x, torch.cat([past, x[:-1]]))
            else:
                x = layer(x)
        drop = min(self.to_trim, x.shape[0])
        self.to_trim -= drop
        return x[drop:].clamp(0, 1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents [C, F, h, w] -> frames [T, H, W, 3] float32 in [0, 1] on the CPU."""
        return self.decode_pixels(latent).float().permute(0, 2, 3, 1).cpu()

    def state_dict(self) -> dict:
        return {"memory": dict(self.memory), "to_trim": self.to_trim}

    def load_state_dict(self, state: dict) -> None:
        self.memory, self.to_trim = dict(state["memory"]), int(state["to_trim"])


def taehv_config(state: Mapping[str, torch.Tensor]) -> dict:
    """TAEHVCodec arguments inferred from a decoder state dict (`decoder.N.*` names)."""
    try:
        first, out = state["decoder.1.weight"], state["decoder.22.weight"]
        widths = [first.shape[0]] + [state[f"decoder.{i}.weight"].shape[0] for i in (8, 14, 20)]
        grows = [state[f"decoder.{i}.conv.weight"] for i in (7, 13, 19)]
    except KeyError as exc:
        raise ValueError(f"not a TAEHV decoder state dict: {exc} is missing (keys start {sorted(state)[:4]}); "
                         "expected taew2_1.pth / taew2_1.safetensors") from exc
    if out.shape[0] != 3:
        raise ValueError(f"this TAEHV decoder outputs {out.shape[0]} channels (a patched layout such as taew2_2 for "
                         "the Wan 2.2 VAE), which is not supported; use taew2_1 for Wan 2.1 latents")
    return {"latent_channels": first.shape[1], "widths": widths,
            "time_upscale": [g.shape[0] // g.shape[1] == 2 for g in grows]}


def load_taehv(path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> TAEHVCodec:
    """Load the decoder of a TAEHV checkpoint (.pth/.pt or .safetensors); encoder weights are ignored."""
    from ..io.checkpoint import read_weights_file

    state = read_weights_file(path, "TAEHV")
    for prefix in ("model.", "taehv.", "vae."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    state = {k: v.to(dtype) for k, v in state.items() if k.startswith("decoder.")}
    codec = TAEHVCodec(**taehv_config(state))
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match the TAEHV layout inferred from it ({codec.spec}): {exc}") from exc
    return codec.to(device, dtype).eval()
