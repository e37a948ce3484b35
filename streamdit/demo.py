"""A short showcase of the default model: several prompts and prompt changes, to an mp4 and a frame strip PNG."""
from __future__ import annotations

from pathlib import Path

import torch

from .io.png import write_png
from .io.video import VideoWriter

SHOWCASE = ("0s: a pig walking right on grass\n"
            "3s: a cat walking right on grass\n"
            "6s: a duck jumping on snow\n"
            "9s: a dog walking left at night\n"
            "12s: a cat walking left by the sea")


def frame_strip(frames: list[torch.Tensor], scale: int = 2, gap: int = 2) -> torch.Tensor:
    """Frames [H, W, 3] side by side, each scaled up (nearest) by `scale`, white gaps between them."""
    tiles = [f.repeat_interleave(scale, 0).repeat_interleave(scale, 1) for f in frames]
    h = tiles[0].shape[0]
    sep = torch.ones(h, gap, 3)
    parts = []
    for i, t in enumerate(tiles):
        parts += [sep] if i else []
        parts.append(t)
    return torch.cat(parts, dim=1)


def run_demo(stream, seconds: float, out: str | Path | None, strip: str | Path | None, every: float = 1.0,
             on_frames=None) -> dict:
    """Stream `seconds` of video; write the mp4 as frames arrive, and one frame per `every` seconds to the strip."""
    fps = stream.config.fps
    total, step = int(round(seconds * fps)), max(1, int(round(every * fps)))
    picked, done = [], 0
    writer = VideoWriter(out, fps) if out else None
    try:
        for frames in stream.frames(total):
            for j in range(frames.shape[0]):
                if (done + j - step // 2) % step == 0:  # mid-second frames: away from the prompt changes
                    picked.append(frames[j].clone())
            done += frames.shape[0]
            if writer is not None:
                writer.write(frames)
            if on_frames is not None:
                on_frames(frames)
    finally:
        if writer is not None:
            writer.close()
    if strip and picked:
        Path(strip).parent.mkdir(parents=True, exist_ok=True)
        write_png(strip, frame_strip(picked))
    return {"frames": done, "strip_frames": len(picked)}
