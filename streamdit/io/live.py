"""Readers for live inputs: raw rgb24 frames on a pipe (stdin) and a folder of numbered images that grows while
it is read. Both yield float32 [1, H, W, 3] frames in [0, 1] (wrap them with FrameSource.from_stdin /
from_folder) and hold a bounded number of frames whatever the input does.

When the input outpaces the editor, ``when_behind`` decides:

- ``"throttle"`` (default): nothing is lost; the reader stops reading once ``queue_frames`` frames wait, so a
  pipe's writer blocks (backpressure; ffmpeg then waits, a camera driver drops frames on its side); a folder's
  files are simply read later.
- ``"drop"``: the newest frames win: at most ``queue_frames`` frames wait and older ones are dropped (counted in
  ``dropped`` and reported when the input ends). For stdin a reader thread keeps draining the pipe, so the
  writer never blocks and the frames handed out are at most ``queue_frames`` old; for a folder, files beyond the
  newest ``queue_frames`` complete ones are skipped.

Memory: stdin holds at most ``queue_frames`` decoded frames plus the one being read; a folder holds one frame
(the files wait on disk). When the input stalls (the editor waits ``stall_timeout`` seconds for a frame and none
comes) the input ends as a file does: the frames read so far are edited and the output is finalised.

Time comes from an injectable clock (``now()`` and ``sleep(seconds)``; a clock may also have
``wait(condition, timeout)`` to wake as soon as a frame arrives, as SystemClock does), so tests never wait
on the wall clock.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch

WHEN_BEHIND = ("throttle", "drop")
QUEUE_FRAMES = 8  # frames waiting for the editor, at most (both policies)
STALL_TIMEOUT = 10.0  # seconds the editor waits for a frame before the input counts as ended
SETTLE_SECONDS = 0.1  # a folder's newest file is complete once its size has not changed for this long
POLL_SECONDS = 0.02  # how often a folder is listed (and a clock without wait() is polled) while waiting
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: monotonic seconds; ``wait`` sleeps on a condition so a new frame wakes the editor."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, condition: threading.Condition, timeout: float) -> None:
        condition.wait(timeout)  # the caller holds the condition's lock


def parse_size(text: str | None, option: str = "--input-size") -> tuple[int, int]:
    """'640x480' -> (640, 480): width x height of the raw frames."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m or int(m[1]) < 1 or int(m[2]) < 1:
        raise ValueError(f"{option} {text!r} is not a frame size: give WIDTHxHEIGHT of the raw rgb24 frames, "
                         "e.g. 640x480 (what ffmpeg's -s or the camera's -video_size says)")
    return int(m[1]), int(m[2])


def _check_policy(when_behind: str, queue_frames: int, stall_timeout: float) -> None:
    if when_behind not in WHEN_BEHIND:
        raise ValueError(f"when_behind={when_behind!r}: choose 'throttle' (backpressure, nothing lost) or 'drop' "
                         "(keep the newest frames)")
    if int(queue_frames) != queue_frames or queue_frames < 1:
        raise ValueError(f"queue_frames={queue_frames} must be a whole number >= 1")
    if not stall_timeout > 0:
        raise ValueError(f"stall_timeout={stall_timeout} must be > 0 seconds")


class _FdStream:
    """An OS file descriptor read with os.read: no buffer lock, so a reader thread still blocked in a read at
    interpreter exit cannot hang the shutdown (a BufferedReader's lock can)."""

    def __init__(self, fd: int):
        self.fd = fd
        if sys.platform == "win32":  # stdin is a text-mode descriptor there
            import msvcrt

            msvcrt.setmode(fd, os.O_BINARY)

    def read(self, n: int) -> bytes:
        return os.read(self.fd, n)


def _read_exactly(stream, n: int) -> bytes:
    """n bytes, or fewer only at the end of the stream (short reads of pipes are joined)."""
    parts, got = [], 0
    while got < n:
        data = stream.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class _Reporting:
    """What every live reader reports: counts, the stall, and the notes given when the input ends."""

    name: str
    stall_timeout: float

    def _init_counts(self) -> None:
        self.received = 0  # frames taken from the input (read from the pipe, or complete files seen)
        self.delivered = 0  # frames handed to the editor
        self.dropped = 0  # frames dropped (when_behind="drop")
        self.max_held = 0  # most decoded frames held at once (the bound: queue_frames)
        self.stalled = False  # the input ended because no frame came for stall_timeout seconds

    def _end_notes(self) -> None:
        if self.dropped:
            warnings.warn(f"{self.name}: the editor fell behind the input: dropped {self.dropped} of "
                          f"{self.received} frames (--when-behind drop keeps the newest {self.queue_frames})",
                          stacklevel=3)
        if self.stalled:
            if not self.delivered:
                raise ValueError(f"{self.name}: no frame arrived within {self.stall_timeout:g} s "
                                 "(--stall-timeout); is the input running?")
            warnings.warn(f"{self.name}: no new frame for {self.stall_timeout:g} s (--stall-timeout): the input "
                          f"ended there, after {self.delivered} frames", stacklevel=3)


