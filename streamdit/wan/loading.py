"""Wan 2.1 models as stream bundles: the DiT from any published layout, a decoder from its own file (the Wan 2.1
VAE or TAEHV, told apart by their keys) and the defaults of training-free streaming.

An unadapted Wan model was trained with one noise level per clip. Streaming it FIFO-style (one latent frame
per chunk, a few micro steps per chunk, so that every latent frame still sees buffer x micro steps denoising
steps) is as good as such a model allows; a model fine-tuned with this project's recipe carries its own
defaults (chunk c = 2, one micro step) in its StreamDiT checkpoint.
"""
from __future__ import annotations

import dataclasses
import os
import re

import torch

from ..codecs import Codec
from ..io.checkpoint import FORMAT, Bundle, load_checkpoint, read_metadata
from ..network.config import StreamDefaults

# Training-free streaming of Wan 2.1 at its native 480p: 16 latent frames (61 video frames, inside the 21
# latent frames Wan was trained on), c = 1, 2 micro steps: 32 denoising steps per frame, Wan's shift 5.
WAN_FIFO = dict(width=832, height=480, fps=16.0, buffer_frames=16, chunk_frames=1, micro_steps=2, shift=5.0)
_TAEHV_KEY = re.compile(r"^decoder\.\d+\.")


def _keys(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"decoder file {path} does not exist; check the path (ComfyUI: models/vae or "
                                "models/vae_approx)")
    try:
        if path.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(path, framework="pt") as f:
                return list(f.keys())
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip-format file: mmap is unavailable
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} ({os.path.getsize(path)} bytes) is not a readable weights file: it may be truncated "
                         f"or corrupt ({type(exc).__name__}: {exc}); download or copy it again") from exc
    for key in ("state_dict", "model", "vae"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return [k for k in obj if isinstance(k, str)] if isinstance(obj, dict) else []


def decoder_kind(path: str) -> str:
    """'taehv' or 'wan2.1-vae', from the file's key names (prefixes such as model./vae. allowed)."""
    keys = _keys(path)
    bare = [re.sub(r"^(model|vae|taehv|first_stage_model)\.", "", k) for k in keys]
    if any(_TAEHV_KEY.match(k) for k in bare):
        return "taehv"
    if any(k.startswith(("decoder.", "encoder.", "conv2.")) for k in bare):
        return "wan2.1-vae"
    shown = ", ".join(keys[:5]) or "(no tensors)"
    raise ValueError(f"{path} is neither a Wan 2.1 VAE nor a TAEHV decoder (first keys: {shown}); use "
                     "wan_2.1_vae.safetensors (models/vae) or taew2_1.safetensors (models/vae_approx)")


def load_decoder(path: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Codec:
    """The Wan 2.1 VAE or a TAEHV decoder, whichever the file holds."""
    if decoder_kind(path) == "taehv":
        from ..codecs.taehv import load_taehv
        return load_taehv(path, device, dtype)
    from ..codecs.wan_vae import load_wan_vae
    return load_wan_vae(path, device, dtype)


def streaming_defaults(codec: Codec | None) -> StreamDefaults:
    """Training-free (FIFO-like) streaming defaults for an unadapted Wan 2.1 DiT."""
    return StreamDefaults(codec=codec.spec if codec is not None else {"kind": "wan2.1-vae"}, **WAN_FIFO)


def is_streamdit_file(path: str) -> bool:
    if not (os.path.isfile(path) and path.endswith(".safetensors")):
        return False
    try:
        return read_metadata(path).get("format") == FORMAT
    except ValueError:
        return False  # the Wan loader reports unreadable files with its own message


def load_wan_bundle(path: str, decoder: str | Codec | None = None, *, device: torch.device | str = "cpu",
                    dtype: torch.dtype | None = None, state_key: str | None = None) -> Bundle:
    """A Wan-architecture DiT (a Wan 2.1 file in any layout, or a StreamDiT checkpoint) with a decoder.

    decoder: a file (Wan 2.1 VAE or TAEHV), a Codec, or None to use the checkpoint's own codec. The text
    encoder stays None unless the checkpoint has one: give it with Pipeline.with_text_encoder. state_key: the
    entry of a trainer's .pt dict to load (a family's choice, e.g. generator_ema); ignored for other files.
    """
    if is_streamdit_file(path):
        bundle = load_checkpoint(path, device=device, dtype=dtype)
    else:
        from .checkpoint import load_wan_dit
        torch_file = os.path.isfile(path) and path.endswith((".pt", ".pth", ".bin", ".ckpt"))
        model, config, info = load_wan_dit(path, device, dtype, state_key=state_key if torch_file else None)
        bundle = Bundle(model, config, None, None, None, {"wan": {k: str(v) for k, v in info.items()}}, path)
    return attach_decoder(bundle, decoder, device)


def attach_decoder(bundle: Bundle, decoder: str | Codec | None, device: torch.device | str = "cpu") -> Bundle:
    """bundle with `decoder` (a file, a Codec, or None for its own codec) and the stream defaults that go with it."""
    if decoder is not None:
        codec = load_decoder(decoder, device) if isinstance(decoder, (str, os.PathLike)) else decoder
        bundle.codec = codec.to(device)
    path = bundle.path or "this model"
    if bundle.codec is None:
        raise ValueError(f"{path} has no decoder of its own: choose a Wan 2.1 VAE (wan_2.1_vae.safetensors) or a "
                         "TAEHV decoder (taew2_1.safetensors) to go with it")
    if bundle.codec.latent_channels != bundle.config.in_dim:
        raise ValueError(f"the decoder makes frames from {bundle.codec.latent_channels}-channel latents, the model "
                         f"{path} works on {bundle.config.in_dim} channels: pick the decoder of its VAE family")
    if bundle.defaults is None:
        bundle.defaults = streaming_defaults(bundle.codec)
    else:  # a decoder chosen here replaces the one the defaults name
        bundle.defaults = dataclasses.replace(bundle.defaults, codec=bundle.codec.spec)
    return bundle
