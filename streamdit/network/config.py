"""Model presets as data: the network's shape plus the defaults a stream needs (codec, size, fps)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import torch

# weight precisions by name (command line and the loader node)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

@dataclass(frozen=True)
class ModelConfig:
    """Shape of a Wan-2.1-style DiT. Field names follow Wan's constructor where one exists."""

    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int  # latent channels in
    out_dim: int  # latent channels out
    text_dim: int  # width of the text embeddings fed to text_embedding
    text_len: int  # text tokens the model attends to (embeddings are zero-padded to this)
    freq_dim: int = 256  # sinusoidal timestep features
    patch_size: tuple[int, int, int] = (1, 2, 2)  # (frames, height, width) per token
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    # Self-attention window in tokens (frames, rows, cols); None = full attention.
    # Odd layers shift the window grid by half a window (non-cyclic: see attention.py).
    window: tuple[int, int, int] | None = None
    # Not Wan's: hidden channels of a per-frame 3x3-conv refiner on the unpatchified output (0: none). With
    # large patches it draws across token borders (docs/training.md, the refiner); Wan's models have none.
    head_conv: int = 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def validate(self) -> ModelConfig:
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.head_conv < 0:
            raise ValueError(f"head_conv={self.head_conv} must be 0 (no refiner) or a positive channel count")
        if self.window is not None and (len(self.window) != 3 or min(self.window) < 1):
            raise ValueError(f"window={self.window} must be three positive token counts (frames, rows, cols) or None")
        return self

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        if not data["head_conv"]:
            del data["head_conv"]  # files without a refiner stay readable by releases that predate the field
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config fields {unknown}; known fields: {sorted(known)}")
        data = dict(data)
        data["patch_size"] = tuple(data.get("patch_size", (1, 2, 2)))
        if data.get("window") is not None:
            data["window"] = tuple(data["window"])
        return cls(**data).validate()


@dataclass(frozen=True)
class StreamDefaults:
    """What a preset streams at unless told otherwise."""

    width: int
    height: int
    fps: float
    codec: dict = field(default_factory=dict)  # e.g. {"kind": "patch", "patch": 4}
    buffer_frames: int = 16  # latent frames in the buffer, reference frames excluded
    chunk_frames: int = 2
    micro_steps: int = 1
    ref_frames: int = 0
    shift: float = 1.0  # Wan shift of the sigma schedule gamma(u)
    cold_micro_steps: int = 0  # steps per band of the uniform cold start (0: micro_steps), chosen on the dev set


@dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    stream: StreamDefaults
    note: str = ""


def _wan(dim: int, ffn: int, heads: int, layers: int) -> ModelConfig:
    return ModelConfig(dim=dim, ffn_dim=ffn, num_heads=heads, num_layers=layers, in_dim=16, out_dim=16,
                       text_dim=4096, text_len=512, freq_dim=256)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "toy",
            ModelConfig(dim=256, ffn_dim=768, num_heads=4, num_layers=8, in_dim=8, out_dim=8,
                        text_dim=128, text_len=16, freq_dim=128, patch_size=(1, 4, 4)),
            StreamDefaults(width=64, height=64, fps=16.0,
                           codec={"kind": "ae", "latent_channels": 8, "widths": [32, 64]},
                           buffer_frames=16, chunk_frames=2, micro_steps=1),
            "the embedded default: 8M parameters on a 16x16x8 autoencoder latent, 256 tokens per 16-frame buffer",
        ),
        Preset(
            "wan2.1-t2v-1.3b", _wan(1536, 8960, 12, 30),
            StreamDefaults(width=832, height=480, fps=16.0, codec={"kind": "wan2.1-vae"},
                           buffer_frames=16, chunk_frames=2, micro_steps=1, shift=5.0),
            "Wan 2.1 text-to-video 1.3B",
        ),
        Preset(
            "wan2.1-t2v-14b", _wan(5120, 13824, 40, 40),
            StreamDefaults(width=832, height=480, fps=16.0, codec={"kind": "wan2.1-vae"},
                           buffer_frames=16, chunk_frames=2, micro_steps=1, shift=5.0),
            "Wan 2.1 text-to-video 14B",
        ),
        Preset(
            "streamdit-4b",
            ModelConfig(dim=3072, ffn_dim=8192, num_heads=24, num_layers=32, in_dim=8, out_dim=8,
                        text_dim=4096, text_len=256, freq_dim=256, window=(16, 16, 16)),
            StreamDefaults(width=512, height=512, fps=16.0, codec={"kind": "latent8", "spatial": 8, "temporal": 4},
                           buffer_frames=16, chunk_frames=2, micro_steps=1, shift=1.0),
            "paper scale (about 4B parameters, 8-channel latent, [16, 64, 64] buffer at 512p); for benchmarks",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
