"""Load a model and open streams on it: the few calls the command line and the ComfyUI nodes use."""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .codecs import build_codec
from .io.checkpoint import Bundle, load_checkpoint
from .network import attention
from .network.config import get_preset
from .network.text import TextEncoder, ToyTextEncoder, hashed_text_encoder, toy_vocabulary
from .sampling.causal import CausalDenoiser
from .sampling.denoiser import EmbeddingCache, ModelDenoiser
from .sampling.families import FAMILIES, Family, get_family
from .sampling.partition import Partition
from .sampling.prompts import PromptTrack
from .sampling.stream import Stream, StreamConfig
from .wan.loading import attach_decoder, is_streamdit_file, load_wan_bundle

DEFAULT_MODEL = Path(__file__).resolve().parent / "assets" / "streamdit-toy.safetensors"
DEFAULT_TEACHER = DEFAULT_MODEL.with_name("streamdit-toy-teacher.safetensors")


def default_model_path() -> Path | None:
    """The embedded default model shipped in the pack, or None if this checkout has none."""
    return DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None


def default_teacher_path() -> Path | None:
    """The guided teacher the default model was distilled from (4 micro steps, cfg 1.5), if shipped."""
    return DEFAULT_TEACHER if DEFAULT_TEACHER.is_file() else None


def random_bundle(preset: str = "toy", seed: int = 0) -> Bundle:
    """A randomly initialised model of a preset (untrained: for tests, benchmarks and wiring)."""
    from .network.model import WanDiT

    p = get_preset(preset)
    torch.manual_seed(seed)
    model = WanDiT(p.model)
    model.init_weights(seed)
    try:
        codec = build_codec(p.stream.codec)  # the Wan presets get a full-size random Wan 2.1 VAE
    except ValueError:  # a codec kind without a built-in implementation
        codec = None
    if preset == "toy":
        text = ToyTextEncoder(toy_vocabulary(), p.model.text_dim, p.model.text_len)
    else:  # large presets read external embeddings (umT5 for Wan); random ones stand in for them here
        text = hashed_text_encoder(p.model.text_dim, p.model.text_len)
    return Bundle(model.eval(), p.model, text, codec, p.stream, {"untrained": True, "preset": preset})


