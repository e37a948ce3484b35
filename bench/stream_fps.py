"""End-to-end streaming speed: frames per second (decode included), time to first frame, ms per call.

    python bench/stream_fps.py [--model PATH|random:toy] [--compare PATH ...] [--seconds 10] [--repeats 3] [--compile]
                               [--json out.json]

--compare measures other models in the same run, their repeats interleaved with the model's (A, B, A, B, ...),
so that a machine whose pace drifts slows every model alike.

Prints a JSON record and a table. A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import add_compile_arg, machine_record, time_stream, warm_up  # noqa: E402
from streamdit.pipeline import Pipeline  # noqa: E402


def run_once(pipe: Pipeline, frames: int, cold_start: str, seed: int, **kw) -> dict:
    stream = pipe.stream("a pig walking right on grass", seed=seed, cold_start=cold_start, **kw)
    t = time_stream(stream, frames)
    done, total, first = t["frames"], t["seconds"], t["first_frame_s"]
    steady = (done - stream.config.partition.chunk_frames) / max(total - first, 1e-9)
    return {"frames": done, "seconds": total, "fps": done / total, "steady_fps": steady, "first_frame_s": first,
            "calls": stream.calls, "ms_per_call": 1000 * total / stream.calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint, or random:<preset>; default: the embedded model")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compare", action="append", default=[], metavar="PATH",
                    help="another model measured in the same run, repeats interleaved (repeat the flag)")
    ap.add_argument("--json", help="also write the record here")
    add_compile_arg(ap)
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipes = [Pipeline.load(m, device=args.device, compile=args.compile) for m in [args.model, *args.compare]]
    d = pipes[0].bundle.defaults
    frames = int(args.seconds * d.fps)
    record = machine_record(args, pipes[0], frames)
    records = [record] + [{"model": m, "describe": p.describe(), "compile": record["compile"], "runs": {}}
                          for m, p in zip(args.compare, pipes[1:])]
    for p, r in zip(pipes, records):
        warm_up(r, lambda p=p: run_once(p, frames, "uniform", seed=99))
    for cold in ("uniform", "noise"):
        runs = [[] for _ in pipes]
        for i in range(args.repeats):
            for p, out in zip(pipes, runs):
                out.append(run_once(p, frames, cold, seed=i))
        for r, out in zip(records, runs):
            r["runs"][cold] = {k: statistics.median(x[k] for x in out) for k in out[0]}
    if args.compare:
        record["compared"] = records[1:]
    print(json.dumps(record, indent=2))
    if record["compile"]:
        print(f"\ncompiled: warm-up run (compile included) {record['warmup_s']:.1f} s")
    print(f"\n{'model':28s} {'cold start':10s} {'FPS':>7s} {'steady FPS':>11s} {'first frame s':>14s} {'ms/call':>8s}")
    for rec in records:
        for cold, r in rec["runs"].items():
            print(f"{Path(rec['model']).name[:28]:28s} {cold:10s} {r['fps']:7.1f} {r['steady_fps']:11.1f} "
                  f"{r['first_frame_s']:14.3f} {r['ms_per_call']:8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
