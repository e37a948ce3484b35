"""StreamDiT Model from ComfyUI: stream the Wan 2.1 MODEL and VAE the user loaded with core's nodes.

UNETLoader (any weight_dtype, fp8 included) -> LoraLoaderModelOnly -> this node: the network is core's own
WanModel, called directly (core's BaseModel.apply_model takes one sigma per sample; the buffer needs one per frame,
which WanModel itself accepts), after core has loaded the MODEL through load_models_gpu. So its weights stay as core
keeps them (fp8 weights stay fp8, cast per layer by core's ops) and weight patches apply (LoRAs, merges); object
patches apply too (they are set on the model when core loads it). Not honoured, and named in a warning when present:
transformer_options patches (attention replacements), model wrappers and sampler functions (they hook core's
sampler, which a stream does not run), and a model_sampling patch (the shift is the Buffer Settings').

The VAE's Wan 2.1 weights are shared, not copied, with the pack's streaming Wan VAE decoder (its causal caches
carry over between chunks, which core's whole-video decode does not do).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..streamdit.codecs.wan_vae import WanVAECodec, wan_vae_config
from ..streamdit.io.checkpoint import Bundle
from ..streamdit.network.config import ModelConfig
from ..streamdit.pipeline import Pipeline
from ..streamdit.sampling.families import FAMILIES, get_family
from ..streamdit.wan.loading import attach_decoder, load_decoder
from . import host, memory
from .loader import LoadedModel

CONNECTED_VAE = "connected VAE"


class CoreWanNetwork(nn.Module):
    """Core's WanModel inside a MODEL (ModelPatcher) as the engine's network: v = f(x, t per frame, context)."""

    def __init__(self, patcher, config: ModelConfig):
        super().__init__()
        self.patcher = patcher  # a plain attribute: core owns, loads and moves the module
        self.config = config

    @property
    def compute_device(self) -> torch.device:
        return torch.device(self.patcher.load_device)

    @property
    def compute_dtype(self) -> torch.dtype:
        base = self.patcher.model
        return getattr(base, "manual_cast_dtype", None) or base.get_dtype()

    def parameters(self, recurse: bool = True):  # counted by describe(); never moved or trained by the engine
        return self.patcher.model.diffusion_model.parameters(recurse)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None, cross_kv=None, *,
                backend: str | None = None, compiled: bool | None = None) -> torch.Tensor:
        """x [B, C, F, H, W], t [B, F] (sigma * 1000), context [B, <=text_len, text_dim] -> v [B, C, F, H, W] float32.
        backend/compiled: core's model uses core's attention (its --use-* flags) and runs uncompiled."""
        if context is None or cross_kv is not None:
            raise ValueError("ComfyUI's Wan model takes the text context itself (no cached cross-attention)")
        dtype, dev = self.compute_dtype, self.compute_device
        # Wan zero-pads the umT5 output to text_len rows; core's CLIP does too, other text sources may not
        context = F.pad(context, (0, 0, 0, max(0, self.config.text_len - context.shape[1])))
        out = self.patcher.model.diffusion_model(x.to(dev, dtype), t.to(dev, torch.float32), context.to(dev, dtype))
        return out.float()


def core_wan_config(model) -> ModelConfig:
    """The engine's ModelConfig of a core MODEL holding a Wan 2.1 text-to-video WanModel; a clear error otherwise."""
    dm = getattr(getattr(model, "model", None), "diffusion_model", None)
    kind = f"{type(dm).__module__}.{type(dm).__name__}" if dm is not None else type(model).__name__
    variant = getattr(dm, "model_type", None)
    if kind != "comfy.ldm.wan.model.WanModel" or variant != "t2v" or getattr(dm, "ref_conv", None) is not None:
        shown = kind + (f" ({variant})" if variant else "")
        raise ValueError(f"the connected MODEL is a {shown}, not a Wan 2.1 text-to-video model: load "
                         "wan2.1_t2v_*.safetensors with Load Diffusion Model (UNETLoader), or use the StreamDiT Model "
                         "Loader for other checkpoints")
    return ModelConfig(dim=dm.dim, ffn_dim=dm.ffn_dim, num_heads=dm.num_heads, num_layers=dm.num_layers,
                       in_dim=dm.in_dim, out_dim=dm.out_dim, text_dim=dm.text_dim, text_len=dm.text_len,
                       freq_dim=dm.freq_dim, patch_size=tuple(dm.patch_size), eps=dm.eps, qk_norm=dm.qk_norm,
                       cross_attn_norm=dm.cross_attn_norm).validate()


def ignored_patches(model) -> list[str]:
    """What a MODEL carries that the stream does not apply (see the module docstring)."""
    options = getattr(model, "model_options", {}) or {}
    transformer = options.get("transformer_options", {}) or {}
    out = [f"transformer_options {k}" for k in ("patches", "patches_replace") if transformer.get(k)]
    out += [k for k in options if k.startswith("sampler_") or k in ("model_function_wrapper", "denoise_mask_function")]
    wrappers = getattr(model, "wrappers", {}) or {}
    if any(any(v.values()) if isinstance(v, dict) else v for v in wrappers.values()):
        out.append("model wrappers")
    if "model_sampling" in (getattr(model, "object_patches", {}) or {}):
        out.append("model_sampling (the shift comes from StreamDiT Buffer Settings)")
    return out


