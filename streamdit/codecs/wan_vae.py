"""The Wan 2.1 VAE as a streaming codec: 8x spatial, 4x temporal, 16 latent channels.

The state dict uses Wan's original names (`encoder.*`, `conv1`, `conv2`, `decoder.*`), so `Wan2.1_VAE.pth`
and ComfyUI's `wan_2.1_vae.safetensors` load strictly; diffusers' `AutoencoderKLWan` weights are renamed by
`diffusers_to_wan`. Latents in DiT space are (mu - mean) / std with Wan's per-channel constants.

Streaming is exact: the causal caches carry over between chunks, so decoding [1, k, k, ...] latent frames
chunk by chunk equals Wan's own decode. Wan decodes latent 0 alone into one frame (no temporal upsampling
in that call), so the stream decoder splits latent 0 off whatever first chunk it gets; the encoder likewise
takes frame 0 alone, then groups of 4.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from .base import Codec, StreamDecoder, StreamEncoder, register_codec
from .wan_vae_blocks import CausalConv3d, Decoder3d, Encoder3d

# Wan 2.1's latent statistics (wan/modules/vae.py; the same in diffusers' and ComfyUI's configs).
WAN21_LATENT_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
WAN21_LATENT_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


@register_codec("wan2.1-vae")
class WanVAECodec(Codec):
    """Frames [T, H, W, 3] in [0, 1] <-> normalised latents [z_dim, 1 + (T-1)/4, H/8, W/8].

    The defaults are the released Wan 2.1 VAE (126.9M parameters); smaller configs are for tests. Latent
    statistics are Wan's for z_dim 16 and mean 0 / std 1 otherwise.
    """

    def __init__(self, dim: int = 96, z_dim: int = 16, dim_mult=(1, 2, 4, 4), num_res_blocks: int = 2,
                 temperal_downsample=(False, True, True)):
        super().__init__()
        self.dim, self.z_dim, self.num_res_blocks = int(dim), int(z_dim), int(num_res_blocks)
        self.dim_mult = [int(m) for m in dim_mult]
        self.temperal_downsample = [bool(t) for t in temperal_downsample]  # Wan's spelling
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(f"temperal_downsample needs one entry per downsampling stage (len(dim_mult) - 1 = "
                             f"{len(self.dim_mult) - 1}), got {self.temperal_downsample}")
        self.latent_channels = self.z_dim
        self.spatial_factor = 2 ** (len(self.dim_mult) - 1)
        self.temporal_factor = 2 ** sum(self.temperal_downsample)
        self.encoder = Encoder3d(self.dim, self.z_dim * 2, self.dim_mult, self.num_res_blocks,
                                 self.temperal_downsample)
        self.conv1 = CausalConv3d(self.z_dim * 2, self.z_dim * 2, 1)
        self.conv2 = CausalConv3d(self.z_dim, self.z_dim, 1)
        self.decoder = Decoder3d(self.dim, self.z_dim, self.dim_mult, self.num_res_blocks,
                                 self.temperal_downsample[::-1])
        # Plain lists, not buffers: the state dict stays exactly Wan's, and checkpoint loading (to_empty) cannot
        # wipe them.
        wan = self.z_dim == len(WAN21_LATENT_MEAN)
        self.latent_mean = list(WAN21_LATENT_MEAN) if wan else [0.0] * self.z_dim
        self.latent_std = list(WAN21_LATENT_STD) if wan else [1.0] * self.z_dim

    @property
    def spec(self) -> dict:
        return {"kind": "wan2.1-vae", "dim": self.dim, "z_dim": self.z_dim, "dim_mult": self.dim_mult,
                "num_res_blocks": self.num_res_blocks, "temperal_downsample": self.temperal_downsample}

    def video_frames(self, latent_frames: int, first: bool = False) -> int:
        if first and latent_frames > 0:
            return 1 + self.temporal_factor * (latent_frames - 1)
        return self.temporal_factor * latent_frames

    def latent_frames(self, video_frames: int) -> int:
        return 0 if video_frames <= 0 else 1 + (video_frames - 1) // self.temporal_factor  # frame 0, then groups

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1,) + (1,) * (like.ndim - 1)
        mean = torch.tensor(self.latent_mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.latent_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def normalise(self, mu: torch.Tensor) -> torch.Tensor:
        """Raw latents [C, ...] -> DiT space."""
        mean, std = self._stats(mu)
        return (mu - mean) / std

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        """DiT-space latents [C, ...] -> the VAE's raw latents."""
        mean, std = self._stats(z)
        return z * std + mean

    def _param(self) -> torch.Tensor:
        return self.conv2.weight

    def stream_decoder(self, step: int | None = 1) -> WanStreamDecoder:
        return WanStreamDecoder(self, step)

    def stream_encoder(self, step: int | None = 1) -> WanStreamEncoder:
        return WanStreamEncoder(self, step)

    def decode_pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """Whole-clip decode to [3, T, H, W] in [-1, 1], in the codec's dtype and device (for tests/exports)."""
        return self.stream_decoder().decode_pixels(latent)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Whole-clip encode; the clip must have 1 + 4k frames (Wan's grouping: frame 0, then fours)."""
        enc = self.stream_encoder()
        out = enc.encode(frames)
        if enc.pending_frames:
            t = frames.shape[0]
            raise ValueError(f"{t} frames do not fit the Wan VAE's grouping of 1 + {self.temporal_factor}k "
                             f"frames ({enc.pending_frames} left over); trim the clip to {t - enc.pending_frames} "
                             f"frames or pad it to {t - enc.pending_frames + self.temporal_factor}, or use "
                             "stream_encoder() to feed frames incrementally")
        return out


class WanStreamDecoder(StreamDecoder):
    """Chunk-by-chunk decode with Wan's causal caches kept between chunks (seamless and exact).

    step: latent frames per network call inside a chunk (1 = Wan's own schedule and the least memory;
    None = the whole chunk at once). Results are equal either way, up to float rounding.
    """

    def __init__(self, codec: WanVAECodec, step: int | None = 1):
        self.codec, self.step = codec, step
        self.cache: dict = {}
        self.latents_seen = 0

    @torch.no_grad()
    def decode_pixels(self, latent: torch.Tensor) -> torch.Tensor:
        """DiT latents [C, F, h, w] -> the frames they complete, [3, T, H, W] in [-1, 1] (codec dtype)."""
        c = self.codec
        if latent.ndim != 4 or latent.shape[0] != c.latent_channels:
            raise ValueError(f"latent must be [{c.latent_channels}, F, h, w], got {tuple(latent.shape)}")
        n = latent.shape[1]
        p = c._param()
        if n == 0:
            return p.new_zeros(3, 0, latent.shape[2] * c.spatial_factor, latent.shape[3] * c.spatial_factor)
        if self.latents_seen == 0 and n > 1:
            # Wan decodes latent 0 alone (one frame, no temporal upsampling in that call): split it off.
            return torch.cat([self.decode_pixels(latent[:, :1]), self.decode_pixels(latent[:, 1:])], 1)
        z = c.conv2(c.denormalise(latent.to(p.device, p.dtype)).unsqueeze(0))
        step = n if self.step is None else self.step
        out = [c.decoder(z[:, :, i:i + step], self.cache) for i in range(0, n, step)]
        self.latents_seen += n
        return torch.cat(out, 2)[0].clamp(-1, 1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """DiT latents [C, F, h, w] -> frames [T, H, W, 3] float32 in [0, 1] on the CPU."""
        x = self.decode_pixels(latent)
        return ((x.float() + 1) / 2).permute(1, 2, 3, 0).cpu()

    def state_dict(self) -> dict:
        names = {m: n for n, m in self.codec.named_modules()}
        return {"latents_seen": self.latents_seen, "cache": {names[m]: v for m, v in self.cache.items()}}

    def load_state_dict(self, state: dict) -> None:
        modules = dict(self.codec.named_modules())
        self.latents_seen = int(state["latents_seen"])
        self.cache = {modules[n]: v for n, v in state["cache"].items()}


class WanStreamEncoder(StreamEncoder):
    """Frames in, latents out as soon as complete groups arrive: frame 0 alone, then groups of 4.

    Any number of frames may be passed per call; leftovers wait in `pending` for the next call.
    step: groups of 4 frames per network call (1 = Wan's own schedule; None = all ready groups at once).
    """

    def __init__(self, codec: WanVAECodec, step: int | None = 1):
        self.codec, self.step = codec, step
        self.cache: dict = {}
        self.started = False
        self.pending: torch.Tensor | None = None  # [1, 3, t, H, W] in [-1, 1], not yet encoded

    @property
    def pending_frames(self) -> int:
        return 0 if self.pending is None else self.pending.shape[2]

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        c = self.codec
        mu = c.conv1(c.encoder(x, self.cache))[:, :c.z_dim]
        return c.normalise(mu[0])

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [t, H, W, 3] in [0, 1] -> the latents they complete, [C, n, h, w] (codec dtype and device)."""
        c = self.codec
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3], got {tuple(frames.shape)}")
        h, w = c.latent_size(frames.shape[1], frames.shape[2])
        p = c._param()
        x = (frames.to(p.device, p.dtype) * 2 - 1).permute(3, 0, 1, 2).unsqueeze(0)
        if self.pending is not None:
            if self.pending.shape[3:] != x.shape[3:]:
                raise ValueError(f"frame size changed mid-stream from {tuple(self.pending.shape[3:])} to "
                                 f"{tuple(x.shape[3:])}; start a new stream encoder for a new size")
            x = torch.cat([self.pending, x], 2)
        out = []
        if not self.started and x.shape[2] >= 1:
            out.append(self._run(x[:, :, :1]))
            x, self.started = x[:, :, 1:], True
        tf = c.temporal_factor
        ready = x.shape[2] // tf * tf
        size = ready if self.step is None else self.step * tf
        for i in range(0, ready, max(size, tf)):
            out.append(self._run(x[:, :, i:i + max(size, tf)]))
        self.pending = x[:, :, ready:] if x.shape[2] > ready else None
        if not out:
            return p.new_zeros(c.z_dim, 0, h, w)
        return torch.cat(out, 1)

    def state_dict(self) -> dict:
        names = {m: n for n, m in self.codec.named_modules()}
        return {"started": self.started, "pending": self.pending,
                "cache": {names[m]: v for m, v in self.cache.items()}}

    def load_state_dict(self, state: dict) -> None:
        modules = dict(self.codec.named_modules())
        self.started, self.pending = bool(state["started"]), state["pending"]
        self.cache = {modules[n]: v for n, v in state["cache"].items()}


# -- names and loading ---------------------------------------------------------------------------------------

_DIFFUSERS_RES = {"norm1.gamma": "residual.0.gamma", "conv1": "residual.2", "norm2.gamma": "residual.3.gamma",
                  "conv2": "residual.6", "conv_shortcut": "shortcut"}


def _rename_block(rest: str) -> str:
    """A ResidualBlock's diffusers parameter path -> Wan's (resample/attention paths are unchanged)."""
    for new, old in _DIFFUSERS_RES.items():
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def diffusers_to_wan(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a diffusers `AutoencoderKLWan` (Wan 2.1 layout) state dict to Wan's original names.

    quant_conv/post_quant_conv -> conv1/conv2; conv_in -> conv1; norm_out/conv_out -> head.0/head.2;
    encoder.down_blocks.N -> encoder.downsamples.N; mid_block.{resnets.0, attentions.0, resnets.1} ->
    middle.{0, 1, 2}; decoder.up_blocks.i.resnets.j -> decoder.upsamples.(i(R+2)+j) and
    up_blocks.i.upsamplers.0 -> upsamples.(i(R+2)+R+1), with R+1 ResidualBlocks per decoder stage; inside a
    ResidualBlock norm1/conv1/norm2/conv2/conv_shortcut -> residual.0/residual.2/residual.3/residual.6/shortcut.
    """
    resnets = {int(m.group(1)) for k in state if (m := re.match(r"decoder\.up_blocks\.0\.resnets\.(\d+)\.", k))}
    per_stage = len(resnets) + 1  # R + 1 ResidualBlocks and one upsampler
    out = {}
    for key, value in state.items():
        if key.startswith("quant_conv."):
            new = "conv1." + key[len("quant_conv."):]
        elif key.startswith("post_quant_conv."):
            new = "conv2." + key[len("post_quant_conv."):]
        elif m := re.fullmatch(r"(encoder|decoder)\.conv_in\.(.+)", key):
            new = f"{m[1]}.conv1.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.norm_out\.(.+)", key):
            new = f"{m[1]}.head.0.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.conv_out\.(.+)", key):
            new = f"{m[1]}.head.2.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.middle.{2 * int(m[2])}.{_rename_block(m[3])}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.(\d+)\.(.+)", key):
            new = f"{m[1]}.middle.{2 * int(m[2]) + 1}.{m[3]}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(.+)", key):
            new = f"encoder.downsamples.{m[1]}.{_rename_block(m[2])}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.upsamples.{int(m[1]) * per_stage + int(m[2])}.{_rename_block(m[3])}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            new = f"decoder.upsamples.{int(m[1]) * per_stage + per_stage - 1}.{m[2]}"
        else:
            new = key
        out[new] = value
    return out


