"""FLOPs per emitted frame of the causal families at a size, counted by PyTorch's flop counter (on fake tensors:
no memory, no weights) and cross-checked against an analytic count; the KV-cache memory table; and the FPS an
H100 would give at the utilisation the authors' own published FPS implies (a projection, labelled as one).

    python bench/causal_flops.py --json docs/bench/causal-flops.json
    python bench/causal_flops.py --preset wan2.1-t2v-14b --json docs/bench/causal-flops-14b.json

Steady state: the window full and rolling (any length). For Self-Forcing also the authors' benchmark: one
21-latent-frame video (81 frames), the cache filling from empty, a cache pass after every chunk.
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
from streamdit.codecs.taehv import TAEHVCodec  # noqa: E402
from streamdit.network.config import ModelConfig, get_preset  # noqa: E402
from streamdit.network.model import WanDiT  # noqa: E402
from streamdit.sampling.causal import KVCache  # noqa: E402
from streamdit.sampling.families import FAMILIES, Family  # noqa: E402

H100_BF16_DENSE = 989.4e12  # FLOP/s, NVIDIA H100 SXM datasheet (dense, no sparsity)
# The authors' published speeds on one H100 (their claims; docs/causal-sources.md, docs/realtime-models.md)
PUBLISHED_FPS = {"self-forcing": 17.0, "causvid": 9.4, "rolling-forcing": 16.0, "longlive": 20.7}


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


def analytic_chunk(cfg: ModelConfig, family: Family, frame_tokens: int, cached: int | None = None) -> float:
    """One emitted chunk from the family's definition: s denoising calls over the buffer (N c frames) attending
    to the window, one cache pass over c frames. cached None: the window full; else frames in the cache."""
    p, spec = family.partition(), family.cache()
    c, buffer = p.chunk_frames, p.stream_frames
    if cached is None:
        denoise_keys = spec.window
        commit_keys = spec.commit_window or (spec.window - buffer + c)
    else:  # filling from empty (Self-Forcing's 21-frame video: no sink, nothing rolls)
        denoise_keys, commit_keys = cached + buffer, cached + c
    t = frame_tokens
    return p.micro_steps * analytic_call(cfg, buffer * t, denoise_keys * t) + analytic_call(cfg, c * t, commit_keys * t)


def steady_cache(family: Family, cfg: ModelConfig, grid_hw: tuple[int, int], seen: int = 120) -> KVCache:
    """A cache in the state of a long stream: sink full, ring full (values do not change a count)."""
    spec, p = family.cache(), family.partition()
    cache = KVCache(spec, p, grid_hw[0] * grid_hw[1], cfg.num_layers, cfg.num_heads, cfg.head_dim, grid_hw=grid_hw)
    cache.sink_used, cache.ring_used, cache.ring_next = spec.sink, cache.ring_frames, 0
    cache.frames_seen = cache.position = seen
    return cache


def counted_chunk(model: WanDiT, family: Family, cache: KVCache, lat: tuple) -> float:
    """PyTorch's count of one emitted chunk through the cache's own plans (fake tensors)."""
    cfg, p = model.config, family.partition()
    text = torch.zeros(1, cfg.text_len, cfg.text_dim)
    total = 0.0
    calls = [("denoise", p.stream_frames)] * p.micro_steps + [("commit", p.chunk_frames)]
    for kind, frames in calls:
        getattr(cache, f"plan_{kind}")(frames)
        x = torch.zeros(1, cfg.in_dim, frames, *lat)
        with FlopCounterMode(display=False) as fc, sdpa_kernel(SDPBackend.MATH):  # math SDPA: counted as matmuls
            model.forward_cached(x, torch.zeros(1, frames), text, cache)
        total += float(fc.get_total_flops())
        cache.plan = type(cache.plan)(cache.position)  # nothing committed: the next call sees the same state
    return total


def kv_bytes(family: Family, cfg: ModelConfig, frame_tokens: int, bytes_per: int = 2) -> tuple[int, float]:
    """Frames the cache allocates (scratch + sink + kept) and their GB of keys and values."""
    p, spec = family.partition(), family.cache()
    frames = p.stream_frames + spec.sink + spec.kept_frames(p)
    return frames, frames * 2 * cfg.num_layers * frame_tokens * cfg.dim * bytes_per / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--families", default="self-forcing,causvid,causal-forcing,causal-forcing-frame,"
                                          "rolling-forcing,longlive")
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--json")
    args = ap.parse_args()
    from torch._subclasses.fake_tensor import FakeTensorMode

    cfg = get_preset(args.preset).model
    lat = (args.height // 8, args.width // 8)
    grid_hw = (lat[0] // cfg.patch_size[1], lat[1] // cfg.patch_size[2])
    frame_tokens = grid_hw[0] * grid_hw[1]
    per_frame_kv = 2 * cfg.num_layers * frame_tokens * cfg.dim * 2 / 1e9
    record = {"model": args.preset, "size": f"{args.width}x{args.height}", "frame_tokens": frame_tokens,
              "kv_gb_per_latent_frame_bf16": round(per_frame_kv, 4), "families": {}}
    with FakeTensorMode():
        model = WanDiT(cfg)
        dec = TAEHVCodec(cfg.in_dim).stream_decoder()
        dec.decode_pixels(torch.zeros(cfg.in_dim, 3, *lat))  # the start-up frames, once
        taehv = {}
        for c in (1, 3):
            with FlopCounterMode(display=False) as fc:
                out = dec.decode_pixels(torch.zeros(cfg.in_dim, c, *lat))
            taehv[c] = (float(fc.get_total_flops()), out.shape[0])
        for name in args.families.split(","):
            family = FAMILIES[name]
            counted = counted_chunk(model, family, steady_cache(family, cfg, grid_hw), lat)
            analytic = analytic_chunk(cfg, family, frame_tokens)
            dec_flops, video = taehv[family.chunk_frames]
            frames, gb = kv_bytes(family, cfg, frame_tokens)
            r = {"chunk_frames": family.chunk_frames, "calls_per_chunk": family.partition().micro_steps + 1,
                 "dit_tflop_per_chunk_counted": round(counted / 1e12, 3),
                 "dit_tflop_per_chunk_analytic": round(analytic / 1e12, 3),
                 "analytic_vs_counted": round(analytic / counted - 1, 5),
                 "taehv_tflop_per_chunk": round(dec_flops / 1e12, 3), "video_frames_per_chunk": video,
                 "tflop_per_frame_steady": round((counted + dec_flops) / video / 1e12, 3),
                 "kv_cache_frames": frames, "kv_cache_gb_bf16": round(gb, 2)}
            if name == "self-forcing":  # the authors' benchmark: 21 latent frames from an empty cache
                c = family.chunk_frames
                authors = sum(analytic_chunk(cfg, family, frame_tokens, cached=i * c) for i in range(21 // c))
                r["authors_81_frames_dit_tflop_per_frame"] = round(authors / 81 / 1e12, 3)
            fps = PUBLISHED_FPS.get(name)
            if fps is not None and args.preset == "wan2.1-t2v-1.3b":  # the authors published 1.3B speeds
                theirs = r.get("authors_81_frames_dit_tflop_per_frame", counted / video / 1e12) * 1e12
                util = theirs * fps / H100_BF16_DENSE
                r["projection"] = {"label": "PROJECTION, not a measurement", "authors_published_h100_fps": fps,
                                   "implied_h100_utilisation": round(util, 4),
                                   "projected_h100_fps_steady_taehv": round(util * H100_BF16_DENSE /
                                                                            ((counted + dec_flops) / video), 2)}
            record["families"][name] = r
    record["assumes"] = ("projection: the authors' FPS counted as DiT FLOPs only (their setting: Self-Forcing's "
                         "81-frame video, the others' steady state) at H100 dense bf16 peak 989.4 TFLOP/s; our steady "
                         "state plus TAEHV decoding run at that same utilisation")
    print(json.dumps(record, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
