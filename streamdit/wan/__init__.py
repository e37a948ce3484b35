"""Wan 2.1 checkpoints: load text-to-video DiT weights in their published layouts into WanDiT."""
from .checkpoint import WanState, infer_wan_config, load_wan_dit, read_wan_state

__all__ = ["WanState", "infer_wan_config", "load_wan_dit", "read_wan_state"]
