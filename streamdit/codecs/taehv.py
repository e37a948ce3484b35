"""TAEHV (madebyollin's tiny video autoencoder, the `taew2_1` layout) as a streaming codec.

The decoder turns the DiT's normalised Wan 2.1 latents straight into RGB in [0, 1], ~10M parameters instead of
the VAE's 73M; the optional encoder (~1.5M more, present in the real taew2_1 file) turns frames back into the same
normalised latents, with no scale or shift on either side. Key names are the original `nn.Sequential` indices
(`decoder.1.weight` ... `decoder.22.bias`, `encoder.0.weight` ... `encoder.17.bias`), so a real taew2_1 state dict
loads. Temporal state is one frame per MemBlock (the previous timestep's input) plus, in the encoder, the frames of
a group of 4 still waiting for the rest, so chunk-by-chunk coding equals coding the whole video at once.

Frame alignment (docs/wan.md, "TAEHV's encoder"): the encoder packs frames 4j .. 4j+3 into latent j (causal: it
sees frames 0 .. 4j+3), the decoder turns latent j into frames 4j-3 .. 4j once its 3 start-up frames are dropped,
and decoded frame k stands for source frame k. T frames encode to ceil(T/4) latents (the last group completed by
repeating the last frame) and decode to 4 ceil(T/4) - 3 frames: frames 0 .. 4 ceil(T/4) - 4 of the source.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .base import Codec, StreamDecoder, StreamEncoder, register_codec


def _conv(n_in: int, n_out: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


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


class TPool(nn.Module):
    """Temporal downsampling: frames t * stride + s (s < stride) side by side as channel group s, then a 1x1 conv
    C * stride -> C. The frame count must be a multiple of the stride."""

    def __init__(self, n_f: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f * stride, n_f, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, c, h, w = x.shape
        return self.conv(x.reshape(t // self.stride, c * self.stride, h, w))


def _run_with_memory(layers: nn.Sequential, x: torch.Tensor, memory: dict[int, torch.Tensor]) -> torch.Tensor:
    """Frames [t, C, h, w] (the batch) through `layers`, every frame at once. Each MemBlock's past is the frame
    before in this call, or for the first one the last frame of the previous call (`memory`, updated in place;
    zeros at the start of a stream)."""
    for i, layer in enumerate(layers):
        if isinstance(layer, MemBlock):
            past = memory.get(i)
            if past is None:
                past = torch.zeros_like(x[:1])
            memory[i] = x[-1:].clone()
            x = layer(x, torch.cat([past, x[:-1]]))
        else:
            x = layer(x)
    return x


@register_codec("taehv")
class TAEHVCodec(Codec):
    """Normalised Wan latents [C, F, h, w] -> frames [1 + 4(F-1), 8h, 8w, 3], and (with an encoder) frames
    [T, 8h, 8w, 3] -> latents [C, ceil(T/4), h, w].

    widths: channels of the decoder's three stages and its last conv (taew2_1: 256, 128, 64, 64).
    time_upscale: whether each of the decoder's three TGrow layers doubles the frame rate (taew2_1: False, True, True).
    encoder_width: channels of the encoder (taew2_1: 64), or None for a decode-only codec.
    time_downscale: whether each of the encoder's three TPool layers halves the frame rate (taew2_1: True, True,
        False); together they must undo the decoder's time_upscale.
    """

    spatial_factor = 8

    def __init__(self, latent_channels: int = 16, widths=(256, 128, 64, 64), time_upscale=(False, True, True),
                 encoder_width: int | None = None, time_downscale=(True, True, False)):
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

        self.encoder_width = None if encoder_width is None else int(encoder_width)
        self.time_downscale = [bool(t) for t in time_downscale]
        self.encoder: nn.Sequential | None = None
        if self.encoder_width is not None:
            pools = [2 if t else 1 for t in self.time_downscale]
            if len(pools) != 3 or pools[0] * pools[1] * pools[2] != self.temporal_factor:
                raise ValueError(f"the encoder's time_downscale {self.time_downscale} must pack {self.temporal_factor} "
                                 f"frames per latent, as the decoder's time_upscale {self.time_upscale} unpacks")
            e = self.encoder_width
            enc: list[nn.Module] = [_conv(3, e), nn.ReLU()]  # 0, 1
            for i in range(3):  # 2-6, 7-11, 12-16
                enc += [TPool(e, pools[i]), _conv(e, e, bias=False, stride=2)] + [MemBlock(e, e) for _ in range(3)]
            enc += [_conv(e, self.latent_channels)]  # 17
            self.encoder = nn.Sequential(*enc)

    @property
    def spec(self) -> dict:
        spec = {"kind": "taehv", "latent_channels": self.latent_channels, "widths": self.widths,
                "time_upscale": self.time_upscale}
        if self.encoder is not None:
            spec.update(encoder_width=self.encoder_width, time_downscale=self.time_downscale)
        return spec

    @property
    def has_encoder(self) -> bool:
        return self.encoder is not None

    def video_frames(self, latent_frames: int, first: bool = False) -> int:
        if first and latent_frames > 0:
            return self.temporal_factor * latent_frames - self.frames_to_trim
        return self.temporal_factor * latent_frames

    def latent_frames(self, video_frames: int) -> int:
        """Latents the stream encoder has given out after `video_frames` source frames: complete groups of 4."""
        return max(0, video_frames) // self.temporal_factor

    def frames_after_roundtrip(self, video_frames: int, flush: bool = True) -> int:
        """Frames that decode from the latents of the first `video_frames` source frames; decoded frame k stands for
        source frame k. flush=True: the whole clip, last group completed as `encode`/`flush` do (repeating the last
        frame): ceil(T/4) latents -> 4 ceil(T/4) - 3 frames (T itself when T = 1 + 4k, up to 3 fewer otherwise).
        flush=False: mid-stream, complete groups only: floor(T/4) latents -> 4 floor(T/4) - 3 frames (0 if none)."""
        t = max(0, video_frames)
        latents = -(-t // self.temporal_factor) if flush else t // self.temporal_factor
        return self.video_frames(latents, first=True)

    def stream_decoder(self) -> TAEHVStreamDecoder:
        return TAEHVStreamDecoder(self)

    def stream_encoder(self, step: int | None = 1) -> TAEHVStreamEncoder:
        """Frames in, latents out as groups of 4 complete (see TAEHVStreamEncoder; step: groups per network call)."""
        if self.encoder is None:
            raise NotImplementedError(
                "this TAEHV has no encoder: its file holds only the decoder (decoder.* weights). Load the full "
                "taew2_1.safetensors / taew2_1.pth from github.com/madebyollin/taehv (it has the encoder.* weights "
                "too), or encode with the Wan 2.1 VAE (wan2.1-vae)")
        return TAEHVStreamEncoder(self, step)

    def decode_pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """Whole-video decode to [T, 3, H, W] in [0, 1], in the codec's dtype and device."""
        return self.stream_decoder().decode_pixels(latent)

    def encode(self, frames: torch.Tensor, step: int | None = 1) -> torch.Tensor:
        """Whole-clip encode, as the reference's encode_video: frames [T, H, W, 3] in [0, 1] -> latents
        [C, ceil(T/4), h, w] (codec dtype and device), the last group completed by repeating the last frame.
        step=None runs the whole padded clip in one call, as the reference's parallel mode does."""
        if frames.ndim != 4 or frames.shape[0] == 0:
            raise ValueError(f"frames must be [T, H, W, 3] with T >= 1, got {tuple(frames.shape)}")
        pad = -frames.shape[0] % self.temporal_factor  # what flush() adds, here in the same call as the rest
        return self.stream_encoder(step).encode(torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)]))


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
        x = _run_with_memory(c.decoder, latent.to(p.device, p.dtype).transpose(0, 1), self.memory)  # frames as batch
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


