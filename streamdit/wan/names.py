"""Key names of Wan 2.1 DiT checkpoints: prefixes, wrapper segments, diffusers names, and variants we refuse.

Everything here works on plain key lists, so it can be checked without reading a tensor.
"""
from __future__ import annotations

import re

ANCHOR = "patch_embedding.weight"  # the same name in the original, ComfyUI and diffusers layouts
DIFFUSERS_MARKER = "condition_embedder.time_proj.weight"
# Training wrappers that insert a path segment (FSDP, activation checkpointing, torch.compile).
_WRAPPER_SEGMENTS = re.compile(r"(?:^|(?<=\.))(?:_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")
# ComfyUI fp8 files: a marker tensor, one scale per quantized weight, and input scales we do not need.
SCALED_FP8_MARKER = "scaled_fp8"
SCALE_SUFFIX = ".scale_weight"
_IGNORED_SUFFIXES = (".scale_input",)

# diffusers WanTransformer3DModel -> Wan 2.1 original (reference-wan.md 1.6); each rule applies once, in order.
_FROM_DIFFUSERS = [
    (re.compile(r"^condition_embedder\.text_embedder\.linear_1\."), "text_embedding.0."),
    (re.compile(r"^condition_embedder\.text_embedder\.linear_2\."), "text_embedding.2."),
    (re.compile(r"^condition_embedder\.time_embedder\.linear_1\."), "time_embedding.0."),
    (re.compile(r"^condition_embedder\.time_embedder\.linear_2\."), "time_embedding.2."),
    (re.compile(r"^condition_embedder\.time_proj\."), "time_projection.1."),
    (re.compile(r"^proj_out\."), "head.head."),
    (re.compile(r"^scale_shift_table$"), "head.modulation"),
    (re.compile(r"^(blocks\.\d+)\.scale_shift_table$"), r"\1.modulation"),
    (re.compile(r"^(blocks\.\d+)\.attn1\."), r"\1.self_attn."),
    (re.compile(r"^(blocks\.\d+)\.attn2\."), r"\1.cross_attn."),
    (re.compile(r"\.(self_attn|cross_attn)\.to_([qkv])\."), r".\1.\2."),
    (re.compile(r"\.(self_attn|cross_attn)\.to_out\.0\."), r".\1.o."),
    # diffusers' norm2 is Wan's affine cross-attention norm3 and vice versa (swap, so a stray diffusers
    # norm3 tensor shows up as unexpected instead of silently overwriting norm3).
    (re.compile(r"^(blocks\.\d+)\.norm([23])\."), lambda m: f"{m[1]}.norm{5 - int(m[2])}."),
    (re.compile(r"^(blocks\.\d+)\.ffn\.net\.0\.proj\."), r"\1.ffn.0."),
    (re.compile(r"^(blocks\.\d+)\.ffn\.net\.2\."), r"\1.ffn.2."),
]

# Variants recognised by their keys (either naming), as (pattern, description).
_VARIANT_KEYS = [
    (re.compile(r"(^|\.)img_emb\.|\.(k_img|v_img|norm_k_img)\.|condition_embedder\.image_embedder\.|"
                r"\.(add_k_proj|add_v_proj|norm_added_k)\."),
     "a Wan image-to-video (I2V / FLF2V) DiT: it has an image embedding (img_emb.* / cross_attn.k_img)"),
    (re.compile(r"(^|\.)vace_(blocks|patch_embedding)\."), "a Wan VACE DiT (vace_blocks.*)"),
    (re.compile(r"(^|\.)control_adapter\."), "a Wan Fun camera-control DiT (control_adapter.*)"),
    (re.compile(r"(^|\.)ref_conv\."), "a Wan Fun reference-image DiT (ref_conv.*)"),
    (re.compile(r"(^|\.)(audio_|casual_audio_encoder|motion_encoder|face_)"),
     "a Wan 2.2 speech/animate DiT (audio or motion encoders)"),
]
SUPPORTED = ("only Wan 2.1 text-to-video DiTs load here (original, ComfyUI incl. fp8-scaled, diffusers, "
             "or Self-Forcing/CausVid files of the same network); use a Wan2.1-T2V-1.3B or -14B checkpoint")


