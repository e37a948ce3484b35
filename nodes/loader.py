"""StreamDiT Model Loader: the embedded default or a checkpoint from the model folders."""
from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from dataclasses import dataclass

import torch

from ..streamdit.network import attention
from ..streamdit.network.config import DTYPES
from ..streamdit.pipeline import Pipeline, default_model_path, default_teacher_path
from ..streamdit.sampling.families import FAMILIES, get_family
from ..streamdit.wan.loading import is_streamdit_file, load_decoder
from . import host, memory

EMBEDDED = "streamdit-toy (embedded)"
EMBEDDED_TEACHER = "streamdit-toy-teacher (embedded; 4 micro steps, set cfg 1.5)"
OWN_CODEC = "model's own codec"
TORCH_FILES = (".pt", ".pth", ".ckpt", ".bin")  # trainer files whose entry a family picks


@dataclass(frozen=True)
class LoadedModel:
    """What flows on a STREAMDIT_MODEL link: the pipeline plus what identifies it for stream reuse."""

    pipeline: Pipeline  # carries this loader's per-stream settings (attention, compile) and family
    name: str
    identity: tuple  # weights, decoder and family: streams are only continued on the same model
    patchers: tuple = ()  # ComfyUI ModelPatchers of its networks, loaded through core before each run (nodes/memory)

    @property
    def text_dims(self) -> tuple[int, int]:
        """(text_len, text_dim) of the embeddings the model reads."""
        c = self.pipeline.bundle.config
        return c.text_len, c.text_dim

    @property
    def has_own_text_encoder(self) -> bool:
        return self.pipeline.bundle.text_encoder is not None

    def describe(self) -> str:
        return self.pipeline.describe() + (" (untrained: noise-like frames)" if self.pipeline.untrained else "")


@dataclass
class _Weights:
    pipeline: Pipeline  # without an external decoder (a Wan file's decoder lives in _decoders)
    own_codec: bool  # a StreamDiT file (or random model) with its own codec
    patcher: object  # its network's ModelPatcher (None without a host)


# Loaded weights: one copy per file, keyed by what changes them (modification time, device, dtype, the .pt entry, a
# LoRA): loaders that differ in attention, compile, decoder or a family reading the same entry share it, and a loader
# whose dtype, device or LoRA changed replaces the file's copy instead of keeping a second one. Decoders: the most
# recently chosen one per device.
_cache_lock = threading.Lock()
_weights: dict[tuple, _Weights] = {}
_decoders: dict[tuple, tuple[object, object]] = {}  # (decoder file, mtime, device) -> (codec, patcher)


def clear_model_cache() -> None:
    with _cache_lock:
        for w in _weights.values():
            memory.forget(w.patcher)
        for _, patcher in _decoders.values():
            memory.forget(patcher)
        _weights.clear()
        _decoders.clear()


def _decoder(path: str, device: str, codec=None) -> tuple[object, object]:
    """(codec, patcher) of a decoder file; a decoder already loaded with a model file comes as `codec`."""
    key = (*host.file_identity(path), device)
    if key not in _decoders:
        for old in [k for k in _decoders if k[2] == device]:
            memory.forget(_decoders.pop(old)[1])
        if codec is None:
            memory.free_for(os.path.getsize(path), device)
            codec = load_decoder(path, device)
        _decoders[key] = (codec, memory.patcher_for(codec, device))
    return _decoders[key]


