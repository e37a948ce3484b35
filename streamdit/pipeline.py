"""Load a model and open streams on it: the few calls the command line and the ComfyUI nodes use."""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import attention
from .checkpoint import Bundle, load_checkpoint
from .codecs import build_codec
from .config import get_preset
from .denoiser import EmbeddingCache, ModelDenoiser
from .partition import Partition
from .prompts import PromptTrack
from .stream import Stream, StreamConfig
from .text import ToyTextEncoder

DEFAULT_MODEL = Path(__file__).resolve().parent / "assets" / "streamdit-toy.safetensors"
DEFAULT_TEACHER = DEFAULT_MODEL.with_name("streamdit-toy-teacher.safetensors")


def default_model_path() -> Path | None:
    """The embedded default model shipped in the pack, or None if this checkout has none."""
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None


def default_teacher_path() -> Path | None:
    """The guided teacher the default model was distilled from (4 micro steps, cfg 3), if shipped."""
    return DEFAULT_TEACHER if DEFAULT_TEACHER.is_file() else None


def toy_vocabulary() -> list[str]:
    try:
        from .toyworld import VOCABULARY
        return list(VOCABULARY)
    except ImportError:  # the toy world is optional for the engine
        return ["a", "pig", "cat", "dog", "duck", "walking", "left", "right", "jumping", "on", "grass", "snow",
                "by", "the", "sea", "at", "night"]


def random_bundle(preset: str = "toy", seed: int = 0) -> Bundle:
    """A randomly initialised model of a preset (untrained: for tests, benchmarks and wiring)."""
    from .model import WanDiT

    p = get_preset(preset)
    torch.manual_seed(seed)
    model = WanDiT(p.model)
    if hasattr(model, "init_weights"):
        model.init_weights(seed)
    try:
        codec = build_codec(p.stream.codec)
    except ValueError:  # e.g. the Wan VAE, which is not built in
        codec = None
    text = ToyTextEncoder(toy_vocabulary(), p.model.text_dim, p.model.text_len) if preset == "toy" else None
    return Bundle(model.eval(), p.model, text, codec, p.stream, {"untrained": True, "preset": preset})


@dataclass
class Pipeline:
    """A loaded model with its text encoder, codec and stream defaults."""

    bundle: Bundle
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(cls, path: str | None = None, *, device: str = "cpu", dtype: torch.dtype | None = None,
             attention_backend: str = "auto") -> Pipeline:
        """path None loads the embedded default (or, in a checkout without it, a random toy model
        with a warning); "random:<preset>" builds a random model of any preset."""
        dev = torch.device(device)
        if path is None and default_model_path() is None:
            warnings.warn("no trained default model in this checkout: using a randomly initialised 'toy' "
                          "model (its frames are noise-like)", stacklevel=2)
            path = "random:toy"
        if path is not None and str(path).startswith("random:"):
            bundle = random_bundle(str(path).split(":", 1)[1])
            bundle.model.to(dev, dtype or torch.float32)
            for part in (bundle.text_encoder, bundle.codec):
                if part is not None:
                    part.to(dev)
        else:
            bundle = load_checkpoint(str(path or default_model_path()), device=dev, dtype=dtype)
        if bundle.text_encoder is None or bundle.codec is None or bundle.defaults is None:
            raise ValueError(f"model {bundle.path or path} has no built-in text encoder, codec or stream defaults; "
                             "it needs external conditioning and a decoder (see the Wan 2.1 docs)")
        attention.available_backends(dev)  # fail early on a device without any backend
        bundle.model.attention_backend = attention_backend
        return cls(bundle, dev, next(bundle.model.parameters()).dtype)

    @property
    def untrained(self) -> bool:
        return bool(self.bundle.meta.get("untrained"))

    def stream(self, prompt: str, *, seed: int = 0, width: int | None = None, height: int | None = None,
               fps: float | None = None, buffer_frames: int | None = None, chunk_frames: int | None = None,
               micro_steps: int | None = None, ref_frames: int | None = None, shift: float | None = None,
               cfg_scale: float = 1.0, negative_prompt: str = "", transition_seconds: float = 0.0,
               cold_start: str = "uniform") -> Stream:
        """Open a stream. Unset settings come from the model's defaults; errors say which values work."""
        config = self._config(seed, width, height, fps, buffer_frames, chunk_frames, micro_steps, ref_frames, shift,
                              cold_start)
        return self._open(Stream, config, prompt, cfg_scale, negative_prompt, transition_seconds)

    def _config(self, seed: int = 0, width: int | None = None, height: int | None = None, fps: float | None = None,
                buffer_frames: int | None = None, chunk_frames: int | None = None, micro_steps: int | None = None,
                ref_frames: int | None = None, shift: float | None = None, cold_start: str = "uniform") -> StreamConfig:
        d = self.bundle.defaults
        partition = Partition.from_buffer(buffer_frames or d.buffer_frames, chunk_frames or d.chunk_frames,
                                          micro_steps=micro_steps or d.micro_steps,
                                          ref_frames=d.ref_frames if ref_frames is None else ref_frames)
        fps = float(fps or d.fps)
        return StreamConfig(partition=partition, height=height or d.height, width=width or d.width, fps=fps,
                            shift=d.shift if shift is None else shift, seed=int(seed), cold_start=cold_start)

    def edit(self, source, prompt: str, *, strength: float = 0.6, seed: int = 0, lookahead: bool | None = None,
             fps: float | None = None, cfg_scale: float = 1.0, negative_prompt: str = "",
             transition_seconds: float = 0.0, **kw) -> Stream:
        """Open an edit stream: the source's frames (a FrameSource, a video path, or frames [T, H, W, 3])
        edited toward the prompt (or schedule). Other settings as in stream()."""
        from .edit import EditStream
        from .sources import FrameSource

        if not isinstance(source, FrameSource):
            if isinstance(source, (str, Path)):
                source = FrameSource.from_path(source)
            else:
                source = FrameSource.from_frames(source, fps or self.bundle.defaults.fps)
        config = self._config(seed=seed, fps=fps or source.fps, **kw)
        return self._open(EditStream, config, prompt, cfg_scale, negative_prompt, transition_seconds,
                          source=source, strength=strength, lookahead=lookahead)

    def _open(self, cls, config: StreamConfig, prompt: str, cfg_scale: float, negative_prompt: str,
              transition_seconds: float, **extra) -> Stream:
        """The prompt track, the text cache (unknown words fail here, before any frame) and the denoiser."""
        track = PromptTrack.from_text(prompt, config.fps, transition_frames=transition_seconds * config.fps)
        text = EmbeddingCache(self.bundle.text_encoder)
        for _, p in track.events + [(0.0, negative_prompt)]:
            text.get(p)
        denoise = ModelDenoiser(self.bundle.model, text, cfg_scale, negative_prompt, self.dtype)
        stream = cls(denoise, self.bundle.codec, config, track, device=self.device, **extra)
        stream.check_prompt = text.get
        return stream

    def describe(self) -> str:
        c = self.bundle.config
        n = sum(p.numel() for p in self.bundle.model.parameters())
        d = dataclasses.asdict(self.bundle.defaults)
        return (f"{self.bundle.path or 'random model'}: {n / 1e6:.2f}M parameters, dim {c.dim}, {c.num_layers} layers; "
                f"defaults {d['width']}x{d['height']} @ {d['fps']} fps, codec {d['codec']}")