def find_prefix(keys: list[str], path: str) -> str:
    """The prefix in front of the Wan keys (e.g. 'model.diffusion_model.', 'model.', ''), found from the anchor."""
    prefixes = sorted({k[: -len(ANCHOR)] for k in keys
                       if k.endswith(ANCHOR) and (k == ANCHOR or k[-len(ANCHOR) - 1] == ".")})
    if len(prefixes) == 1:
        return prefixes[0]
    if len(prefixes) > 1:
        shown = ", ".join(repr(p) for p in prefixes[:6])
        raise ValueError(f"{path} holds {len(prefixes)} DiTs (key prefixes {shown}); save the one you want "
                         "to its own file, e.g. only the generator's weights")
    raise ValueError(f"{path} is not a Wan DiT: it has no '{ANCHOR}'. {what_it_looks_like(keys)}")


def what_it_looks_like(keys: list[str]) -> str:
    """A hint for a file without DiT keys: VAE, text encoder, or part of a sharded DiT."""
    text = "\n".join(keys)
    if re.search(r"(^|\.)(token_embedding|shared|embed_tokens)\.weight$|(^|\.)encoder\.block\.", text, re.M):
        kind = "a text encoder"
    elif re.search(r"(^|\.)(decoder|encoder)\.(conv|middle|downsamples|upsamples|head|mid_block|down_blocks|up_blocks)",
                   text, re.M):
        kind = "a VAE"
    elif re.search(r"(^|\.)blocks\.\d+\.", text, re.M):
        return ("It has transformer blocks, so it may be one shard of a sharded checkpoint: pass the "
                "*.safetensors.index.json file or the folder instead")
    else:
        kind = "a VAE / text encoder or another model"
    return f"This looks like {kind}, not a DiT; {SUPPORTED}"


def normalise(key: str, prefix: str) -> str | None:
    """The key without prefix and wrapper segments, or None when it lies outside the prefix."""
    if not key.startswith(prefix):
        return None
    return _WRAPPER_SEGMENTS.sub("", key[len(prefix):])


def is_diffusers(keys) -> bool:
    return DIFFUSERS_MARKER in keys


def from_diffusers(key: str) -> str:
    """A diffusers WanTransformer3DModel key -> Wan 2.1's original key (unknown keys pass through)."""
    for pattern, repl in _FROM_DIFFUSERS:
        key = pattern.sub(repl, key, count=1)
    return key


def is_ignored(key: str) -> bool:
    return key == SCALED_FP8_MARKER or key.endswith(_IGNORED_SUFFIXES)


def refuse_variants(keys: list[str], path: str) -> None:
    """Raise for DiT variants WanDiT cannot run (image-to-video, VACE, control...), naming what the file is."""
    for pattern, what in _VARIANT_KEYS:
        hit = next((k for k in keys if pattern.search(k)), None)
        if hit is not None:
            raise ValueError(f"{path} is {what} (key {hit!r}); {SUPPORTED}")


def refuse_channels(in_dim: int, out_dim: int, path: str) -> None:
    """Raise for latent channel counts of variants that share the t2v key names."""
    what = None
    if in_dim == 36:
        what = "a Wan image-to-video DiT (in_dim 36 = noise + mask + image latents)"
    elif in_dim != out_dim:
        what = f"a Wan control or inpainting DiT (in_dim {in_dim} != out_dim {out_dim})"
    elif in_dim == 48:
        what = "a Wan 2.2 TI2V-5B DiT (48-channel Wan 2.2 VAE latents)"
    if what:
        raise ValueError(f"{path} is {what}; {SUPPORTED}")