def wan_vae_config(state: Mapping[str, torch.Tensor]) -> dict:
    """WanVAECodec arguments inferred from a state dict with Wan's original names."""
    if "encoder.conv1.weight" not in state or "conv2.weight" not in state:
        raise ValueError("not a Wan 2.1 VAE state dict: encoder.conv1.weight / conv2.weight are missing (keys "
                         f"start {sorted(state)[:4]}); expected Wan2.1_VAE.pth, ComfyUI's wan_2.1_vae or a "
                         "diffusers AutoencoderKLWan")
    dim = state["encoder.conv1.weight"].shape[0]
    z_dim = state["conv2.weight"].shape[0]
    pattern = re.compile(r"encoder\.downsamples\.(\d+)\.resample\.1\.weight")
    resamples = sorted(int(m[1]) for k in state if (m := pattern.fullmatch(k)))
    blocks = {int(m[1]) for k in state if (m := re.match(r"encoder\.downsamples\.(\d+)\.", k))}
    num_res_blocks = resamples[0] if resamples else len(blocks)
    stages = len(resamples) + 1
    dim_mult = [state[f"encoder.downsamples.{i * (num_res_blocks + 1)}.residual.2.weight"].shape[0] // dim
                for i in range(stages)]
    temporal = [f"encoder.downsamples.{r}.time_conv.weight" in state for r in resamples]
    return {"dim": dim, "z_dim": z_dim, "dim_mult": dim_mult, "num_res_blocks": num_res_blocks,
            "temperal_downsample": temporal}


