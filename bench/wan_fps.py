"""Streaming speed of Wan 2.1-sized models with random weights: FPS (decode included), time to first frame,
peak GPU memory, for the training-free partition (c = 1, N = 16, s = 2) and StreamDiT's (c = 2, N = 8, s = 1),
with the full Wan 2.1 VAE and with TAEHV.

    python bench/wan_fps.py [--preset wan2.1-t2v-1.3b] [--width 832 --height 480] [--seconds 5] [--json out.json]
    python bench/wan_fps.py --config '{"dim": 128, ...}' --width 64 --height 64   (a smoke run on a CPU)

Random weights give the same speed as trained ones. A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import time_stream  # noqa: E402
from streamdit.codecs.taehv import TAEHVCodec  # noqa: E402
from streamdit.codecs.wan_vae import WanVAECodec  # noqa: E402
from streamdit.io.checkpoint import Bundle  # noqa: E402
from streamdit.network.config import ModelConfig, get_preset  # noqa: E402
from streamdit.network.model import WanDiT  # noqa: E402
from streamdit.network.text import hashed_text_encoder  # noqa: E402
from streamdit.pipeline import Pipeline  # noqa: E402
from streamdit.wan.loading import streaming_defaults  # noqa: E402

PARTITIONS = {"training-free c=1 N=16 s=2": (1, 16, 2), "StreamDiT c=2 N=8 s=1": (2, 8, 1)}


def build(config: ModelConfig, device: torch.device, dtype: torch.dtype, decoder: str) -> Pipeline:
    with torch.device(device):  # random init on the device itself: fast, and no host copy of 14B weights
        model = WanDiT(config).to(dtype).eval()
        codec = WanVAECodec() if decoder == "vae" else TAEHVCodec(config.in_dim)
    codec = codec.to(device, dtype).eval()
    bundle = Bundle(model, config, hashed_text_encoder(config.text_dim, config.text_len), codec,
                    streaming_defaults(codec), {"untrained": True})
    return Pipeline(bundle, device, dtype)


def run_once(pipe: Pipeline, frames: int, width: int, height: int, partition, cfg: float) -> dict:
    c, n, s = partition
    dev = pipe.device
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stream = pipe.stream("a corgi running on a beach at sunset", width=width, height=height, chunk_frames=c,
                         buffer_frames=c * n, micro_steps=s, cfg_scale=cfg)
    t = time_stream(stream, frames)
    done, total, first = t["frames"], t["seconds"], t["first_frame_s"]
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None
    return {"frames": done, "seconds": round(total, 3), "fps": round(done / total, 2),
            "steady_fps": round((done - 1) / max(total - first, 1e-9), 2), "first_frame_s": round(first, 3),
            "calls": stream.calls, "ms_per_call": round(1000 * total / stream.calls, 1),
            "peak_gib": None if peak is None else round(peak, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--config", help="JSON ModelConfig instead of the preset (smoke runs)")
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--cfg", type=float, default=1.0, help="guidance (2 network passes per call when > 1)")
    ap.add_argument("--decoders", default="taehv,vae")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--json", help="also write the record here")
    args = ap.parse_args()
    config = ModelConfig.from_dict(json.loads(args.config)) if args.config else get_preset(args.preset).model
    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    frames = int(args.seconds * 16)
    record = {"preset": None if args.config else args.preset, "config": json.loads(config.to_json()),
              "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "dtype": args.dtype,
              "size": f"{args.width}x{args.height}", "frames": frames, "cfg": args.cfg, "torch": torch.__version__,
              "runs": {}}
    for decoder in args.decoders.split(","):
        pipe = build(config, dev, dtype, decoder)
        for name, partition in PARTITIONS.items():
            run_once(pipe, 9, args.width, args.height, partition, args.cfg)  # warm-up: kernels, allocator
            record["runs"][f"{decoder} | {name}"] = run_once(pipe, frames, args.width, args.height, partition,
                                                             args.cfg)
        del pipe
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    print(json.dumps(record, indent=2))
    print(f"\n{'decoder | partition':40s} {'FPS':>6s} {'steady':>7s} {'first s':>8s} {'ms/call':>8s} {'GiB':>6s}")
    for name, r in record["runs"].items():
        print(f"{name:40s} {r['fps']:6.2f} {r['steady_fps']:7.2f} {r['first_frame_s']:8.3f} {r['ms_per_call']:8.1f} "
              f"{r['peak_gib'] if r['peak_gib'] is not None else '-':>6}")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
