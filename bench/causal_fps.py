"""Causal streaming cost: end-to-end FPS, time to first frame, peak memory, and the cost per chunk and
the memory held as a stream runs far past its KV window (both must stay flat once the window is full).

    python bench/causal_fps.py --tiny --json docs/bench/causal-tiny-cpu.json --plot docs/img/causal-flat.png
        (CPU: a tiny random causal model streamed 10x longer than its window, denoising only)
    python bench/causal_fps.py --preset wan2.1-t2v-1.3b --family self-forcing --seconds 10 --json out.json
        (GPU: Self-Forcing 1.3B at 832x480, random weights, TAEHV decoding, bf16)

Random weights cost what trained ones do. A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import time_stream  # noqa: E402
from bench.wan_fps import build as build_random  # noqa: E402
from streamdit.network.config import ModelConfig, get_preset  # noqa: E402
from streamdit.pipeline import Pipeline  # noqa: E402
from streamdit.sampling.families import get_family  # noqa: E402

TINY = ModelConfig(dim=128, ffn_dim=256, num_heads=2, num_layers=4, in_dim=16, out_dim=16, text_dim=64, text_len=32,
                   freq_dim=64)
PROMPT = "a corgi running on a beach at sunset"
OTHER_PROMPT = "a corgi running through fresh snow"


def build(config: ModelConfig, device: torch.device, dtype: torch.dtype, family: str, attention: str) -> Pipeline:
    """wan_fps.py's random model with TAEHV, streamed as `family`."""
    pipe = build_random(config, device, dtype, "taehv")
    return dataclasses.replace(pipe, family=get_family(family), attention=attention)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def held_mib(dev: torch.device) -> float:
    return torch.cuda.memory_allocated(dev) / 2**20 if dev.type == "cuda" else rss_mib()


def per_chunk(pipe: Pipeline, chunks: int, args, switch_at: int | None = None) -> dict:
    """Denoising only (no decode): seconds and memory held after each chunk, the KV cache's bytes; with
    switch_at, the prompt changes before that chunk (its time includes a re-cache where the family has one)."""
    stream = pipe.stream(PROMPT, width=args.width, height=args.height, window=args.window, sink=args.sink)
    dev = pipe.device
    ms, held, calls = [], [], []
    for i in range(chunks):
        if i == switch_at:
            stream.set_prompt(OTHER_PROMPT)
        sync(dev)
        t0, before = time.perf_counter(), stream.calls
        stream.next_latent_chunk()
        sync(dev)
        ms.append(round(1000 * (time.perf_counter() - t0), 2))
        held.append(round(held_mib(dev), 1))
        calls.append(stream.calls - before)
    cache = stream.denoise.cache
    out = {"ms_per_chunk": ms, "held_mib": held, "calls_per_chunk": calls,
           "kv_cache_mib": round(cache.nbytes / 2**20, 1), "latent_frames": stream.latents_emitted,
           "window": cache.spec.window, "rebased_by": cache.offset}
    if switch_at is not None:
        regular = [m for i, m in enumerate(ms) if switch_at - 3 <= i < switch_at]
        out["prompt_switch"] = {"chunk": switch_at, "ms_switch_chunk": ms[switch_at],
                                "ms_regular_chunk": round(sum(regular) / len(regular), 2),
                                "calls_switch_chunk": calls[switch_at], "calls_regular_chunk": calls[switch_at - 1]}
    return out


def end_to_end(pipe: Pipeline, frames: int, args) -> dict:
    dev = pipe.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    stream = pipe.stream(PROMPT, width=args.width, height=args.height, window=args.window, sink=args.sink)
    sync(dev)
    t = time_stream(stream, frames)
    done, total, first = t["frames"], t["seconds"], t["first_frame_s"]
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {"frames": done, "seconds": round(total, 3), "fps": round(done / total, 2),
            "steady_fps": round((done - 1) / max(total - first, 1e-9), 2), "first_frame_s": round(first, 3),
            "calls": stream.calls, "ms_per_call": round(1000 * total / stream.calls, 2),
            "peak_gib": None if peak is None else round(peak, 2)}