def shared_pipeline(source: str, device: str, dtype: torch.dtype, decoder: str | None, family: str | None,
                    lora: str | None) -> tuple[Pipeline, tuple]:
    """(the pipeline of these weights with `decoder` (None: the model's own codec) streamed as `family`, the
    ModelPatchers of its networks). source: a file or "random:<preset>"."""
    entry = get_family(family).state_key if family and str(source).endswith(TORCH_FILES) else None
    key = (*host.file_identity(source), device, str(dtype), entry, host.file_identity(lora) if lora else None)
    with _cache_lock:
        if key not in _weights:
            for old in [k for k in _weights if k[0] == source]:  # this file in another dtype, device or LoRA
                memory.forget(_weights.pop(old).patcher)
            own = source.startswith("random:") or is_streamdit_file(source)
            first = None if own else decoder  # a Wan file has no codec of its own: load it with the one asked
            if not source.startswith("random:"):
                memory.free_for(os.path.getsize(source), device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the random-fallback warning: the description says it
                pipe = Pipeline.load(source, decoder=first, device=device, dtype=dtype, family=family, lora=lora)
            if first is not None:
                _decoder(first, device, pipe.bundle.codec)
                pipe = dataclasses.replace(pipe, bundle=dataclasses.replace(pipe.bundle, codec=None))
            _weights[key] = _Weights(pipe, own, memory.patcher_for(pipe.bundle.model, device))
        cached = _weights[key]
        pipe, patchers = cached.pipeline, [cached.patcher]
        if decoder is not None:
            codec, patcher = _decoder(decoder, device)
            pipe = pipe.with_decoder(codec)
            patchers.append(patcher)
        elif not cached.own_codec:
            raise ValueError(f"{source} has no decoder of its own: choose a Wan 2.1 VAE (wan_2.1_vae.safetensors) "
                             "or a TAEHV decoder (taew2_1.safetensors) as the decoder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe.with_family(family), tuple(p for p in patchers if p is not None)


def device_choices() -> list[str]:
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
        if torch.cuda.device_count() > 1:
            out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def backend_choices() -> list[str]:
    try:
        return attention.available_backends("cuda" if torch.cuda.is_available() else "cpu")
    except Exception:
        return ["auto", "sdpa"]


def resolve_device(device: str) -> str:
    return host.torch_device() if device == "auto" else device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """auto: what core's --fp32-unet / --bf16-unet / --fp16-unet says, else float32 on a CPU and bfloat16 (or float16)
    on a GPU."""
    if dtype != "auto":
        return DTYPES[dtype]
    flag = memory.unet_dtype_flag()
    if flag is not None:
        return flag
    if torch.device(device).type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def missing_model_message(name: str) -> str:
    folders = ", ".join(host.model_folder_paths()) or "(no model folders: is this running inside ComfyUI?)"
    return (f"model file {name!r} was not found in ComfyUI's model folders ({folders}); put the weights file "
            f"(.safetensors, or a .pt of a causal Wan model) into models/{host.MODEL_FOLDER} or "
            f"models/diffusion_models and press Refresh, or choose {EMBEDDED!r}")


class StreamDiTModelLoader:
    DESCRIPTION = ("Loads a StreamDiT video model. The embedded default is a small toy model that ships with the "
                   "pack and runs on a CPU; other checkpoints are read from models/streamdit and "
                   "models/diffusion_models, including Wan 2.1 text-to-video files (any layout: ComfyUI, original, "
                   "fp8 scaled), which need a decoder from models/vae (wan_2.1_vae) or models/vae_approx (taew2_1) "
                   "and a umT5 CLIP on the Prompt Schedule node.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = ("STREAMDIT_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded model; connect it to a StreamDiT Stream Sampler.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        host.register_model_folder()
        return {
            "required": {
                "model": ([EMBEDDED] + ([EMBEDDED_TEACHER] if default_teacher_path() else []) + host.model_files(), {
                    "default": EMBEDDED,
                    "tooltip": "Which model to stream with. The embedded toy model knows prompts such as "
                               "'a pig walking right on grass' or 'a cat jumping at night'. Its teacher is the "
                               "slower guided model it was distilled from (set cfg 1.5 on the prompt node)."}),
                "device": (device_choices(), {
                    "default": "auto",
                    "tooltip": "Where the model runs. auto = the device ComfyUI uses (the CPU under --cpu)."}),
                "dtype": (["auto", *DTYPES], {
                    "default": "auto",
                    "tooltip": "Weight precision. auto = what ComfyUI's --bf16-unet / --fp16-unet / --fp32-unet "
                               "says, else float32 on a CPU, bfloat16 (or float16) on a GPU."}),
                "attention": (backend_choices(), {
                    "default": "auto",
                    "tooltip": "Attention kernel. auto picks the fastest one available; the list only shows "
                               "kernels that work here (xformers appears when it is installed)."}),
                "decoder": ([OWN_CODEC] + host.decoder_files(), {
                    "default": OWN_CODEC,
                    "tooltip": "How latents become frames. The model's own codec for StreamDiT checkpoints (the toy "
                               "model); for Wan 2.1 files the full Wan 2.1 VAE (models/vae/wan_2.1_vae.safetensors, "
                               "best quality) or TAEHV (models/vae_approx/"
                               "taew2_1.safetensors, several times faster, for live previews)."}),
            },
            "optional": {
                "compile": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "torch.compile the network: the first stream compiles it (about 45 s on a 2-core CPU, "
                               "seconds once cached on disk), then it runs about 1.4x faster on a CPU. Needs a C++ "
                               "compiler (CPU) or Triton (GPU); without one it warns and runs as before."}),
                # after compile: saved workflows list widget values by position
                "family": (["auto", *FAMILIES], {
                    "default": "auto",
                    "tooltip": "How a Wan 2.1 file streams. Causal and bidirectional Wan files have the same tensors, "
                               "so say which one you downloaded: self-forcing, causvid, causal-forcing (chunk-wise), "
                               "causal-forcing-frame (and its ++ 1/2-step models) stream causally with a KV cache, as "
                               "their authors trained them; wan is the bidirectional buffer. auto = the file's own "
                               "(StreamDiT files say it) or wan. A causal family fixes its own sampler: the Buffer "
                               "Settings' chunks, chunk_frames, micro_steps, ref_frames and shift are not used."}),
                "lora": (["none", *host.lora_files()], {
                    "default": "none",
                    "tooltip": "A LoRA from models/loras merged into the model at load. LongLive comes as "
                               "longlive_base.pt plus lora.pt: pick its lora.pt here with family longlive."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model, decoder=OWN_CODEC):
        if model not in (EMBEDDED, EMBEDDED_TEACHER) and host.model_path(model) is None:
            return missing_model_message(model)
        if decoder not in (None, OWN_CODEC) and host.decoder_path(decoder) is None:
            return (f"decoder file {decoder!r} was not found; put wan_2.1_vae.safetensors into models/vae or "
                    f"taew2_1.safetensors into models/vae_approx and press Refresh, or choose {OWN_CODEC!r}")
        return True

    def load(self, model: str, device: str, dtype: str, attention: str, decoder: str = OWN_CODEC,
             compile: bool = False, family: str = "auto", lora: str = "none"):
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if model == EMBEDDED:
            path = default_model_path()
            source = str(path) if path is not None else "random:toy"
        elif model == EMBEDDED_TEACHER and default_teacher_path() is not None:
            source = str(default_teacher_path())
        else:
            path = host.model_path(model)
            if path is None:
                raise FileNotFoundError(missing_model_message(model))
            source = path
        decoder_file = None
        if decoder != OWN_CODEC:
            decoder_file = host.decoder_path(decoder)
            if decoder_file is None:
                raise FileNotFoundError(f"decoder file {decoder!r} was not found in models/vae or models/vae_approx")
        chosen = None if family in (None, "auto") else family
        lora_file = None
        if lora not in (None, "none"):
            lora_file = host.lora_path(lora)
            if lora_file is None:
                raise FileNotFoundError(f"LoRA file {lora!r} was not found in models/loras; press Refresh")
        pipe, patchers = shared_pipeline(source, dev, dt, decoder_file, chosen, lora_file)
        pipe = dataclasses.replace(pipe, attention=attention, compile=bool(compile))
        identity = (host.file_identity(source), dev, str(dt), host.file_identity(decoder_file), pipe.family.name,
                    host.file_identity(lora_file) if lora_file else None)
        loaded = LoadedModel(pipe, model, identity, patchers)
        host.log.info("streamdit: %s", loaded.describe())
        return (loaded,)
