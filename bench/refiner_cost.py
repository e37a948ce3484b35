"""Milliseconds per toy network call with and without the per-frame conv refiner (`ModelConfig.head_conv`).

    python bench/refiner_cost.py [--widths 0,32,64] [--repeats 6] [--calls 20] [--json docs/bench/refiner-cost.json]

One call is what a stream runs per chunk: the 16-frame buffer [1, 8, 16, 16, 16] (256 tokens), per-frame
timesteps, float32 eager inference. Widths are measured interleaved, `--repeats` rounds of `--calls` calls each
after 5 warm-up calls, and the median round is reported. Random weights (trained ones do the same arithmetic).
A benchmark, not a test: nothing here asserts a time. Run it alone on the CPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streamdit.network.config import get_preset  # noqa: E402
from streamdit.network.model import WanDiT, count_parameters  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="0,64", help="refiner widths (0: none, the shipped toy)")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    base = get_preset("toy").model
    configs = {w: dataclasses.replace(base, head_conv=w) for w in widths}
    models = {w: WanDiT(c).eval() for w, c in configs.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, base.in_dim, 16, 16, 16, generator=g)
    t = torch.rand(1, 16, generator=g) * 1000
    context = torch.randn(1, base.text_len, base.text_dim, generator=g)
    rounds: dict[int, list[float]] = {w: [] for w in widths}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(5):
                model(x, t, context)
        for _ in range(args.repeats):
            for w, model in models.items():
                start = time.perf_counter()
                for _ in range(args.calls):
                    model(x, t, context)
                rounds[w].append((time.perf_counter() - start) / args.calls * 1000)
    record = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "calls": args.calls,
              "widths": {}}
    for w in widths:
        ms = statistics.median(rounds[w])
        record["widths"][str(w)] = {"parameters": count_parameters(configs[w]), "ms_per_call": round(ms, 2),
                                    "rounds": [round(r, 2) for r in rounds[w]],
                                    "vs_none": round(ms / statistics.median(rounds[widths[0]]), 3)}
        print(f"head_conv {w:3d}: {ms:6.2f} ms per call, {count_parameters(configs[w]):,} parameters", flush=True)
    print(json.dumps(record))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