class TAEHVStreamEncoder(StreamEncoder):
    """Chunk-by-chunk TAEHV encode: frames in, a latent out for every complete group of 4 (frames 4j .. 4j+3 ->
    latent j). Frames of an incomplete group wait in `pending`; each MemBlock keeps the last input frame it saw.
    `flush()` ends the stream as the reference does: the last incomplete group is completed by repeating its last
    frame.

    step: groups per network call. 1 (the default): every group runs alone, so the latents do not depend on how
    the frames were chunked, bit for bit, in any dtype; None: all ready groups of a call at once (faster on a GPU;
    CPU float32 convolutions then round differently with the batch size, ~1e-7).
    """

    def __init__(self, codec: TAEHVCodec, step: int | None = 1):
        if codec.encoder is None:
            codec.stream_encoder()  # raises the no-encoder error
        if step is not None and step < 1:
            raise ValueError(f"step={step} must be a positive number of groups per call, or None for all at once")
        self.codec, self.step = codec, step
        self.memory: dict[int, torch.Tensor] = {}  # Sequential index -> last input frame [1, C, h, w]
        self.pending: torch.Tensor | None = None  # [t, 3, H, W] frames (codec dtype) waiting for their group
        self.frames_seen = 0
        self.frame_size = (0, 0)  # (H, W) of the frames fed so far

    @property
    def pending_frames(self) -> int:
        return 0 if self.pending is None else self.pending.shape[0]

    def _empty(self, height: int, width: int) -> torch.Tensor:
        c = self.codec
        return c.encoder[0].weight.new_zeros(c.latent_channels, 0, height // c.spatial_factor,
                                             width // c.spatial_factor)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """Frames [4n, 3, H, W] -> latents [C, n, h, w], `step` groups per network call."""
        size = x.shape[0] if self.step is None else self.step * self.codec.temporal_factor
        out = [_run_with_memory(self.codec.encoder, x[i:i + size], self.memory) for i in range(0, x.shape[0], size)]
        return torch.cat(out).transpose(0, 1)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [t, H, W, 3] in [0, 1] -> the latents they complete, [C, n, h, w] (codec dtype and device)."""
        c = self.codec
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3], got {tuple(frames.shape)}")
        c.latent_size(frames.shape[1], frames.shape[2])
        p = c.encoder[0].weight
        x = frames.to(p.device, p.dtype).permute(0, 3, 1, 2).contiguous()  # [t, 3, H, W], as the reference lays it out
        if self.frames_seen and self.frame_size != (x.shape[2], x.shape[3]):
            raise ValueError(f"frame size changed mid-stream from {self.frame_size} to {tuple(x.shape[2:])}; start a "
                             "new stream encoder for a new size")
        if self.pending is not None:
            x = torch.cat([self.pending, x])
        self.frames_seen += frames.shape[0]
        self.frame_size = (x.shape[2], x.shape[3])
        ready = x.shape[0] // c.temporal_factor * c.temporal_factor
        self.pending = x[ready:] if x.shape[0] > ready else None
        if ready == 0:
            return self._empty(*self.frame_size)
        return self._run(x[:ready])

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """End of stream: the last incomplete group, completed by repeating its last frame -> [C, 0 or 1, h, w].
        The stream can go on afterwards, from the next group."""
        if self.pending is None:
            return self._empty(*self.frame_size)
        x, self.pending = self.pending, None
        pad = self.codec.temporal_factor - x.shape[0]
        return self._run(torch.cat([x, x[-1:].expand(pad, -1, -1, -1)]))

    def state_dict(self) -> dict:
        return {"memory": dict(self.memory), "pending": self.pending, "frames_seen": self.frames_seen,
                "frame_size": self.frame_size}

    def load_state_dict(self, state: dict) -> None:
        self.memory, self.pending = dict(state["memory"]), state["pending"]
        self.frames_seen, self.frame_size = int(state["frames_seen"]), tuple(state["frame_size"])


def taehv_config(state: Mapping[str, torch.Tensor]) -> dict:
    """TAEHVCodec arguments inferred from a TAEHV state dict (`decoder.N.*` names, and `encoder.N.*` if it has
    an encoder)."""
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
    config = {"latent_channels": first.shape[1], "widths": widths,
              "time_upscale": [g.shape[0] // g.shape[1] == 2 for g in grows]}
    if any(k.startswith("encoder.") for k in state):
        try:
            enc_in, enc_out = state["encoder.0.weight"], state["encoder.17.weight"]
            pools = [state[f"encoder.{i}.conv.weight"] for i in (2, 7, 12)]
        except KeyError as exc:
            raise ValueError(f"this TAEHV's encoder is incomplete: {exc} is missing; use the whole taew2_1 file, or "
                             "one with only decoder.* weights") from exc
        if enc_in.shape[1] != 3 or enc_out.shape[0] != first.shape[1]:
            raise ValueError(f"this TAEHV encoder maps {enc_in.shape[1]}-channel frames to {enc_out.shape[0]}-channel "
                             f"latents; the taew2_1 layout maps RGB (3) to the decoder's {first.shape[1]}")
        config.update(encoder_width=enc_in.shape[0], time_downscale=[q.shape[1] // q.shape[0] == 2 for q in pools])
    return config


def load_taehv(path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> TAEHVCodec:
    """Load a TAEHV checkpoint (.pth/.pt or .safetensors): the decoder, and the encoder when the file has one."""
    from ..io.checkpoint import read_weights_file

    state = read_weights_file(path, "TAEHV")
    for prefix in ("model.", "taehv.", "vae."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    state = {k: v.to(dtype) for k, v in state.items() if k.startswith(("decoder.", "encoder."))}
    try:
        codec = TAEHVCodec(**taehv_config(state))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match the TAEHV layout inferred from it ({codec.spec}): {exc}") from exc
    return codec.to(device, dtype).eval()
