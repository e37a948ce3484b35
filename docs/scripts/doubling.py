"""Where does the shipped toy model's second sprite come from? (issue 26, part 1; dev seeds only)

For each source, every frame is judged by judge v2: `one` = exactly one sprite (parts joined across the left/right
wrap, as the world draws a sprite crossing the edge), `two+` = two or more separate sprite-like parts, and
`split` = two or more once the wrap is cut (a sprite crossing the edge, seen as two pieces by a viewer).

Sources: the renders themselves; the renders through the student's codec (encode, decode); the student streaming
(frames 0-47: the cold start's buffer, frames 48-95: streaming proper); the teacher (4 micro steps, cfg 1.5).

    python docs/scripts/doubling.py --json docs/bench/doubling.json
    python docs/scripts/doubling.py --teacher-scenes 0 --by-frame --student FILE --json OUT   # one student, by frame
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streamdit.io.progress import Progress  # noqa: E402
from streamdit.pipeline import Pipeline, default_model_path, default_teacher_path  # noqa: E402
from streamdit.toyworld import all_scenes, canonical_caption, render_clip  # noqa: E402
from streamdit.toyworld.judge_v2 import judge_frames  # noqa: E402
from streamdit.toyworld.seed_sets import DEV  # noqa: E402


def counts(frames: torch.Tensor) -> dict:
    """Frame counts: exactly one sprite, two or more (wrap joined), two or more with the wrap cut."""
    joined = judge_frames(frames).sprite_counts
    median = frames.flatten(1, 2).median(dim=1).values[:, None, None, :]  # [T, 1, 1, 3]
    cut = torch.cat([median.expand(-1, frames.shape[1], 2, -1), frames, median.expand(-1, frames.shape[1], 2, -1)], 2)
    split = judge_frames(cut).sprite_counts
    return {"frames": len(joined), "one": sum(c == 1 for c in joined), "two+": sum(c >= 2 for c in joined),
            "none": sum(c == 0 for c in joined), "split": sum(c >= 2 for c in split)}


def by_frame(frames: int) -> dict[str, list[int]]:
    """Per frame index, how many streams show no sprite, exactly one, two or more (add_by_frame fills it)."""
    return {"none": [0] * frames, "one": [0] * frames, "two+": [0] * frames}


def add_by_frame(per: dict[str, list[int]], video: torch.Tensor) -> None:
    for j, c in enumerate(judge_frames(video).sprite_counts):
        per["none" if c == 0 else "one" if c == 1 else "two+"][j] += 1


def print_by_frame(per: dict[str, list[int]], streams: int, indent: str = "") -> None:
    """Rows of 8 frames: the share of none / one / two+ over the streams."""
    for a in range(0, len(per["one"]), 8):
        print(f"{indent}frames {a:2d}-{a + 7:2d}: " + "  ".join(f"{k} {sum(v[a:a + 8]) / (8 * streams):6.1%}"
                                                         for k, v in per.items()))


def add(total: dict, part: dict) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--teacher-scenes", type=int, default=12)
    ap.add_argument("--json", default="docs/bench/doubling.json")
    ap.add_argument("--student", help="the student file (default: the embedded model)")
    ap.add_argument("--teacher", help="the teacher file (default: the embedded teacher)")
    ap.add_argument("--by-frame", action="store_true",
                    help="also count the student's frames by index (0-95: none / one / two+ per index)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # beside other work: one core
    scenes = [s for s in all_scenes() if s[0] is not None][:args.scenes]
    student = Pipeline.load(args.student or str(default_model_path()))
    teacher = Pipeline.load(args.teacher or str(default_teacher_path())) if args.teacher_scenes else None
    codec = student.bundle.codec
    out = {k: {} for k in ("renders", "renders via codec", "student 0-47", "student 48-95", "teacher 0-47")}
    with Progress(len(scenes) + args.teacher_scenes, desc="doubling", unit="scene") as bar:
        for i, scene in enumerate(scenes):
            seed = DEV.clips[i % len(DEV.clips)]
            truth, _ = render_clip(scene, 48, seed)
            add(out["renders"], counts(truth))
            with torch.no_grad():
                add(out["renders via codec"], counts(codec.decode(codec.encode(truth)).clamp(0, 1)))
            video = student.stream(canonical_caption(scene), seed=seed).take(96)
            add(out["student 0-47"], counts(video[:48]))
            add(out["student 48-95"], counts(video[48:]))
            if args.by_frame:
                add_by_frame(out.setdefault("student by frame", by_frame(96)), video)
            if i < args.teacher_scenes:
                t = teacher.stream(canonical_caption(scene), seed=seed, micro_steps=4, cfg_scale=1.5).take(48)
                add(out["teacher 0-47"], counts(t))
                bar.update(1)
            bar.update(1)
    out = {name: c for name, c in out.items() if c}  # --teacher-scenes 0: no teacher row
    for name, c in out.items():
        if name == "student by frame":
            print_by_frame(c, len(scenes))
            continue
        n = c["frames"]
        print(f"{name:18s} frames {n:5d}  one {c['one'] / n:6.1%}  two+ {c['two+'] / n:6.1%}  "
              f"none {c['none'] / n:6.1%}  split at the edge {c['split'] / n:6.1%}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
