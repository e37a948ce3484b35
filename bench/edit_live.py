"""Live video-to-video through a pipe (raw rgb24 frames, as `edit --input -` reads stdin): edited frames per second,
first-frame latency, latency in frames, peak memory; the embedded toy model, and a tiny random Wan model with the
Wan 2.1 VAE and with TAEHV (both with their encoders).

    python bench/edit_live.py [--seconds 4] [--json docs/bench/edit-live.json]

The feeder writes the bundled pig video (looped) into a pipe either as fast as the edit takes it (throttle:
backpressure) or at the video's own rate (16 fps, a camera). Latency in frames: source frames written when the
first edited frame came out. Peak memory: the process's peak resident set (model included), from getrusage.
A benchmark, not a test: nothing here asserts a time. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from streamdit.codecs.taehv import TAEHVCodec  # noqa: E402
from streamdit.codecs.wan_vae import WanVAECodec  # noqa: E402
from streamdit.io.checkpoint import Bundle  # noqa: E402
from streamdit.io.video import read_video  # noqa: E402
from streamdit.network.config import ModelConfig, StreamDefaults  # noqa: E402
from streamdit.network.model import WanDiT  # noqa: E402
from streamdit.network.text import hashed_text_encoder  # noqa: E402
from streamdit.pipeline import Pipeline  # noqa: E402
from streamdit.sampling.sources import FrameSource  # noqa: E402

EXAMPLE = ROOT / "workflows" / "media" / "pig_walking_right_on_grass.mp4"
TINY = ModelConfig(dim=128, ffn_dim=256, num_heads=2, num_layers=4, in_dim=16, out_dim=16, text_dim=64, text_len=32,
                   freq_dim=64)


def tiny_wan(decoder: str) -> Pipeline:
    torch.manual_seed(0)
    model = WanDiT(TINY).eval()
    codec = (WanVAECodec() if decoder == "vae" else TAEHVCodec(16, encoder_width=64)).eval()
    defaults = StreamDefaults(width=64, height=64, fps=16.0, codec=codec.spec, buffer_frames=8, chunk_frames=1,
                              micro_steps=1, shift=5.0)
    bundle = Bundle(model, TINY, hashed_text_encoder(TINY.text_dim, TINY.text_len), codec, defaults,
                    {"untrained": True})
    return Pipeline(bundle, torch.device("cpu"), torch.float32)


def feeder(fd: int, frames: np.ndarray, count: int, rate: float, log: list) -> threading.Thread:
    """Writes `count` frames (looping `frames`) into the pipe; rate 0: as fast as the reader takes them."""
    def run():
        start = time.perf_counter()
        with os.fdopen(fd, "wb", buffering=0) as pipe:
            for i in range(count):
                if rate:
                    time.sleep(max(0.0, start + i / rate - time.perf_counter()))
                pipe.write(frames[i % len(frames)].tobytes())
                log.append(time.perf_counter())
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def run_case(pipe: Pipeline, frames: np.ndarray, count: int, rate: float, strength: float) -> dict:
    h, w = frames.shape[1:3]
    r, wfd = os.pipe()
    written: list[float] = []
    source = FrameSource.from_stdin(w, h, 16.0, stream=r, when_behind="throttle", stall_timeout=30.0)
    stream = pipe.edit(source, "a cat walking right on grass", strength=strength, seed=0)
    thread = feeder(wfd, frames, count, rate, written)
    done, first, first_written = 0, None, None
    for chunk in stream.frames():
        if first is None:
            first, first_written = time.perf_counter(), len(written)
        done += chunk.shape[0]
    end = time.perf_counter()
    thread.join()
    os.close(r)
    start = written[0]
    return {"frames": done, "fps": round(done / (end - start), 2), "first_frame_s": round(first - start, 3),
            "latency_frames_measured": first_written, "latency_frames_design": stream.latency_frames,
            "strength": stream.strength, "calls": stream.calls,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="source seconds per case (16 fps)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    video, _ = read_video(EXAMPLE)
    frames = (video.numpy() * 255).round().astype(np.uint8)
    count = int(args.seconds * 16)
    cases = {"toy (embedded), strength 0.75": (Pipeline.load(), 0.75),
             "tiny Wan + Wan 2.1 VAE, strength 0.5": (tiny_wan("vae"), 0.5),
             "tiny Wan + TAEHV, strength 0.5": (tiny_wan("taehv"), 0.5)}
    results = {"machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__}, "cases": {}}
    for name, (pipe, strength) in cases.items():
        for label, rate in (("as fast as it edits", 0.0), ("fed at 16 fps", 16.0)):
            res = run_case(pipe, frames, count, rate, strength)
            results["cases"][f"{name}, {label}"] = res
            print(f"{name}, {label}: {json.dumps(res)}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