class RawFrameReader(_Reporting):
    """Raw rgb24 frames (width x height x 3 bytes each) from a pipe, read by a daemon thread into a bounded queue.

    ``stream`` is anything with ``read(n)`` (bytes; b"" at the end), an OS file descriptor, or None for stdin.
    The thread starts at construction: with ``drop`` it drains the pipe from then on, so the newest frames
    wait; with ``throttle`` it reads until ``queue_frames`` frames wait and then stops reading. A partial frame
    at the end of the stream is dropped with a warning. Iterate (once) for float32 [1, H, W, 3] frames.
    """

    def __init__(self, stream=None, width: int = 0, height: int = 0, *, when_behind: str = "throttle",
                 queue_frames: int = QUEUE_FRAMES, stall_timeout: float = STALL_TIMEOUT, clock: Clock | None = None,
                 poll: float = POLL_SECONDS, name: str = "stdin"):
        if width < 1 or height < 1:
            raise ValueError(f"raw frames need a size: width={width}, height={height} (e.g. 640x480)")
        _check_policy(when_behind, queue_frames, stall_timeout)
        if stream is None:
            stream = _FdStream(sys.stdin.fileno())
        elif isinstance(stream, int):
            stream = _FdStream(stream)
        self.stream, self.width, self.height, self.name = stream, int(width), int(height), name
        self.when_behind, self.queue_frames, self.stall_timeout = when_behind, int(queue_frames), float(stall_timeout)
        self.clock, self.poll = clock or SystemClock(), float(poll)
        self.frame_bytes = self.width * self.height * 3
        self._init_counts()
        self.partial_bytes = 0  # bytes of an incomplete last frame (dropped)
        self.waiting_for_room = False  # the thread is holding off reading (throttle, queue full)
        self.finished = False  # the thread has stopped: end of stream, error, or close()
        self._frames: deque[torch.Tensor] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name=f"streamdit {name} reader", daemon=True)
        self._thread.start()

    @property
    def held(self) -> int:
        """Decoded frames waiting for the editor now."""
        return len(self._frames)

    # -- the reader thread -------------------------------------------------------------------------------
    def _pump(self) -> None:
        h, w = self.height, self.width
        try:
            while True:
                with self._cond:
                    while self.when_behind == "throttle" and len(self._frames) >= self.queue_frames \
                            and not self._closed:
                        self.waiting_for_room = True  # backpressure: the pipe is not read
                        self._cond.wait()
                    self.waiting_for_room = False
                    if self._closed:
                        return
                data = _read_exactly(self.stream, self.frame_bytes)
                if len(data) < self.frame_bytes:
                    self.partial_bytes = len(data)
                    return
                frame = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(1, h, w, 3)
                with self._cond:
                    if self._closed:
                        return
                    self.received += 1
                    while len(self._frames) >= self.queue_frames:  # only with drop: throttle waited above
                        self._frames.popleft()
                        self.dropped += 1
                    self._frames.append(frame)
                    self.max_held = max(self.max_held, len(self._frames))
                    self._cond.notify_all()
        except BaseException as exc:  # an unreadable stream: the editor raises it
            self._error = exc
        finally:
            with self._cond:
                self.finished = True
                self._cond.notify_all()

    # -- the editor's side -------------------------------------------------------------------------------
    def _take(self) -> torch.Tensor | None:
        """The oldest waiting frame; None at the end of the input or after stall_timeout seconds without one."""
        start = self.clock.now()
        wait = getattr(self.clock, "wait", None)
        while True:
            with self._cond:
                if self._frames:
                    frame = self._frames.popleft()
                    self.delivered += 1
                    self.waiting_for_room = False  # there is room now: the thread reads again
                    self._cond.notify_all()
                    return frame
                if self._error is not None:
                    raise ValueError(f"{self.name}: reading the input failed: {self._error}") from self._error
                if self.finished:
                    return None
                left = self.stall_timeout - (self.clock.now() - start)
                if left <= 0:
                    self.stalled = True
                    return None
                if wait is not None:
                    wait(self._cond, left)
                    continue
            self.clock.sleep(min(self.poll, left))

    def __iter__(self) -> Iterator[torch.Tensor]:
        try:
            while (frame := self._take()) is not None:
                yield frame.float().div_(255.0)
        finally:
            self.close()
        if self.partial_bytes:
            warnings.warn(f"{self.name}: the input ended inside a frame ({self.partial_bytes} of {self.frame_bytes} "
                          f"bytes of a {self.width}x{self.height} rgb24 frame): that partial frame is dropped; is "
                          "--input-size right?", stacklevel=2)
        self._end_notes()

    def close(self) -> None:
        """Stop reading (a thread blocked inside a read of the pipe ends with the process: it is a daemon)."""
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._cond.notify_all()


