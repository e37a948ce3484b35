"""Shippable checkpoints of the toy recipe, with the streaming defaults its models were trained for."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ...codecs.autoencoder import AutoencoderCodec
from .recipe import ToyRecipe


def on_cpu(module):
    """`module` itself when its weights are on the CPU, else a CPU copy (probes and exports run on the CPU)."""
    if next(module.parameters()).device.type == "cpu":
        return module
    return copy.deepcopy(module).cpu()


def defaults_for(recipe: ToyRecipe, codec: AutoencoderCodec, micro_steps: int, cold_micro_steps: int = 0):
    from ...network.config import StreamDefaults

    p = recipe.teacher_partition
    return StreamDefaults(width=recipe.size, height=recipe.size, fps=16.0, codec=codec.spec,
                          buffer_frames=p.stream_frames, chunk_frames=p.chunk_frames, micro_steps=micro_steps,
                          ref_frames=p.ref_frames, shift=1.0, cold_micro_steps=cold_micro_steps)


def export(recipe: ToyRecipe, module, codec: AutoencoderCodec, name: str, micro_steps: int, meta: dict) -> Path:
    """Write a shippable checkpoint (bf16 DiT, fp32 text encoder and codec)."""
    from ...io.checkpoint import save_checkpoint

    path = Path(recipe.out) / name
    module = on_cpu(module)
    save_checkpoint(str(path), module.dit, module.dit.config, text_encoder=module.text_encoder, codec=codec,
                    defaults=defaults_for(recipe, codec, micro_steps, recipe.cold_micro_steps), meta=meta,
                    dtype=torch.bfloat16, parts_dtype=torch.float16)
    return path