@dataclass
class Pipeline:
    """A loaded model with its text encoder, codec and stream defaults."""

    bundle: Bundle
    device: torch.device
    dtype: torch.dtype
    family: Family = FAMILIES["wan"]
    # per-stream settings: pipelines made from one with dataclasses.replace share its weights and never
    # change the shared network module
    attention: str = "auto"  # attention kernel (streamdit.network.attention)
    compile: bool = False  # torch.compile the network (WanDiT forward(compiled=True))

    @classmethod
    def load(cls, path: str | None = None, *, decoder: str | None = None, device: str = "cpu",
             dtype: torch.dtype | None = None, attention_backend: str = "auto", compile: bool = False,
             family: str | None = None, lora: str | None = None) -> Pipeline:
        """path None loads the embedded default (or, in a checkout without it, a random toy model
        with a warning); "random:<preset>" builds a random model of any preset; a Wan 2.1 DiT file (any
        layout) loads with `decoder` (a Wan 2.1 VAE or TAEHV file) and takes its text encoder later
        (with_text_encoder). attention_backend and compile (torch.compile) are this pipeline's per-stream settings.
        family (streamdit.sampling.families): how the network streams; None = the file's own (our metadata) or "wan".
        A causal family loads the entry of a trainer's .pt file that its authors' inference loads. lora: a LoRA
        file merged into the weights in place (LongLive's lora.pt on its base)."""
        dev = torch.device(device)
        chosen = get_family(family) if family is not None else None
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
        elif path is not None and (decoder is not None or not is_streamdit_file(str(path))):
            key = chosen.state_key if chosen is not None else None
            try:
                bundle = load_wan_bundle(str(path), decoder, device=dev, dtype=dtype, state_key=key)
            except ValueError as exc:
                if key is None or f"no entry {key!r}" not in str(exc):
                    raise
                raise ValueError(f"family {chosen.name} loads the {key!r} entry of a trainer's .pt file, as its "
                                 f"authors' inference does, but {exc}. Choose the family this file was trained "
                                 "for (--family)") from None
        else:
            bundle = load_checkpoint(str(path or default_model_path()), device=dev, dtype=dtype)
        if bundle.codec is None or bundle.defaults is None:
            raise ValueError(f"model {bundle.path or path} has no codec or stream defaults of its own; load it with "
                             "a decoder (decoder=..., see docs/wan.md)")
        attention.available_backends(dev)  # fail early on a device without any backend
        if lora is not None:
            from .wan.lora import merge_lora
            bundle.meta["lora"] = merge_lora(bundle.model, str(lora))
        pipe = cls(bundle, dev, next(bundle.model.parameters()).dtype, attention=attention_backend,
                   compile=bool(compile))
        return pipe.with_family(family)

    def with_family(self, family: str | None) -> Pipeline:
        """The same weights streamed as `family` (None: the file's own, from our metadata, or "wan")."""
        chosen = get_family(family if family is not None else self.bundle.meta.get("family", "wan"))
        bundle = self.bundle
        if chosen.lora is not None and not bundle.meta.get("lora"):
            warnings.warn(f"family {chosen.name} is its authors' base model plus a LoRA (lora.pt): without the LoRA "
                          "the base streams, not the released model; give it with lora=... (--lora)", stacklevel=2)
        if chosen.causal and bundle.config.window is not None:
            raise ValueError(f"{bundle.path or 'this model'} uses windowed attention; family {chosen.name} needs a "
                             "plain Wan 2.1 network")
        return dataclasses.replace(self, family=chosen)

    def with_decoder(self, decoder) -> Pipeline:
        """The same weights with another decoder (a Wan 2.1 VAE or TAEHV file, or a Codec)."""
        bundle = attach_decoder(dataclasses.replace(self.bundle), decoder, self.device)
        return dataclasses.replace(self, bundle=bundle)

    def with_text_encoder(self, encoder: TextEncoder) -> Pipeline:
        """The same model with text embeddings from `encoder` (e.g. ComfyUI's umT5 for a Wan 2.1 DiT)."""
        c = self.bundle.config
        if (encoder.text_dim, encoder.text_len) != (c.text_dim, c.text_len):
            raise ValueError(f"the text encoder gives [{encoder.text_len}, {encoder.text_dim}] embeddings, the model "
                             f"reads [{c.text_len}, {c.text_dim}]")
        return dataclasses.replace(self, bundle=dataclasses.replace(self.bundle, text_encoder=encoder))

    @property
    def untrained(self) -> bool:
        return bool(self.bundle.meta.get("untrained"))

    def stream(self, prompt: str, *, seed: int = 0, width: int | None = None, height: int | None = None,
               fps: float | None = None, buffer_frames: int | None = None, chunk_frames: int | None = None,
               micro_steps: int | None = None, ref_frames: int | None = None, shift: float | None = None,
               cfg_scale: float = 1.0, negative_prompt: str = "", transition_seconds: float = 0.0,
               cold_start: str = "uniform", window: int | None = None, sink: int | None = None,
               recache: bool | None = None, cold_micro_steps: int | None = None) -> Stream:
        """Open a stream. Unset settings come from the model's defaults (a causal family's own for its sampler);
        errors say which values work. window/sink: a causal family's KV cache in latent frames; recache: re-run
        the cached frames under a new prompt on prompt changes (None: the family's way). cold_micro_steps: steps
        per band of the uniform cold start (None: the model's default, never coarser than micro_steps)."""
        if self.family.causal:
            if cold_micro_steps:
                raise ValueError(f"family {self.family.name} starts with its own step table; cold_micro_steps="
                                 f"{cold_micro_steps} cannot work with it (leave it unset)")
            config = self._causal_config(seed, width, height, fps, buffer_frames, chunk_frames, micro_steps,
                                         ref_frames, shift, cfg_scale, window, sink)
            if recache is not None and recache != config.cache.recache:
                config = dataclasses.replace(config, cache=dataclasses.replace(config.cache, recache=bool(recache)))
        else:
            if window is not None or sink is not None or recache:
                raise ValueError(f"window/sink/recache set a causal family's KV cache; family {self.family.name} "
                                 "has none")
            config = self._config(seed, width, height, fps, buffer_frames, chunk_frames, micro_steps, ref_frames,
                                  shift, cold_start, cold_micro_steps)
        return self._open(Stream, config, prompt, cfg_scale, negative_prompt, transition_seconds)

    def _causal_config(self, seed, width, height, fps, buffer_frames, chunk_frames, micro_steps, ref_frames, shift,
                       cfg_scale, window, sink) -> StreamConfig:
        f = self.family
        if cfg_scale != 1.0:
            raise ValueError(f"family {f.name} is guidance-distilled: it runs without classifier-free guidance "
                             f"(cfg 1, one pass per step); remove cfg={cfg_scale:g} and the negative prompt")
        p = f.partition()
        fixed = {"chunk_frames": (chunk_frames, p.chunk_frames), "buffer_frames": (buffer_frames, p.stream_frames),
                 "micro_steps": (micro_steps, p.micro_steps), "ref_frames": (ref_frames, 0), "shift": (shift, f.shift)}
        for name, (value, trained) in fixed.items():
            if value is not None and value != trained:
                raise ValueError(f"family {f.name} was trained with {name}={trained:g}; {name}={value:g} cannot "
                                 "work with it (leave it unset)")
        d = self.bundle.defaults
        return StreamConfig(partition=p, height=height or d.height, width=width or d.width,
                            fps=float(fps or d.fps), shift=f.shift, seed=int(seed), steps=f.schedule(),
                            first_steps=f.first_schedule(), renoise=True, cache=f.cache(window, sink),
                            cold_start=f.cold_start)

    def _config(self, seed: int = 0, width: int | None = None, height: int | None = None, fps: float | None = None,
                buffer_frames: int | None = None, chunk_frames: int | None = None, micro_steps: int | None = None,
                ref_frames: int | None = None, shift: float | None = None, cold_start: str = "uniform",
                cold_micro_steps: int | None = None) -> StreamConfig:
        d = self.bundle.defaults
        partition = Partition.from_buffer(buffer_frames or d.buffer_frames, chunk_frames or d.chunk_frames,
                                          micro_steps=micro_steps or d.micro_steps,
                                          ref_frames=d.ref_frames if ref_frames is None else ref_frames)
        if cold_micro_steps is None:
            cold_micro_steps = self.cold_steps(partition.micro_steps)
        fps = float(fps or d.fps)
        return StreamConfig(partition=partition, height=height or d.height, width=width or d.width, fps=fps,
                            shift=d.shift if shift is None else shift, seed=int(seed), cold_start=cold_start,
                            cold_micro_steps=int(cold_micro_steps))

    def cold_steps(self, micro_steps: int) -> int:
        """The uniform start's steps per band by default: the model's finer start, unless streaming itself takes
        as many steps (0: the streaming steps)."""
        d = self.bundle.defaults.cold_micro_steps
        return d if d > micro_steps else 0

    def edit(self, source, prompt: str, *, strength: float | None = None, seed: int = 0, lookahead: bool | None = None,
             fps: float | None = None, cfg_scale: float = 1.0, negative_prompt: str = "",
             transition_seconds: float = 0.0, **kw) -> Stream:
        """Open an edit stream: the source's frames (a FrameSource, a video path, or frames [T, H, W, 3])
        edited toward the prompt (or schedule). strength None: sampling.edit.DEFAULT_STRENGTH (0.875). Other
        settings as in stream(), except that an edit starts with the streaming steps unless cold_micro_steps is given
        (on the dev edits the model's finer start changed nothing measurable and cost a 3-s edit about 30% of its
        speed: docs/editing.md)."""
        from .sampling.edit import DEFAULT_STRENGTH, EditStream
        from .sampling.sources import FrameSource

        if strength is None:
            strength = DEFAULT_STRENGTH

        if not isinstance(source, FrameSource):
            if isinstance(source, (str, Path)):
                source = FrameSource.from_path(source)
            else:
                source = FrameSource.from_frames(source, fps or self.bundle.defaults.fps)
        if self.family.causal:  # the family's own sampler; strength picks the entry point in its step list
            g = kw.get
            config = self._causal_config(seed, g("width"), g("height"), fps or source.fps, g("buffer_frames"),
                                         g("chunk_frames"), g("micro_steps"), g("ref_frames"), g("shift"), cfg_scale,
                                         g("window"), g("sink"))
            if g("cold_micro_steps"):
                raise ValueError(f"family {self.family.name} starts with its own step table; cold_micro_steps cannot "
                                 "work with it (leave it unset)")
        else:
            if kw.get("cold_micro_steps") is None:
                kw["cold_micro_steps"] = 0
            config = self._config(seed=seed, fps=fps or source.fps, **kw)
        return self._open(EditStream, config, prompt, cfg_scale, negative_prompt, transition_seconds,
                          source=source, strength=strength, lookahead=lookahead)

    def _open(self, cls, config: StreamConfig, prompt: str, cfg_scale: float, negative_prompt: str,
              transition_seconds: float, **extra) -> Stream:
        """The prompt track, the text cache (unknown words fail here, before any frame) and the denoiser."""
        if self.bundle.text_encoder is None:
            raise ValueError(f"model {self.bundle.path} has no text encoder of its own: give it one with "
                             "with_text_encoder (in ComfyUI: connect a umT5 CLIP to the StreamDiT Prompt Schedule)")
        track = PromptTrack.from_text(prompt, config.fps, transition_frames=transition_seconds * config.fps)
        text = EmbeddingCache(self.bundle.text_encoder)
        for _, p in track.events + [(0.0, negative_prompt)]:
            text.get(p)
        if config.cache is not None:  # a causal family: its KV cache, one pass per step
            denoise = CausalDenoiser(self.bundle.model, text, config.cache, config.partition,
                                     config.schedule.timesteps, self.dtype, backend=self.attention)
        else:
            denoise = ModelDenoiser(self.bundle.model, text, cfg_scale, negative_prompt, self.dtype,
                                    backend=self.attention, compiled=self.compile)
        stream = cls(denoise, self.bundle.codec, config, track, device=self.device, **extra)
        stream.check_prompt = text.get
        return stream

    def describe(self) -> str:
        c = self.bundle.config
        n = sum(p.numel() for p in self.bundle.model.parameters())
        d = dataclasses.asdict(self.bundle.defaults)
        return (f"{self.bundle.path or 'random model'}: {n / 1e6:.2f}M parameters, dim {c.dim}, {c.num_layers} layers; "
                f"defaults {d['width']}x{d['height']} @ {d['fps']} fps, codec {d['codec']}; family {self.family.name}"
                + ("; network torch.compiled" if self.compile else ""))