def frame_number(path: Path) -> int | None:
    """The number a frame file is ordered by: the last run of digits in its name ('cam2_000013.png' -> 13)."""
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def read_image(path: Path) -> torch.Tensor:
    """One image as float32 [H, W, 3] in [0, 1]: PNG here, anything else (JPEG) through ffmpeg."""
    from .png import read_png
    from .video import read_video

    if path.suffix.lower() == ".png":
        return read_png(path)
    return read_video(path, max_frames=1)[0][0]


class FolderReader(_Reporting):
    """The numbered images of a folder (png, jpg), in numeric order of the last number in their names, read as
    the folder grows. Iterate (once) for float32 [1, H, W, 3] frames.

    Complete files: a file is read once a higher-numbered file exists (its writer has moved on), or once its
    size is non-zero and has not changed for ``settle`` seconds; a file that still fails to decode then is
    retried until a later file appears (and is then an error). Writing each file under another name (say
    ``.tmp``) and renaming it is always safe: other suffixes are ignored. Files numbered at or below a frame
    already read are ignored (they came too late). The reader waits for the next file; after ``stall_timeout``
    seconds without one the input ends. ``drop``: when more than ``queue_frames`` complete files wait, the
    older ones are skipped (counted in ``dropped``); ``throttle``: every file is read, later.
    """

    def __init__(self, folder, *, when_behind: str = "throttle", queue_frames: int = QUEUE_FRAMES,
                 stall_timeout: float = STALL_TIMEOUT, settle: float = SETTLE_SECONDS, clock: Clock | None = None,
                 poll: float = POLL_SECONDS, name: str | None = None):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"input folder {folder} does not exist (or is not a folder)")
        _check_policy(when_behind, queue_frames, stall_timeout)
        self.folder, self.name = folder, name or f"{folder}{os.sep}"
        self.when_behind, self.queue_frames, self.stall_timeout = when_behind, int(queue_frames), float(stall_timeout)
        self.settle, self.clock, self.poll = float(settle), clock or SystemClock(), float(poll)
        self._init_counts()
        self.last: int | None = None  # number of the newest frame read or skipped
        self.read_paths: list[Path] = []  # every file read, in order
        self._sizes: dict[Path, tuple[int, float]] = {}  # newest file: (size, since when)
        self._bad: tuple[Path, int] | None = None  # (file, size) judged complete by its size, not decodable

    def _pending(self) -> list[tuple[int, Path]]:
        found: dict[int, Path] = {}
        for p in self.folder.iterdir():
            if p.suffix.lower() not in IMAGE_SUFFIXES or (n := frame_number(p)) is None:
                continue
            if self.last is not None and n <= self.last:
                continue
            if n in found:
                raise ValueError(f"{self.folder}: {found[n].name} and {p.name} both have frame number {n}; "
                                 "keep one file per number")
            found[n] = p
        return sorted(found.items())

    def _complete(self, pending: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
        """The pending files that are complete: all but the newest, and the newest once its size is stable."""
        if not pending:
            return []
        done = pending[:-1]
        path = pending[-1][1]
        try:
            size = path.stat().st_size
        except OSError:  # renamed or removed under us
            return done
        now = self.clock.now()
        seen = self._sizes.get(path)
        if seen is None or seen[0] != size:
            self._sizes = {path: (size, now)}
        elif size > 0 and now - seen[1] >= self.settle and self._bad != (path, size):
            done = pending
        return done

    def _next(self) -> tuple[int, Path] | None:
        start = self.clock.now()
        while True:
            pending = self._pending()
            complete = self._complete(pending)
            if complete:
                if self.when_behind == "drop" and len(complete) > self.queue_frames:
                    skip = complete[:-self.queue_frames]
                    self.dropped += len(skip)
                    self.received += len(skip)
                    self.last = skip[-1][0]
                    complete = complete[-self.queue_frames:]
                return complete[0]
            if self.clock.now() - start >= self.stall_timeout:
                self.stalled = True
                return None
            self.clock.sleep(self.poll)

    def __iter__(self) -> Iterator[torch.Tensor]:
        while (item := self._next()) is not None:
            n, path = item
            try:
                img = read_image(path)
            except (ValueError, OSError) as exc:
                if any(m > n for m, _ in self._pending()):
                    raise ValueError(f"{self.name}: cannot read frame {path.name}: {exc}") from exc
                size = path.stat().st_size if path.exists() else -1
                self._bad = (path, size)  # complete by its size, yet not decodable: wait for it to change
                continue
            self._bad = None
            self.last = n
            self.read_paths.append(path)
            self.received += 1
            self.delivered += 1
            self.max_held = 1
            yield img[None]
        self._end_notes()
