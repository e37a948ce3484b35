"""Source frames for video-to-video editing, one interface for a video file, a batch of frames, or a live
generator (anything iterable that yields frames as they happen, like a webcam): raw frames on a pipe
(from_stdin) and a folder of numbered images that grows while it is read (from_folder) are live readers with
bounded buffering (streamdit/io/live.py).

A FrameSource yields float32 [t, H, W, 3] chunks in [0, 1] at the model's size: frames of another size
are resized (never cropped) with a note saying so.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F


class SourceError(ValueError):
    """A source that cannot be edited (no frames, mixed sizes, not frames at all)."""


def _as_frames(x, where: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dtype == torch.uint8:
        t = t.float() / 255
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise SourceError(f"{where}: expected RGB frames [T, H, W, 3] (or one [H, W, 3]), got shape "
                          f"{tuple(t.shape)}")
    return t.float().clamp(0, 1)


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[T, H, W, 3] -> [T, height, width, 3]; area-averaged when shrinking, bilinear when growing."""
    if frames.shape[1:3] == (height, width):
        return frames
    x = frames.permute(0, 3, 1, 2)
    shrink = height <= frames.shape[1] and width <= frames.shape[2]
    x = F.interpolate(x, size=(height, width), mode="area" if shrink else "bilinear",
                      align_corners=None if shrink else False)
    return x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


class FrameSource:
    """Frames to edit. Build with from_path, from_frames or from_iterable; iterate for sized chunks."""

    def __init__(self, chunks: Iterable, fps: float, *, length: int | None = None, live: bool = False,
                 name: str = "source"):
        self._chunks, self.fps, self.length, self.live, self.name = chunks, float(fps), length, live, name
        self.path: str | None = None  # the video file read (its audio can go with the edit), None for other sources
        self.size: tuple[int, int] | None = None  # (H, W) of the source, known after the first frame
        self.reader = None  # a live reader (RawFrameReader, FolderReader): its counts (delivered, dropped, ...)
        self.target: tuple[int, int] | None = None

    @classmethod
    def from_path(cls, path: str | Path, chunk_frames: int = 16) -> FrameSource:
        from ..io.video import iter_video, probe_video

        path = str(path)
        if not Path(path).is_file():
            raise FileNotFoundError(f"source video {path} does not exist")
        try:
            info = probe_video(path)
        except Exception as exc:  # imageio-ffmpeg says why; keep its words
            raise SourceError(f"cannot read the source video {path}: {exc}") from exc
        frames = info.get("frames")
        if frames == 0:
            raise SourceError(f"source video {path} has no frames")
        source = cls(iter_video(path, chunk_frames), info["fps"], length=frames, name=path)
        source.path = path
        return source

    @classmethod
    def from_frames(cls, frames, fps: float, name: str = "frames") -> FrameSource:
        """A tensor [T, H, W, 3] (float in [0, 1] or uint8), or a list of frames of one size."""
        if isinstance(frames, (list, tuple)):
            if not frames:
                raise SourceError(f"{name}: the list of source frames is empty")
            items = [_as_frames(f, f"{name}[{i}]") for i, f in enumerate(frames)]
            sizes = {tuple(f.shape[1:3]) for f in items}
            if len(sizes) > 1:
                first = tuple(items[0].shape[1:3])
                bad = next(i for i, f in enumerate(items) if tuple(f.shape[1:3]) != first)
                raise SourceError(f"{name}: frames differ in size ({items[0].shape[2]}x{items[0].shape[1]} at 0, "
                                  f"{items[bad].shape[2]}x{items[bad].shape[1]} at {bad}); resize them to one size")
            frames = torch.cat(items)
        frames = _as_frames(frames, name)
        if frames.shape[0] == 0:
            raise SourceError(f"{name}: there are no source frames (a batch of 0 frames)")
        return cls([frames], fps, length=frames.shape[0], name=name)

    @classmethod
    def from_iterable(cls, frames: Iterable, fps: float, name: str = "live source") -> FrameSource:
        """A live source: frames (or chunks of frames) are pulled only when the stream needs them."""
        return cls(frames, fps, live=True, name=name)

    @classmethod
    def from_stdin(cls, width: int, height: int, fps: float, *, stream=None, when_behind: str = "throttle",
                   queue_frames: int | None = None, stall_timeout: float | None = None, clock=None,
                   name: str = "stdin") -> FrameSource:
        """A live source of raw rgb24 frames (width x height) on stdin, or on ``stream`` (anything with read(n),
        or a file descriptor). ``when_behind``: "throttle" (backpressure, nothing lost) or "drop" (the newest
        ``queue_frames`` frames wait, older ones are dropped); the input ends at the end of the stream or after
        ``stall_timeout`` seconds without a frame. See streamdit/io/live.py for the bounds."""
        from ..io import live

        if not fps > 0:
            raise SourceError(f"{name}: fps={fps} must be > 0 (raw frames carry no frame rate: give it)")
        reader = live.RawFrameReader(stream, width, height, when_behind=when_behind,
                                     queue_frames=live.QUEUE_FRAMES if queue_frames is None else queue_frames,
                                     stall_timeout=live.STALL_TIMEOUT if stall_timeout is None else stall_timeout,
                                     clock=clock, name=name)
        return cls._live(reader, fps, name)

    @classmethod
    def from_folder(cls, folder: str | Path, fps: float, *, when_behind: str = "throttle",
                    queue_frames: int | None = None, stall_timeout: float | None = None, settle: float | None = None,
                    clock=None) -> FrameSource:
        """A live source of the numbered images (png, jpg) of a folder that may still be growing, read in numeric
        order as files complete; ends after ``stall_timeout`` seconds without a new file. See
        streamdit/io/live.py (FolderReader) for when a file counts as complete."""
        from ..io import live

        if not fps > 0:
            raise SourceError(f"{folder}: fps={fps} must be > 0 (images carry no frame rate: give it)")
        reader = live.FolderReader(folder, when_behind=when_behind,
                                   queue_frames=live.QUEUE_FRAMES if queue_frames is None else queue_frames,
                                   stall_timeout=live.STALL_TIMEOUT if stall_timeout is None else stall_timeout,
                                   settle=live.SETTLE_SECONDS if settle is None else settle, clock=clock)
        return cls._live(reader, fps, reader.name)

    @classmethod
    def _live(cls, reader, fps: float, name: str) -> FrameSource:
        source = cls(reader, fps, live=True, name=name)
        source.reader = reader
        return source

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Chunks [t, H, W, 3] at the target size (set by the stream); a size change mid-way is an error."""
        count = 0
        for i, chunk in enumerate(self._chunks):
            chunk = _as_frames(chunk, f"{self.name} chunk {i}")
            size = tuple(chunk.shape[1:3])
            if self.size is None:
                self.size = size
                if self.target is not None and size != self.target:
                    warnings.warn(f"{self.name}: frames are {size[1]}x{size[0]}, the model makes "
                                  f"{self.target[1]}x{self.target[0]}: resizing (not cropping); the output is "
                                  f"{self.target[1]}x{self.target[0]}", stacklevel=2)
            elif size != self.size:
                raise SourceError(f"{self.name}: frame {count} is {size[1]}x{size[0]} but earlier frames were "
                                  f"{self.size[1]}x{self.size[0]}; all frames of a source must have one size")
            count += chunk.shape[0]
            yield chunk if self.target is None else resize_frames(chunk, *self.target)
        if count == 0:
            raise SourceError(f"{self.name}: there are no source frames")
