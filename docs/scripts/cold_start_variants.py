"""The cold start's empty frames (issue 26): how the student's first buffer is made, judged frame by frame.

Every variant streams the student (dev seeds, canonical captions, the 48 scenes of doubling.py) from the same
noise; only the start differs: `uniformG` = the uniform pass with G network calls per band (1 = v12's shipped start
until 2026-12-06), `ramp` = Rolling Forcing's start (the buffer fills chunk by chunk), `teacherG` = the teacher
(G micro steps, cfg 1.5) makes the first buffer and the student streams on from it. Judge v2 counts sprites per
frame; rows of 8 frames give none / one / two+.

    python docs/scripts/cold_start_variants.py --variants uniform1,uniform4,ramp,teacher4 --frames 96 --json OUT
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from doubling import add_by_frame, by_frame, print_by_frame  # noqa: E402  (docs/scripts beside this one)

from streamdit.io.progress import Progress  # noqa: E402
from streamdit.pipeline import Pipeline, default_model_path, default_teacher_path  # noqa: E402
from streamdit.toyworld import all_scenes, canonical_caption  # noqa: E402
from streamdit.toyworld.seed_sets import DEV  # noqa: E402


def open_variant(name: str, student: Pipeline, teacher: Pipeline | None, prompt: str, seed: int):
    """The student's stream with the start `name` (see the module docstring)."""
    if name == "ramp":
        return student.stream(prompt, seed=seed, cold_start="ramp")
    steps = int(name.removeprefix("uniform").removeprefix("teacher"))
    if name.startswith("uniform"):
        return student.stream(prompt, seed=seed, cold_micro_steps=steps)
    s = student.stream(prompt, seed=seed)
    t = teacher.stream(prompt, seed=seed, micro_steps=steps, cfg_scale=1.5)

    def fill():  # the student's own first noise, denoised by the teacher's uniform pass; a diagnostic's shortcut
        noise = s._noise(s.partition.buffer_frames)
        t.buffer.cold_start(noise, t._velocity)
        b = s.buffer
        b.latents, b.micro, b.present, b.first_pending = t.buffer.latents.clone(), 0, s.partition.chunks, False
        return noise[:, :0]

    s._fill = fill
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="uniform1,uniform2,uniform4,uniform8,ramp,teacher4")
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--student", help="the student file (default: the embedded model)")
    ap.add_argument("--teacher", help="the teacher file (default: the embedded teacher)")
    ap.add_argument("--json", default="docs/bench/cold-start-variants.json")
    args = ap.parse_args()
    variants = args.variants.split(",")
    scenes = [s for s in all_scenes() if s[0] is not None][:args.scenes]
    student = Pipeline.load(args.student or str(default_model_path()))
    teacher = (Pipeline.load(args.teacher or str(default_teacher_path()))
               if any(v.startswith("teacher") for v in variants) else None)
    out = {}
    with Progress(len(variants) * len(scenes), desc="cold starts", unit="stream") as bar:
        for name in variants:
            per = by_frame(args.frames)
            start = time.perf_counter()
            for i, scene in enumerate(scenes):
                add_by_frame(per, open_variant(name, student, teacher, canonical_caption(scene),
                                               DEV.clips[i % len(DEV.clips)]).take(args.frames))
                bar.update(1)
            out[name] = {"by_frame": per, "seconds": time.perf_counter() - start}
    n = len(scenes)
    for name, r in out.items():
        per = r["by_frame"]
        print(f"{name}:")
        print_by_frame(per, n, "  ")
        for lo, hi in ((0, 48), (48, args.frames)):
            if hi > lo:
                print(f"  frames {lo}-{hi - 1}: " + "  ".join(f"{k} {sum(v[lo:hi]) / ((hi - lo) * n):6.1%}"
                                                        for k, v in per.items()))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"scenes": n, "frames": args.frames, "variants": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