def _read(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Wan VAE file {path} does not exist; check the path")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            return load_file(path)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} ({os.path.getsize(path)} bytes) is not a readable VAE file: it may be truncated "
                         f"or corrupt ({type(exc).__name__}: {exc}); download or copy it again") from exc
    for key in ("state_dict", "model", "vae"):  # trainer-style wrappers
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    return dict(obj)


def wan_state_dict(state: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Normalise a Wan 2.1 VAE state dict to the original names: strip `model.`/`vae.`, rename diffusers keys.

    Raises a clear ValueError for the Wan 2.2 VAE (z_dim 48, 16x spatial), which this codec does not support.
    """
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for prefix in ("model.", "vae.", "first_stage_model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    if any(re.match(r"decoder\.up_blocks\.\d+\.", k) for k in state) or "post_quant_conv.weight" in state:
        if any("avg_shortcut" in k for k in state):
            _refuse_22(source)
        state = diffusers_to_wan(state)
    z = state.get("conv2.weight")
    if any(re.match(r"decoder\.upsamples\.\d+\.upsamples\.\d+\.", k) for k in state) or (
            z is not None and z.shape[0] == 48):
        _refuse_22(source)
    return state


def _refuse_22(source: str):
    raise ValueError(f"{source} is the Wan 2.2 VAE (z_dim 48, 16x spatial compression), which is not supported yet; "
                     "use the Wan 2.1 VAE (Wan2.1_VAE.pth / wan_2.1_vae.safetensors), which Wan 2.1 models and "
                     "Wan 2.2 14B use")


def load_wan_vae(path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> WanVAECodec:
    """Load a Wan 2.1 VAE from .pth/.pt or .safetensors (original, ComfyUI or diffusers names)."""
    state = wan_state_dict(_read(path), path)
    codec = WanVAECodec(**wan_vae_config(state))
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match the Wan 2.1 VAE layout inferred from it ({codec.spec}): {exc}") \
            from exc
    return codec.to(device, dtype).eval()
