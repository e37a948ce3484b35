"""Does the sprite-weighted loss draw the second sprite? (issue 26; dev seeds only)

The teacher's flow-matching loss weighs the cells of the *true* sprite 11x. Per cell the minimiser of a weighted
squared error is E[w v | x_t] / E[w | x_t], not the posterior mean E[v | x_t]: wherever the sprite may be
(probability p), the prediction leans to a sprite as if p were 11p / (1 + 10p). At p = 0.1 that is a sprite
at half strength, so a model unsure where its animal is draws it in several places.

The test: continue a finished teacher for --steps on the full partition mix (lr 2e-4, no EMA) with the loss
weighted (--weight 10, the control) or plain (--weight 0), then count its sprites per frame with judge v2 on the
dev scenes of docs/scripts/doubling.py (teacher, 4 micro steps, cfg 1.5, frames 0-47).

    python docs/scripts/sprite_weight_bias.py --weight 0 --out runs/bias-w0
    python docs/scripts/sprite_weight_bias.py --weight 10 --steps 0 \
        --checkpoint runs/v8/teacher-refine/checkpoint-0000800.pt --out runs/v8-800   # a recipe's checkpoint
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streamdit.io.checkpoint import Bundle, load_checkpoint  # noqa: E402
from streamdit.io.progress import Progress  # noqa: E402
from streamdit.pipeline import Pipeline  # noqa: E402
from streamdit.sampling.partition import Schedule  # noqa: E402
from streamdit.toyworld import all_scenes, canonical_caption  # noqa: E402
from streamdit.toyworld.judge_v2 import judge_clip  # noqa: E402
from streamdit.toyworld.seed_sets import DEV  # noqa: E402
from streamdit.train.flow import PartitionMix, TextConditionedDiT, flow_matching_loss  # noqa: E402
from streamdit.train.toy.cache import merge_caches  # noqa: E402
from streamdit.train.toy.clips import caption  # noqa: E402
from streamdit.train.toydata import LatentClips  # noqa: E402
from streamdit.train.trainer import TrainConfig, Trainer  # noqa: E402

sys.path.insert(0, str(ROOT / "docs" / "scripts"))
from doubling import add, counts  # noqa: E402


def train(module, args):
    """Continue `module` for args.steps of the flow loss with sprite weight args.weight; the raw weights."""
    cache = torch.load(f"{args.cache}/cache.pt", weights_only=True)
    appear = Path(f"{args.cache}/cache-appear.pt")
    if appear.is_file() and not args.no_empty:
        cache = merge_caches(cache, torch.load(str(appear), weights_only=True))
    weights = None
    if args.no_empty:  # clips whose animal is there from the first frame to the last
        weights = torch.tensor([float(s["before"][0] is not None and s["after"][0] is not None)
                                for s in cache["specs"]])
    data = LatentClips(cache, 16, 16, caption, weights=weights)
    mix, schedule = PartitionMix(), Schedule(1.0)

    def loss_fn(m, batch, g):
        return flow_matching_loss(m, batch, mix, schedule, g, 0.1, args.weight, args.sigma_max,
                                  args.sigma_boost, tuple(args.sigma_band))

    cfg = TrainConfig(out=args.out, steps=args.steps, lr=args.lr, warmup=10, ema=0.0, seed=0,
                      checkpoint_every=100, desc=f"weight {args.weight:g}",
                      autocast="bfloat16" if args.fast else "", compile=args.fast)
    trainer = Trainer(module, loss_fn, data, cfg)
    trainer.resume()
    if trainer.step < args.steps:
        trainer.run()
    return trainer.raw_module()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="streamdit/assets/streamdit-toy-teacher.safetensors")
    ap.add_argument("--cache", default="runs/cache", help="a run folder holding cache.pt and cache-appear.pt")
    ap.add_argument("--weight", type=float, required=True, help="sprite cells weigh 1 + this")
    ap.add_argument("--sigma-max", type=float, default=1.0, help="weigh sprite cells only on frames this clean")
    ap.add_argument("--sigma-boost", type=float, default=0.0, help="frames with sigma in --sigma-band weigh 1 + this")
    ap.add_argument("--sigma-band", type=float, nargs=2, default=(0.7, 0.95))
    ap.add_argument("--no-empty", action="store_true",
                    help="train on clips that show their animal throughout (no appearing or empty clips)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--checkpoint", help="start from this trainer checkpoint's weights (a recipe's teacher stage)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--cfg", type=float, default=1.5, help="the teacher's guidance when counting")
    ap.add_argument("--micro-steps", type=int, default=4, help="the teacher's Euler steps per chunk when counting")
    ap.add_argument("--shift", type=float, default=1.0, help="the sampling schedule's shift when counting")
    ap.add_argument("--fast", action="store_true", help="train in bfloat16 autocast, compiled (docs/training.md)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_float32_matmul_precision("high")
    bundle = load_checkpoint(args.teacher, dtype=torch.float32)
    module = TextConditionedDiT(bundle.model, bundle.text_encoder).train()
    if args.checkpoint:
        module.load_state_dict(torch.load(args.checkpoint, weights_only=False)["model"])
    if args.steps:
        module = train(module, args)
    module.eval()
    pipe = Pipeline(Bundle(module.dit, module.dit.config, module.text_encoder, bundle.codec, bundle.defaults, {}),
                    torch.device("cpu"), torch.float32)
    scenes = [s for s in all_scenes() if s[0] is not None][:args.scenes]
    total, hits = {}, {}
    with Progress(len(scenes), desc="doubling", unit="scene") as bar:
        for i, scene in enumerate(scenes):
            seed = DEV.clips[i % len(DEV.clips)]
            with torch.no_grad():
                video = pipe.stream(canonical_caption(scene), seed=seed, micro_steps=args.micro_steps,
                                     shift=args.shift, cfg_scale=args.cfg).take(48)
            add(total, counts(video))
            verdict = judge_clip(video)
            for k, ok in verdict.checks(scene).items():
                hits[k] = hits.get(k, 0) + int(ok)
            hits["animal_frames"] = hits.get("animal_frames", 0) + sum(a == scene[0] for a in verdict.animals)
            bar.update(1)
    n = total["frames"]
    print(f"weight {args.weight:g} (sigma <= {args.sigma_max:g}), {args.steps} steps, cfg {args.cfg:g}, "
          f"s {args.micro_steps}, shift {args.shift:g}: "
          f"one {total['one'] / n:.1%}  "
          f"two+ {total['two+'] / n:.1%}  "
          f"none {total['none'] / n:.1%}  judge v2 clips right of {len(scenes)}: {hits}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "doubling.json").write_text(json.dumps({"weight": args.weight, "sigma_max": args.sigma_max,
                                                           "sigma_boost": args.sigma_boost,
                                                           "sigma_band": list(args.sigma_band),
                                                           "no_empty": args.no_empty,
                                                           "cfg": args.cfg, "fast": args.fast,
                                                           "micro_steps": args.micro_steps, "shift": args.shift,
                                                           "steps": args.steps, **total,
                                                           "clips": len(scenes), "judge_v2": hits}) + "\n")


if __name__ == "__main__":
    main()
