"""Where does the shipped teacher lose the animal's shape? (issue 26; dev seeds only)

Two probes on rendered dev clips, judged frame by frame by judge v2 (the animal recognised; one sprite, two or
more, none, as docs/scripts/doubling.py counts them):

- `denoise SIGMA ...`: one teacher call on a rendered 16-frame clip noised to sigma (every frame alike, its
  canonical prompt, no guidance); the clean estimate x0 = x_t - sigma v decoded. 24 scenes of every animal.
  Can the network draw the shape when the noisy input comes from a real clip?
- `sdedit STRENGTH ...`: the rendered clip noised to the strength and sampled down by the teacher as an edit
  with its own prompt (4 micro steps, cfg 1.5, 48 frames): the 12 pig scenes of the doubling table. Strength 1
  is sampling from noise; below it, the source decides more of the frame. Where does the shape form?

    python docs/scripts/shape_probe.py denoise 0 0.2 0.4 0.6 0.8 1
    python docs/scripts/shape_probe.py sdedit 0.75 0.875 0.96875
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "scripts"))

from doubling import add, counts  # noqa: E402

from streamdit.pipeline import Pipeline, default_teacher_path  # noqa: E402
from streamdit.toyworld import all_scenes, canonical_caption, render_clip  # noqa: E402
from streamdit.toyworld.judge_v2 import judge_clip  # noqa: E402
from streamdit.toyworld.seed_sets import DEV  # noqa: E402


def denoise(teacher: Pipeline, scene, seed: int, sigma: float) -> torch.Tensor:
    """The decoded one-call clean estimate of a rendered 16-frame clip noised to sigma."""
    b = teacher.bundle
    truth, _ = render_clip(scene, 16, seed)
    z = b.codec.encode(truth)  # [C, T, h, w]
    if sigma > 0:
        eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed))
        xt = (1 - sigma) * z + sigma * eps
        context = b.text_encoder.encode([canonical_caption(scene)])
        v = b.model(xt[None].float(), torch.full((1, z.shape[1]), sigma * 1000.0), context)[0]
        z = xt - sigma * v
    return b.codec.decode(z).clamp(0, 1)


def sdedit(teacher: Pipeline, scene, seed: int, strength: float) -> torch.Tensor:
    truth, _ = render_clip(scene, 48, seed)
    return teacher.edit(truth, canonical_caption(scene), strength=strength, seed=seed, micro_steps=4,
                        cfg_scale=1.5).take(48)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("probe", choices=("denoise", "sdedit"))
    ap.add_argument("levels", type=float, nargs="+", help="sigmas (denoise) or strengths (sdedit)")
    args = ap.parse_args()
    teacher = Pipeline.load(str(default_teacher_path()))
    if args.probe == "denoise":  # the network called directly, in float32
        teacher.bundle.model.float().eval()
        teacher.bundle.text_encoder.float()
    animals = [s for s in all_scenes() if s[0] is not None]
    scenes = animals[::max(1, len(animals) // 24)][:24] if args.probe == "denoise" else animals[:12]
    run = denoise if args.probe == "denoise" else sdedit
    for level in args.levels:
        total, right, frames = {}, 0, 0
        for i, scene in enumerate(scenes):
            with torch.no_grad():
                video = run(teacher, scene, DEV.clips[i % len(DEV.clips)], level)
            add(total, counts(video))
            verdict = judge_clip(video)
            right += sum(a == scene[0] for a in verdict.animals)
            frames += len(verdict.animals)
        n = total["frames"]
        print(f"{args.probe} {level:g}: animal recognised {right / frames:.1%}  one {total['one'] / n:.1%}  "
              f"two+ {total['two+'] / n:.1%}  none {total['none'] / n:.1%}  ({len(scenes)} scenes, {n} frames)",
              flush=True)


if __name__ == "__main__":
    main()
