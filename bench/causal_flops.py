"""FLOPs per emitted frame of a causal family at a size, counted by PyTorch's flop counter (on fake tensors: no
memory, no weights) and cross-checked against an analytic count; the KV-cache memory table; and the FPS an
H100 would give at the utilisation the authors' own published FPS implies (a projection, labelled as one).

    python bench/causal_flops.py --json docs/bench/causal-flops.json

Two settings: the authors' benchmark (one 21-latent-frame video, 81 frames, the cache filling from empty, a
cache pass after every chunk) and our steady state (the window full and rolling, for any length).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streamdit.causal import KVCache  # noqa: E402
from streamdit.codecs.taehv import TAEHVCodec  # noqa: E402
from streamdit.config import ModelConfig, get_preset  # noqa: E402
from streamdit.families import FAMILIES, Family  # noqa: E402
from streamdit.model import WanDiT  # noqa: E402

H100_BF16_DENSE = 989.4e12  # FLOP/s, NVIDIA H100 SXM datasheet (dense, no sparsity)
# The authors' published speeds (their claims, single H100 unless said; docs/causal-sources.md)
PUBLISHED_FPS = {"self-forcing": 17.0, "causvid": 9.4}


def analytic_call(cfg: ModelConfig, tokens: int, keys: int) -> float:
    """FLOPs of one WanDiT call over `tokens` query tokens attending to `keys` self-attention keys."""
    d, f, text = cfg.dim, cfg.ffn_dim, cfg.text_len
    per_token = 2 * (4 * d * d + 2 * d * d + 2 * d * f)  # self q,k,v,o; cross q,o; ffn
    attention = 4 * tokens * keys * d + 4 * tokens * text * d  # QK^T and AV, self and cross
    cross_kv = 2 * 2 * d * d * text  # cross-attention k, v of the text, per block
    text_embed = 2 * text * (cfg.text_dim * d + d * d)
    patch = 2 * tokens * cfg.in_dim * d * (cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2])
    head = 2 * tokens * d * cfg.out_dim * (cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2])
    return cfg.num_layers * (tokens * per_token + attention + cross_kv) + text_embed + patch + head


def counted_call(model: WanDiT, family: Family, frame_tokens: int, cached: int, frames: int, lat: tuple) -> float:
    """PyTorch's count of one call over `frames` frames with `cached` frames in the cache (fake tensors)."""
    cfg = model.config
    cache = KVCache(family.cache(), family.partition(), frame_tokens, cfg.num_layers, cfg.num_heads, cfg.head_dim)
    cache.ring_used = cached  # what the span holds; values do not change the count
    x = torch.zeros(1, cfg.in_dim, frames, *lat)
    with FlopCounterMode(display=False) as fc, sdpa_kernel(SDPBackend.MATH):  # math SDPA: counted as matmuls
        model.forward_cached(x, torch.zeros(1, frames), torch.zeros(1, cfg.text_len, cfg.text_dim), cache)
    return float(fc.get_total_flops())


def kv_table(cfg: ModelConfig, frame_tokens: int, bytes_per: int = 2) -> dict:
    """GB of keys+values per cached latent frame, and for each family's allocation (window frames)."""
    per_frame = 2 * cfg.num_layers * frame_tokens * cfg.dim * bytes_per
    return {"gb_per_latent_frame": round(per_frame / 1e9, 4),
            "families": {f.name: {"window": f.window, "sink": f.sink, "gb": round(f.window * per_frame / 1e9, 2)}
                         for f in FAMILIES.values() if f.causal}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--family", default="self-forcing")
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--json")
    args = ap.parse_args()
    from torch._subclasses.fake_tensor import FakeTensorMode

    cfg = get_preset(args.preset).model
    family = FAMILIES[args.family]
    lat = (args.height // 8, args.width // 8)
    frame_tokens = (lat[0] // cfg.patch_size[1]) * (lat[1] // cfg.patch_size[2])
    c, steps, window = family.chunk_frames, family.steps, family.window
    with FakeTensorMode():
        model = WanDiT(cfg)
        taehv = TAEHVCodec(cfg.in_dim)

        def chunk_flops(cached: int, analytic: bool = False) -> float:
            """`steps` denoising calls and one cache pass, with `cached` finished frames in the span."""
            if analytic:
                return (steps + 1) * analytic_call(cfg, c * frame_tokens, (cached + c) * frame_tokens)
            return (steps + 1) * counted_call(model, family, frame_tokens, cached, c, lat)

        rolling = window - family.sink - c
        steady = chunk_flops(rolling)
        steady_analytic = chunk_flops(rolling, analytic=True)
        clips = 21 // c  # the authors' benchmark: 21 latent frames (81 video frames) from an empty cache
        authors = sum(chunk_flops(i * c) for i in range(clips))
        authors_analytic = sum(chunk_flops(i * c, analytic=True) for i in range(clips))
        dec = taehv.stream_decoder()
        with FlopCounterMode(display=False) as fc:
            dec.decode_pixels(torch.zeros(cfg.in_dim, c, *lat))  # the first chunk (start-up frames)
        with FlopCounterMode(display=False) as fc:
            out = dec.decode_pixels(torch.zeros(cfg.in_dim, c, *lat))  # a steady chunk
        taehv_chunk, video_per_chunk = float(fc.get_total_flops()), out.shape[0]

    per_frame_steady = (steady + taehv_chunk) / video_per_chunk
    per_frame_authors_dit = authors / 81
    record = {
        "model": args.preset, "family": family.name, "size": f"{args.width}x{args.height}",
        "frame_tokens": frame_tokens, "chunk_frames": c, "steps": steps, "window": window,
        "steady_chunk": {"dit_tflop_counted": round(steady / 1e12, 3),
                         "dit_tflop_analytic": round(steady_analytic / 1e12, 3),
                         "analytic_vs_counted": round(steady_analytic / steady - 1, 4),
                         "taehv_tflop": round(taehv_chunk / 1e12, 3), "video_frames": video_per_chunk,
                         "tflop_per_frame": round(per_frame_steady / 1e12, 3)},
        "authors_81_frames": {"dit_tflop_counted": round(authors / 1e12, 2),
                              "dit_tflop_analytic": round(authors_analytic / 1e12, 2),
                              "analytic_vs_counted": round(authors_analytic / authors - 1, 4),
                              "dit_tflop_per_frame": round(per_frame_authors_dit / 1e12, 3)},
        "kv_cache_bf16": kv_table(cfg, frame_tokens),
    }
    if family.name in PUBLISHED_FPS and args.preset == "wan2.1-t2v-1.3b":  # the authors published 1.3B speeds
        fps = PUBLISHED_FPS[family.name]
        util = per_frame_authors_dit * fps / H100_BF16_DENSE
        record["projection"] = {
            "label": "PROJECTION, not a measurement",
            "authors_published_fps": fps,
            "implied_h100_utilisation": round(util, 4),
            "projected_h100_fps_steady_taehv": round(util * H100_BF16_DENSE / per_frame_steady, 2),
            "assumes": "the authors' FPS counts DiT FLOPs only at H100 dense bf16 peak (989.4 TFLOP/s); our "
                       "steady state (window full) plus TAEHV run at that same utilisation",
        }
    print(json.dumps(record, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