def plot(record: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = record["per_chunk"]
    c = record["chunk_frames"]
    x = [c * (i + 1) for i in range(len(r["ms_per_chunk"]))]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    a.plot(x, r["ms_per_chunk"], ".-")
    a.set_xlabel("latent frames streamed")
    a.set_ylabel("ms per chunk (denoise + cache pass)")
    b.plot(x, r["held_mib"], ".-", color="tab:orange")
    b.set_xlabel("latent frames streamed")
    b.set_ylabel("memory held (MiB)" + (", process RSS" if record["device"] == "cpu" else ", CUDA allocated"))
    b.set_ylim(0, max(r["held_mib"]) * 1.15)
    a.set_ylim(0, max(r["ms_per_chunk"]) * 1.15)
    for ax in (a, b):
        ax.axvline(r["window"], color="gray", ls="--", lw=1)
        ax.text(r["window"], ax.get_ylim()[1], " window full", va="top", fontsize=8, color="gray")
        ax.grid(alpha=0.3)
    params = record["describe"].split(":")[1].split(",")[0].strip()  # "1419.00M parameters"
    dtype = record["dtype"].replace("torch.", "")
    fig.suptitle(f"{record['family']} ({params}, random weights), {record['size']}, {dtype}, {record['device']}: "
                 "denoising only", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model on 64x64 frames (CPU)")
    ap.add_argument("--family", default="self-forcing")
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--window", type=int, help="KV window in latent frames (default: the family's)")
    ap.add_argument("--sink", type=int)
    ap.add_argument("--seconds", type=float, default=10.0, help="end-to-end run length (video seconds)")
    ap.add_argument("--windows", type=float, default=10.0, help="per-chunk run length, in windows")
    ap.add_argument("--no-end-to-end", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--attention", default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network (warm-up compiles)")
    ap.add_argument("--json")
    ap.add_argument("--plot")
    ap.add_argument("--replot", help="only redraw --plot from this earlier --json record")
    args = ap.parse_args()
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), args.plot)
        return
    dev = torch.device(args.device)
    config = TINY if args.tiny else get_preset(args.preset).model
    if args.tiny:
        args.width, args.height = args.width or 64, args.height or 64
    args.width, args.height = args.width or 832, args.height or 480
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    if dev.type != "cuda":
        torch.set_num_threads(min(os.cpu_count() or 1, 2))
    pipe = build(config, dev, dtype, args.family, args.attention)
    if args.compile:
        pipe = dataclasses.replace(pipe, compile=True)
    family = pipe.family
    window = args.window or family.window
    chunks = int(args.windows * window / family.chunk_frames)
    record = {"family": family.name, "describe": pipe.describe(), "size": f"{args.width}x{args.height}",
              "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "dtype": str(dtype),
              "torch": torch.__version__, "attention": args.attention, "compile": args.compile,
              "chunk_frames": family.chunk_frames, "steps": family.steps}
    t0 = time.perf_counter()
    per_chunk(pipe, 2, args)  # warm-up: kernels, allocator, compile
    record["warmup_s"] = round(time.perf_counter() - t0, 1)
    record["per_chunk"] = per_chunk(pipe, chunks, args, switch_at=chunks - 2 if chunks >= 6 else None)
    if not args.no_end_to_end:
        end_to_end(pipe, 9, args)  # warm-up of the decoder path
        record["end_to_end"] = end_to_end(pipe, int(args.seconds * 16), args)
    r = record["per_chunk"]
    w = max(1, r["window"] // family.chunk_frames)
    late = r["ms_per_chunk"][-w:]
    early = r["ms_per_chunk"][w:2 * w] or late  # a run shorter than two windows has no separate "early"
    record["summary"] = {"ms_per_chunk_after_window_fills": round(sum(early) / len(early), 2),
                         f"ms_per_chunk_last_{len(late)}": round(sum(late) / len(late), 2),
                         "held_mib_after_window_fills": r["held_mib"][min(w, len(r["held_mib"]) - 1)],
                         "held_mib_at_end": r["held_mib"][-1],
                         # video frames per chunk over the steady chunk time (no decoding)
                         "denoise_only_fps": round(family.chunk_frames * pipe.bundle.codec.temporal_factor * 1000
                                                   / (sum(late) / len(late)), 2)}
    print(json.dumps(record, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1))
    if args.plot:
        plot(record, args.plot)


if __name__ == "__main__":
    main()
