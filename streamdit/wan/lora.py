"""LoRA files on a Wan DiT, merged into the loaded weights in place (no second copy of the model).

LongLive ships its 1.3B model as a base (`longlive_base.pt`, entry `generator`) and a PEFT LoRA (`lora.pt`,
entry `generator_lora`, saved by PEFT's get_peft_model_state_dict): rank 256 and alpha 256 on every Linear of
each block (self- and cross-attention q, k, v, o; ffn.0, ffn.2; NVlabs/LongLive utils/lora_utils.py). PEFT keys
look like `base_model.model.blocks.0.self_attn.q.lora_A.weight` (an adapter name such as `.default` may sit
before `.weight`); other prefixes (`model.`, FSDP's `_fsdp_wrapped_module.`) are accepted as the authors'
loaders accept them. W <- W + (alpha / rank) B A, computed in float32 and stored in the weight's dtype.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from ..io.checkpoint import read_weights_file

_KEY = re.compile(r"^(?:.*?\.)?(blocks\.\d+\..+?)\.lora_([AB])(?:\.[A-Za-z0-9_]+)?\.weight$")
_ENTRIES = ("generator_lora", "lora", "state_dict")


def read_lora(path: str) -> dict[str, dict[str, Tensor]]:
    """{module name: {"A": [r, in], "B": [out, r]}} from a LoRA file (.pt/.pth or .safetensors)."""
    obj = read_weights_file(path, "LoRA", "ComfyUI: models/loras")
    for key in _ENTRIES:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    pairs: dict[str, dict[str, Tensor]] = {}
    for key, value in obj.items() if isinstance(obj, dict) else []:
        m = _KEY.match(str(key).replace("_fsdp_wrapped_module.", ""))
        if m and isinstance(value, Tensor):
            pairs.setdefault(m[1], {})[m[2]] = value
    if not pairs:
        shown = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path} holds no LoRA weights for a Wan DiT's blocks (first entries: {shown}); expected "
                         "PEFT keys like 'base_model.model.blocks.0.self_attn.q.lora_A.weight'")
    broken = [k for k, v in pairs.items() if set(v) != {"A", "B"}]
    if broken:
        raise ValueError(f"{path}: LoRA modules without both lora_A and lora_B: {broken[:5]}")
    return pairs


@torch.no_grad()
def merge_lora(model: nn.Module, path: str, alpha: float | None = None) -> dict:
    """Add a LoRA file's deltas to the model's Linear weights, in place. alpha None: alpha = rank (scale 1, as
    LongLive's rank 256 / alpha 256). Returns what was merged (modules, rank, scale)."""
    pairs = read_lora(path)
    modules = dict(model.named_modules())
    ranks = set()
    for name, ab in pairs.items():
        target = modules.get(name)
        if not isinstance(target, nn.Linear):
            raise ValueError(f"{path}: LoRA module {name!r} is not a Linear of this model; the LoRA belongs to "
                             "another architecture or size")
        a, b = ab["A"], ab["B"]
        if a.shape[1] != target.in_features or b.shape[0] != target.out_features or a.shape[0] != b.shape[1]:
            raise ValueError(f"{path}: LoRA {name} has A {tuple(a.shape)} and B {tuple(b.shape)}, the layer is "
                             f"{target.out_features}x{target.in_features}: it belongs to another model size")
        ranks.add(a.shape[0])
    for name, ab in pairs.items():
        target = modules[name]
        rank = ab["A"].shape[0]
        scale = (alpha if alpha is not None else rank) / rank
        w = target.weight
        delta = ab["B"].to(w.device, torch.float32) @ ab["A"].to(w.device, torch.float32)
        w.copy_((w.float() + scale * delta).to(w.dtype))
    return {"path": path, "modules": len(pairs), "ranks": sorted(ranks),
            "scale": (alpha / min(ranks)) if alpha is not None else 1.0}
