"""Seconds per training step of the toy DiT: float32 or bfloat16 autocast, eager or compiled.

    python bench/train_step.py [--batch 16] [--steps 3] [--json docs/bench/train-step.json]

One step is what the teacher's trainer runs (forward, squared error, backward, AdamW) on a batch of
16-frame latents [B, 8, 16, 16, 16] with per-frame timesteps; modes are measured in turn after two
warm-up steps each (compilation included there). A benchmark, not a test: nothing here asserts a time.
Run it alone on the CPU (a second PyTorch process slows both many times over).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streamdit.network.config import get_preset  # noqa: E402
from streamdit.network.model import WanDiT  # noqa: E402

MODES = (("float32", "eager"), ("bfloat16", "eager"), ("float32", "compiled"), ("bfloat16", "compiled"))


def measure(dtype: str, mode: str, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    cfg = get_preset("toy").model
    model = WanDiT(cfg)
    model.init_weights(0)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    forward = torch.compile(model) if mode == "compiled" else model
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_dim, 16, 16, 16, generator=g)
    t = torch.rand(batch, 16, generator=g) * 1000
    context = torch.randn(batch, cfg.text_len, cfg.text_dim, generator=g)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = (forward(x, t, context).float() - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    record = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "batch": args.batch, "runs": {}}
    for dtype, mode in MODES:
        seconds = measure(dtype, mode, args.batch, args.steps)
        record["runs"][f"{dtype} {mode}"] = round(seconds, 3)
        print(f"{dtype:9s} {mode:9s} {seconds:.3f} s/step", flush=True)
    base = record["runs"]["float32 eager"]
    record["speedup"] = {k: round(base / v, 2) for k, v in record["runs"].items()}
    print(json.dumps(record))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
