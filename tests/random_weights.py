"""Random weights for tiny test networks: every parameter drawn, norm gains around 1 (Wan zero-inits some layers)."""
import torch


def randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + scale * noise if name.endswith(("gamma", "norm.weight")) else scale * noise)
    return module.eval()
