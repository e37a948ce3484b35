"""What every benchmark records about the machine and the model, so their JSON files compare."""
from __future__ import annotations

import os
import platform
import time

import torch


def machine_record(args, pipe, frames: int) -> dict:
    return {"model": str(args.model or "default"), "describe": pipe.describe(), "device": args.device,
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "cores": os.cpu_count(), "torch": torch.__version__, "video_fps": pipe.bundle.defaults.fps,
            "frames": frames, "compile": bool(getattr(args, "compile", False)), "runs": {}}


def add_compile_arg(ap) -> None:
    ap.add_argument("--compile", action="store_true", help="torch.compile the network; one warm-up run first "
                    "(its time, compile included, is recorded as warmup_s)")


def warm_up(record: dict, run) -> None:
    """With --compile: one untimed run (compiles every shape the runs use), its seconds recorded."""
    if record["compile"]:
        start = time.perf_counter()
        run()
        record["warmup_s"] = time.perf_counter() - start


def time_stream(stream, frames: int) -> dict:
    """Pull `frames` frames: frames done, total seconds, seconds to the first frame, network calls."""
    start = time.perf_counter()
    first, done = None, 0
    for chunk in stream.frames(frames):
        if first is None:
            first = time.perf_counter() - start
        done += chunk.shape[0]
    return {"frames": done, "seconds": time.perf_counter() - start, "first_frame_s": first, "calls": stream.calls}
