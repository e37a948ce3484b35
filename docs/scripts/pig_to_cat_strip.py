"""docs/img/pig-to-cat.png: the bundled pig video (top row) and its edit into a cat (bottom row).

    PYTHONPATH=. python docs/scripts/pig_to_cat_strip.py [--strength S] [--cfg 2 --negative TEXT] [--out PNG]

One frame every half second, 8 frames, scaled x2, the same settings as the bundled pig-to-cat workflow.
"""
import argparse

import torch

from streamdit.demo import frame_strip
from streamdit.io.png import write_png
from streamdit.io.video import read_video
from streamdit.pipeline import Pipeline

SOURCE = "workflows/media/pig_walking_right_on_grass.mp4"

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--strength", type=float, default=None, help="default: the edit's default (0.875)")
ap.add_argument("--cfg", type=float, default=1.0)
ap.add_argument("--negative", default="")
ap.add_argument("--prompt", default="a cat walking right on grass")
ap.add_argument("--out", default="docs/img/pig-to-cat.png")
args = ap.parse_args()
src, fps = read_video(SOURCE)
src = src.float() / 255 if src.dtype == torch.uint8 else src
stream = Pipeline.load().edit(src, args.prompt, strength=args.strength, seed=0, cfg_scale=args.cfg,
                              negative_prompt=args.negative)
out = torch.cat(list(stream.frames()))
step = int(fps) // 2
idx = list(range(step // 2, src.shape[0], step))[:8]
gap = torch.ones(4, 1, 3)
top, bottom = frame_strip([src[i] for i in idx], scale=2), frame_strip([out[i] for i in idx], scale=2)
write_png(args.out, torch.cat([top, gap.expand(-1, top.shape[1], -1), bottom], 0))
print(f"wrote {args.out}: frames {idx} of {src.shape[0]}, strength {stream.strength:g}, cfg {args.cfg:g}")
