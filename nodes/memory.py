"""Our networks under ComfyUI's memory manager (both hosts have ModelPatcher and load_models_gpu).

Each network the pack loads (DiT, decoder) gets a ModelPatcher: before every run it is loaded through
load_models_gpu, so it is listed in current_loaded_models, core makes room for it by unloading other models,
and core may unload it (to its offload device) when another model needs the memory; the next run loads it back.
Without a host every function here is a no-op.
"""
from __future__ import annotations

import torch

from . import host

# the pack's own modules compute with their weights where they are (no per-layer casting as core's ops do), so
# core must load them whole, never partially (lowvram)
WHOLE = "_streamdit_whole"


def _device(device: str | torch.device) -> torch.device:
    """With its index: core compares devices with ==, and torch.device("cuda") != torch.device("cuda:0")."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def patcher_for(module: torch.nn.Module, device: str | torch.device):
    """A ModelPatcher over one of the pack's modules (loaded whole on `device`), or None without a host."""
    mp, mm = host.model_patcher, host.model_management
    if mp is None or mm is None:
        return None
    dev = _device(device)
    offload = dev if dev.type == "cpu" else mm.unet_offload_device()
    patcher = mp.ModelPatcher(module, load_device=dev, offload_device=offload)
    setattr(patcher, WHOLE, True)
    return patcher


def load(patchers) -> None:
    """Before a run: core (re)loads these models to their device, unloading others to make room if it must."""
    mm = host.model_management
    ours = [p for p in patchers if p is not None]
    if mm is None or not ours:
        return
    whole = [p for p in ours if getattr(p, WHOLE, False)]
    rest = [p for p in ours if not getattr(p, WHOLE, False)]
    if rest:  # core's own models (a MODEL, a VAE): core decides how much of them sits on the device
        mm.load_models_gpu(rest)
    if whole:
        try:
            mm.load_models_gpu(whole, force_full_load=True)
        except TypeError:  # March 2024: no force_full_load (and no partial loading of modules without casting)
            mm.load_models_gpu(whole)


def forget(patcher) -> None:
    """Take a patcher off core's list of loaded models (older hosts keep a strong reference there)."""
    models = getattr(host.model_management, "current_loaded_models", None)
    if patcher is None or models is None:
        return
    for i in reversed(range(len(models))):
        if models[i].model is patcher:
            try:
                models.pop(i).model_unload()
            except Exception as exc:  # unloading a model that is going away anyway must not fail a load
                host.log.debug("streamdit: unloading a replaced model: %s", exc)


def free_for(nbytes: int, device: str | torch.device) -> None:
    """Ask core to free `nbytes` on `device` before we load that much (unloads its least recently used models)."""
    mm = host.model_management
    if mm is None or nbytes <= 0:
        return
    try:
        mm.free_memory(nbytes, _device(device))
    except Exception as exc:
        host.log.debug("streamdit: free_memory failed: %s", exc)


def loaded() -> list:
    """The patchers core lists as loaded right now."""
    models = getattr(host.model_management, "current_loaded_models", None) or []
    return [m.model for m in models]


UNET_FLAGS = (("fp32_unet", torch.float32), ("bf16_unet", torch.bfloat16), ("fp16_unet", torch.float16))


def unet_dtype_flag() -> torch.dtype | None:
    """The weight dtype core's --fp32-unet / --bf16-unet / --fp16-unet asks for, if one was given (fp8 flags are not
    followed: the pack's own networks compute in their weights' dtype; load fp8 files through UNETLoader instead)."""
    args = host.cli_args
    for flag, dtype in UNET_FLAGS:
        if getattr(args, flag, False):
            return dtype
    return None
