"""End-to-end editing speed: source frames in, edited frames out (encode, network, decode), per strength.

    python bench/edit_fps.py [--model PATH|random:toy] [--seconds 10] [--repeats 3] [--cfg 2] [--compile]
                             [--json out.json]

The source is a toy-world render held in memory (reading a file adds the ffmpeg decode, which runs
in its own process). Prints a JSON record and a table. A benchmark, not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import add_compile_arg, machine_record, warm_up  # noqa: E402
from streamdit.pipeline import Pipeline  # noqa: E402
from streamdit.toyworld import eval_seed, render_clip  # noqa: E402


def run_once(pipe: Pipeline, source: torch.Tensor, strength: float, seed: int, live: bool, cfg: float = 1.0,
             negative: str = "") -> dict:
    stream = pipe.edit(source, "a cat walking right on grass", strength=strength, seed=seed, lookahead=not live,
                       cfg_scale=cfg, negative_prompt=negative)
    start = time.perf_counter()
    first, done = None, 0
    for chunk in stream.frames():
        if first is None:
            first = time.perf_counter() - start
        done += chunk.shape[0]
    total = time.perf_counter() - start
    return {"frames": done, "seconds": total, "fps": done / total, "first_frame_s": first, "calls": stream.calls,
            "strength": stream.strength, "latency_frames": stream.latency_frames}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint, or random:<preset>; default: the embedded model")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strengths", default="0.375,0.625,1.0")
    ap.add_argument("--cfg", type=float, default=1.0, help="guidance (above 1: two network passes per call)")
    ap.add_argument("--negative", default="a pig walking right on grass", help="negative prompt when cfg > 1")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the record here")
    add_compile_arg(ap)
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = Pipeline.load(args.model, device=args.device, compile=args.compile)
    d = pipe.bundle.defaults
    frames = int(args.seconds * d.fps)
    source, _ = render_clip(("pig", "walking right", "grass"), frames, eval_seed(400_000), (d.height, d.width))
    record = machine_record(args, pipe, frames)
    record["cfg"], record["negative"] = args.cfg, args.negative if args.cfg != 1 else ""
    warm_up(record, lambda: run_once(pipe, source[:32], 0.75, 99, live=False, cfg=args.cfg, negative=args.negative))
    for live in (False, True):
        for strength in (float(s) for s in args.strengths.split(",")):
            runs = [run_once(pipe, source, strength, seed=i, live=live, cfg=args.cfg, negative=args.negative)
                    for i in range(args.repeats)]
            key = f"{'live' if live else 'lookahead'} {runs[0]['strength']:.3f}"
            record["runs"][key] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(json.dumps(record, indent=2))
    if record["compile"]:
        print(f"\ncompiled: warm-up run (compile included) {record['warmup_s']:.1f} s")
    print(f"\n{'reading, strength':22s} {'FPS':>7s} {'first frame s':>14s} {'latency frames':>15s} {'calls':>6s}")
    for key, r in record["runs"].items():
        print(f"{key:22s} {r['fps']:7.1f} {r['first_frame_s']:14.3f} {r['latency_frames']:15.0f} {r['calls']:6.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