def core_vae_codec(vae) -> WanVAECodec:
    """The pack's streaming Wan 2.1 VAE on the very parameters of a core VAE (no copy)."""
    fsm = getattr(vae, "first_stage_model", None)
    kind = f"{type(fsm).__module__}.{type(fsm).__name__}"
    if kind != "comfy.ldm.wan.vae.WanVAE":
        raise ValueError(f"the connected VAE is a {kind}, not the Wan 2.1 VAE: load wan_2.1_vae.safetensors with "
                         "Load VAE (the Wan 2.2 VAE belongs to the Wan 2.2 5B model, which is not supported)")
    state = fsm.state_dict(keep_vars=True)  # the Parameter objects: when core moves them, the codec sees it
    with torch.device("meta"):
        codec = WanVAECodec(**wan_vae_config(state))
    codec.load_state_dict(state, strict=True, assign=True)
    return codec.eval()


class StreamDiTCoreModel:
    DESCRIPTION = ("Streams the Wan 2.1 text-to-video model you loaded with ComfyUI's own nodes: Load Diffusion Model "
                   "(fp8 weights stay fp8), LoRA loaders (step-distill LoRAs) and Load VAE. The weights are core's: "
                   "no second copy, and ComfyUI's memory manager loads and unloads them. Connect a umT5 CLIP to the "
                   "StreamDiT Prompt Schedule. Causal models (Self-Forcing, CausVid, ...) need the StreamDiT Model "
                   "Loader: their KV cache needs the pack's own network.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = ("STREAMDIT_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model as a StreamDiT model; connect it to a StreamDiT Stream Sampler or Video Edit.",)
    FUNCTION = "wrap"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A Wan 2.1 text-to-video MODEL (Load Diffusion Model, then any LoRA "
                                    "loaders)."}),
                "family": (list(FAMILIES), {
                    "default": "wan",
                    "tooltip": "How the model streams. A MODEL cannot say whether its file is causal, so say it: wan "
                               "= the bidirectional buffer (Wan 2.1 and StreamDiT-style fine-tunes). The causal "
                               "families are listed to say why they need the StreamDiT Model Loader."}),
                "decoder": ([CONNECTED_VAE, *host.decoder_files()], {
                    "default": CONNECTED_VAE,
                    "tooltip": "How latents become frames: the connected VAE (Load VAE, wan_2.1_vae), or a TAEHV "
                               "file from models/vae_approx (taew2_1, several times faster, for live previews)."}),
            },
            "optional": {
                "vae": ("VAE", {"tooltip": "The Wan 2.1 VAE from Load VAE (used when decoder is 'connected VAE')."}),
            },
        }

    def wrap(self, model, family: str, decoder: str = CONNECTED_VAE, vae=None):
        chosen = get_family(family)
        if chosen.causal:
            raise ValueError(f"family {family} streams with a KV cache inside the attention layers, which needs the "
                             "pack's own Wan network; core's WanModel has no such cache. Load the file with the "
                             f"StreamDiT Model Loader (family {family}) instead, or choose family wan")
        config = core_wan_config(model)
        dev = torch.device(model.load_device)
        patchers = [model]
        if decoder == CONNECTED_VAE:
            if vae is None:
                raise ValueError("decoder is 'connected VAE' but no VAE is connected: connect Load VAE "
                                 "(wan_2.1_vae.safetensors) or choose a TAEHV file as the decoder")
            codec = core_vae_codec(vae)
            vae_patcher = getattr(vae, "patcher", None)
            if vae_patcher is not None:
                setattr(vae_patcher, memory.WHOLE, True)  # the pack's modules compute on these weights: load them whole
                patchers.append(vae_patcher)
            decoder_identity = ("vae", id(vae))
        else:
            path = host.decoder_path(decoder)
            if path is None:
                raise FileNotFoundError(f"decoder file {decoder!r} was not found in models/vae or models/vae_approx; "
                                        "press Refresh")
            codec = load_decoder(path, dev)
            patchers.append(memory.patcher_for(codec, dev))
            decoder_identity = host.file_identity(path)
        network = CoreWanNetwork(model, config)
        bundle = attach_decoder(Bundle(network, config, None, None, None, {"comfyui": True},
                                       f"ComfyUI MODEL ({type(model.model).__name__})"), codec, codec_device(codec))
        pipe = Pipeline(bundle, dev, network.compute_dtype)
        for name in ignored_patches(model):
            host.log.warning("streamdit: the MODEL's %s is not applied to the stream (only weight and object patches "
                             "are; see docs/wan.md)", name)
        identity = ("comfyui", id(model.model), str(getattr(model, "patches_uuid", "")), decoder_identity, family)
        loaded = LoadedModel(dataclasses.replace(pipe, family=chosen), "ComfyUI MODEL", identity,
                             tuple(p for p in patchers if p is not None))
        host.log.info("streamdit: %s", loaded.describe())
        return (loaded,)


def codec_device(codec) -> torch.device:
    return next(codec.parameters()).device
