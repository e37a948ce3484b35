"""Why does judge v2 call no jump a jump? The hop facts of the jumping dev scenes, source by source (dev seeds only).

For each of the 16 jumping dev scenes (seeds as the adherence eval's), judge v2's motion facts of a 48-frame piece:
the hop fit (height px, period frames, share of the vertical variance explained), the complete hops of the world's
height (`rises`; a jump needs >= 2 and a fit >= 0.6), the horizontal speed, the frames with the animal and with
one sprite, and the motion verdict. Sources: the renders, the renders through the student's codec, the student's
frames 0-47 (the cold start: the eval's clip) and 48-95 (streaming proper), optionally the teacher (4 micro steps,
cfg 1.5, frames 0-47). A summary line per source gives the medians.

    python docs/scripts/jump_facts.py --json docs/bench/jump-facts.json [--student FILE] [--teacher FILE]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streamdit.io.progress import Progress  # noqa: E402
from streamdit.pipeline import Pipeline, default_model_path  # noqa: E402
from streamdit.toyworld import all_scenes, canonical_caption, render_clip  # noqa: E402
from streamdit.toyworld.judge_v2 import judge_clip  # noqa: E402
from streamdit.toyworld.seed_sets import DEV  # noqa: E402

FACTS = ("hop_height", "hop_period", "hop_fit", "rises", "speed")


def facts(frames: torch.Tensor) -> dict:
    """Judge v2's verdict and hop facts of one piece [T, H, W, 3]."""
    v = judge_clip(frames)
    out = {k: float(getattr(v, k)) for k in FACTS}
    out.update(motion=v.motion, animal=v.animal, animal_frames=sum(a is not None for a in v.animals),
               one_sprite_frames=sum(c == 1 for c in v.sprite_counts))
    return out


def summary(rows: list[dict]) -> str:
    def med(values) -> float:
        values = [v for v in values if not math.isnan(v)]
        return statistics.median(values) if values else float("nan")
    jumps = sum(r["motion"] == "jump" for r in rows)
    fit = sum(r["hop_fit"] >= 0.6 for r in rows)
    two = sum(r["rises"] >= 2 for r in rows)
    return (f"jump {jumps:2d}/{len(rows)}  fit>=0.6 {fit:2d}  rises>=2 {two:2d}  "
            f"median height {med(r['hop_height'] for r in rows):5.2f} px  "
            f"period {med(r['hop_period'] for r in rows):5.2f}  fit {med(r['hop_fit'] for r in rows):.2f}"
            f"  |speed| {med(abs(r['speed']) for r in rows):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default="docs/bench/jump-facts.json")
    ap.add_argument("--student", help="the student file (default: the embedded model)")
    ap.add_argument("--teacher", help="a teacher file to add (4 micro steps, cfg 1.5); none by default")
    args = ap.parse_args()
    scenes = all_scenes()
    jumping = [(i, s) for i, s in enumerate(scenes) if s[1] == "jumping"]
    student = Pipeline.load(args.student or str(default_model_path()))
    teacher = Pipeline.load(args.teacher) if args.teacher else None
    codec = student.bundle.codec
    out: dict[str, list[dict]] = {}
    with Progress(len(jumping), desc="jump facts", unit="scene") as bar:
        for i, scene in jumping:
            seed = DEV.clips[i]  # the adherence eval's seed for scene i (one clip per scene)
            truth, _ = render_clip(scene, 96, seed)
            with torch.no_grad():
                via = codec.decode(codec.encode(truth[:48])).clamp(0, 1)
            video = student.stream(canonical_caption(scene), seed=seed).take(96)
            rows = {"renders 0-47": truth[:48], "renders 48-95": truth[48:], "renders via codec": via,
                    "student 0-47": video[:48], "student 48-95": video[48:]}
            if teacher is not None:
                rows["teacher 0-47"] = teacher.stream(canonical_caption(scene), seed=seed, micro_steps=4,
                                                      cfg_scale=1.5).take(48)
            for name, frames in rows.items():
                out.setdefault(name, []).append({"scene": list(scene), "seed": seed, **facts(frames)})
            bar.update(1)
    for name, rs in out.items():
        print(f"{name:18s} {summary(rs)}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
