"""torchrun support: process group set-up, DDP or FSDP2 wrapping, and full state dicts for checkpoints.

Run any training entry point as ``torchrun --nproc_per_node=N -m streamdit train ...``. Without torchrun
(no WORLD_SIZE in the environment) everything here is a no-op for a single process.
Backends: nccl when CUDA is available, gloo otherwise (CPU tests, laptops).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env() -> torch.device:
    """Join the process group torchrun describes (if any) and return this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def shutdown() -> None:
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def mean(value: torch.Tensor) -> float:
    """The mean of a scalar over all ranks (for logging)."""
    if not is_distributed():
        return float(value)
    v = value.detach().float().clone().reshape(1)
    dist.all_reduce(v)
    return float(v) / world_size()


def wrap(model: nn.Module, parallel: str) -> nn.Module:
    """``ddp``: replicate and average gradients. ``fsdp``: FSDP2 ``fully_shard`` per transformer block,
    then the root (parameters, gradients and optimizer state sharded across ranks)."""
    if parallel == "ddp":
        device = next(model.parameters()).device
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in _blocks(model):
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {parallel!r}")


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks (any ModuleList named 'blocks', e.g. WanDiT.blocks)."""
    return [b for name, m in model.named_modules() if name.split(".")[-1] == "blocks" for b in m]


def _unwrapped(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _sharded(model: nn.Module) -> bool:
    return any(hasattr(p, "full_tensor") for p in model.parameters())


def full_state_dict(model: nn.Module, module: nn.Module) -> dict:
    """Unsharded CPU weights (collective under FSDP2: call on every rank)."""
    if _sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu().clone() for k, v in _unwrapped(model).state_dict().items()}


def load_full_state_dict(model: nn.Module, module: nn.Module, state: dict) -> None:
    if _sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
        return
    _unwrapped(model).load_state_dict(state)


def full_optimizer_state(model: nn.Module, module: nn.Module, opt: torch.optim.Optimizer) -> dict:
    if _sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return opt.state_dict()


def load_full_optimizer_state(model: nn.Module, module: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    if _sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))
        return
    opt.load_state_dict(state)
