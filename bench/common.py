"""What every benchmark records about the machine and the model, so their JSON files compare."""
from __future__ import annotations

import os
import platform

import torch


def machine_record(args, pipe, frames: int) -> dict:
    return {"model": str(args.model or "default"), "describe": pipe.describe(), "device": args.device,
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cores": os.cpu_count(), "torch": torch.__version__, "video_fps": pipe.bundle.defaults.fps,
            "frames": frames, "runs": {}}
