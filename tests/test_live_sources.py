"""Live inputs for editing (streamdit/io/live.py): raw frames on a pipe and a growing folder of numbered images,
with bounded buffering (throttle / drop), the stall timeout, and the edit command on stdin and on a folder.

Time is an injected fake clock: it only moves when the code under test (or the test) sleeps on it, and scheduled
writes happen at fake times. After every step the stdin reader thread is allowed to settle (to block on the empty
pipe, on a full queue, or to finish), so the counts are exact; no test asserts anything about wall-clock time."""
import heapq
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdit.io.live import FolderReader, RawFrameReader, parse_size
from streamdit.io.png import PngDirWriter, write_png
from streamdit.io.video import probe_video, read_video
from streamdit.sampling.sources import FrameSource

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a cat walking right on grass"
H = W = 4
FRAME = H * W * 3


class FakeClock:
    """now() is fake seconds; sleep(s) moves time to now + s, running the writes scheduled on the way."""

    def __init__(self):
        self.t, self._events, self._seq = 0.0, [], 0
        self.settle = lambda: None

    def now(self) -> float:
        return self.t

    def at(self, t: float, fn) -> None:
        heapq.heappush(self._events, (t, self._seq, fn))
        self._seq += 1

    def sleep(self, seconds: float) -> None:
        end = self.t + seconds
        self.settle()
        while self._events and self._events[0][0] <= end:
            t, _, fn = heapq.heappop(self._events)
            self.t = max(self.t, t)
            fn()
            self.settle()
        self.t = end
        self.settle()


class FakeStdin:
    """A pipe the test controls: write() adds bytes, read(n) blocks until there are some (or EOF)."""

    def __init__(self):
        self.buf, self.eof, self.starved = bytearray(), False, False
        self.most_unread = 0  # the largest backlog the writer had (what a real pipe would block on)
        self._cv = threading.Condition()

    def write(self, data: bytes) -> None:
        with self._cv:
            self.buf += data
            self.most_unread = max(self.most_unread, len(self.buf))
            self.starved = False
            self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self.eof, self.starved = True, False
            self._cv.notify_all()

    def read(self, n: int) -> bytes:
        with self._cv:
            while not self.buf and not self.eof:
                self.starved = True
                self._cv.wait()
            data = bytes(self.buf[:n])
            del self.buf[:n]
            return data

    @property
    def unread_frames(self) -> int:
        return len(self.buf) // FRAME


def frames(*idx) -> bytes:
    """Raw 4x4 rgb24 frames whose every byte is the frame's index."""
    return b"".join(bytes([i]) * FRAME for i in idx)


def index(frame: torch.Tensor) -> int:
    assert frame.dtype == torch.float32 and frame.shape == (1, H, W, 3)
    assert 0 <= frame.min() and frame.max() <= 1
    return round(float(frame[0, 0, 0, 0]) * 255)


def settled(reader: RawFrameReader, stdin: FakeStdin):
    """Wait until the reader thread has done all it can: blocked on the empty pipe or a full queue, or finished."""
    def settle():
        deadline = time.monotonic() + 30  # a guard against a hang, not a measurement
        while not (stdin.starved or reader.waiting_for_room or reader.finished):
            assert time.monotonic() < deadline, "the reader thread did not settle"
            time.sleep(0.0005)
    return settle


def stdin_reader(stdin, clock, **kw) -> RawFrameReader:
    reader = RawFrameReader(stdin, W, H, clock=clock, poll=1 / 64, **kw)
    clock.settle = settled(reader, stdin)
    clock.settle()
    return reader


# -- raw frames on a pipe -------------------------------------------------------------------------------------
def test_throttle_stops_reading_when_the_queue_is_full():
    stdin, clock = FakeStdin(), FakeClock()
    reader = stdin_reader(stdin, clock, when_behind="throttle", queue_frames=4)
    stdin.write(frames(*range(20)))
    stdin.close()
    clock.settle()
    # backpressure: 4 frames read, the other 16 still in the pipe (a real writer blocks on them)
    assert (reader.received, reader.held, stdin.unread_frames) == (4, 4, 16) and reader.waiting_for_room
    got = []
    for f in reader:
        got.append(index(f))
        assert reader.held <= 4
        clock.sleep(0.125)
    assert got == list(range(20)) and reader.dropped == 0 and reader.max_held == 4


def test_drop_keeps_the_newest_frames_and_counts_the_rest():
    stdin, clock = FakeStdin(), FakeClock()
    reader = stdin_reader(stdin, clock, when_behind="drop", queue_frames=4)
    stdin.write(frames(*range(20)))
    stdin.close()
    clock.settle()
    assert (reader.received, reader.held, reader.dropped, stdin.unread_frames) == (20, 4, 16, 0)
    with pytest.warns(UserWarning, match=r"dropped 16 of 20 frames \(--when-behind drop keeps the newest 4\)"):
        got = [index(f) for f in reader]
    assert got == [16, 17, 18, 19] and reader.max_held == 4


def _fast_input(clock, stdin, n=40):
    """Frame k is written at (k + 1)/32 s (32 fps), the pipe closes at (n + 1)/32 s."""
    for k in range(n):
        clock.at((k + 1) / 32, lambda k=k: stdin.write(frames(k)))
    clock.at((n + 1) / 32, stdin.close)


def _consume(reader, clock, seconds_per_frame):
    got, backlog = [], []
    for f in reader:
        got.append(index(f))
        backlog.append(reader.held)  # frames waiting in the queue
        clock.sleep(seconds_per_frame)
    return got, backlog


def test_input_faster_than_the_edit_throttle_loses_nothing():
    stdin, clock = FakeStdin(), FakeClock()
    reader = stdin_reader(stdin, clock, when_behind="throttle", queue_frames=4)
    _fast_input(clock, stdin)
    got, backlog = _consume(reader, clock, 1 / 8)  # the edit takes a frame per 1/8 s: 4x slower than the input
    assert got == list(range(40)) and reader.dropped == 0
    assert max(backlog) <= 4 and reader.max_held == 4
    # 10 frames taken and 4 held when the last frame is written at 40/32 s: 26 frames wait in the pipe
    assert stdin.most_unread == 26 * FRAME


def test_input_faster_than_the_edit_drop_hands_out_the_newest():
    stdin, clock = FakeStdin(), FakeClock()
    reader = stdin_reader(stdin, clock, when_behind="drop", queue_frames=4)
    _fast_input(clock, stdin)
    with pytest.warns(UserWarning, match="dropped 26 of 40 frames"):
        got, backlog = _consume(reader, clock, 1 / 8)
    # every 1/8 s 4 frames arrive and one is taken: the queue holds the newest 4, 3 are dropped per frame taken
    assert got == [0, 1, 5, 9, 13, 17, 21, 25, 29, 33, 36, 37, 38, 39]
    assert reader.dropped == 26 and reader.received == 40 and reader.max_held == 4 and max(backlog) <= 4
    assert stdin.most_unread == FRAME  # the pipe is drained as each frame comes: its writer never waits


@pytest.mark.parametrize("policy", ["throttle", "drop"])
def test_input_slower_than_the_edit_waits_for_every_frame(policy):
    stdin, clock = FakeStdin(), FakeClock()
    reader = stdin_reader(stdin, clock, when_behind=policy, queue_frames=4, stall_timeout=1.0)
    for k in range(10):  # 8 fps in; the edit takes 1/32 s a frame
        clock.at((k + 1) / 8, lambda k=k: stdin.write(frames(k)))
    clock.at(11 / 8, stdin.close)
    got, backlog = _consume(reader, clock, 1 / 32)
    assert got == list(range(10)) and reader.dropped == 0 and reader.max_held == 1 and not reader.stalled


def test_a_stalled_pipe_ends_at_the_stall_timeout():
    stdin, clock = FakeStdin(), FakeClock()
    reader = stdin_reader(stdin, clock, stall_timeout=2.0)
    stdin.write(frames(0, 1, 2))  # and then nothing, the pipe stays open
    clock.settle()
    it = iter(reader)
    got = [index(next(it)) for _ in range(3)]
    waited_from = clock.now()
    with pytest.warns(UserWarning, match=r"no new frame for 2 s \(--stall-timeout\): the input ended there, "
                                         "after 3 frames"):
        assert next(it, None) is None
    assert got == [0, 1, 2] and reader.stalled and clock.now() - waited_from == 2.0
    stdin.close()


def test_a_pipe_that_never_sends_a_frame_says_so():
    stdin, clock = FakeStdin(), FakeClock()
    reader = stdin_reader(stdin, clock, stall_timeout=0.5)
    with pytest.raises(ValueError, match=r"no frame arrived within 0.5 s \(--stall-timeout\)"):
        list(reader)
    assert clock.now() == 0.5
    stdin.close()


def test_a_partial_frame_at_the_end_is_dropped_with_a_warning():
    stdin, clock = FakeStdin(), FakeClock()
    reader = stdin_reader(stdin, clock)
    stdin.write(frames(0, 1) + b"\x07" * (FRAME // 2))
    stdin.close()
    with pytest.warns(UserWarning, match=rf"ended inside a frame \({FRAME // 2} of {FRAME} bytes of a 4x4 rgb24 "
                                         r"frame\): that partial frame is dropped; is --input-size right\?"):
        got = [index(f) for f in reader]
    assert got == [0, 1]


def test_a_failing_pipe_is_an_error_and_bad_settings_say_what_to_pass():
    class Broken:
        def read(self, n):
            raise OSError("Input/output error")

    with pytest.raises(ValueError, match="stdin: reading the input failed: Input/output error"):
        list(RawFrameReader(Broken(), W, H, clock=FakeClock()))
    with pytest.raises(ValueError, match="choose 'throttle'"):
        RawFrameReader(FakeStdin(), W, H, when_behind="lag")
    with pytest.raises(ValueError, match="queue_frames=0"):
        RawFrameReader(FakeStdin(), W, H, queue_frames=0)
    assert parse_size("640x480") == (640, 480) and parse_size(" 64X32 ") == (64, 32)
    for bad in ("640", "0x480", "640x", "", None):
        with pytest.raises(ValueError, match="give WIDTHxHEIGHT of the raw rgb24 frames, e.g. 640x480"):
            parse_size(bad)


def test_a_real_pipe_through_the_system_clock():
    r, w = os.pipe()
    data = frames(*range(12))

    def writer():
        with os.fdopen(w, "wb") as f:
            f.write(data)

    t = threading.Thread(target=writer)
    t.start()
    src = FrameSource.from_stdin(W, H, 8.0, stream=r, queue_frames=3)
    got = [index(f) for f in src]
    t.join()
    os.close(r)
    assert got == list(range(12)) and src.live and src.reader.max_held <= 3


def test_editing_a_pipe_equals_editing_the_same_frames_live(tiny_pipeline):
    stdin = FakeStdin()
    raw = torch.randint(0, 256, (21, 16, 16, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    stdin.write(raw.numpy().tobytes())
    stdin.close()
    src = FrameSource.from_stdin(16, 16, 8.0, stream=stdin, queue_frames=2)
    assert src.live and src.length is None
    es = tiny_pipeline.edit(src, PROMPT, strength=0.5, seed=2)
    assert not es.lookahead
    out = es.take(40)
    ref = tiny_pipeline.edit(FrameSource.from_iterable(iter(raw), 8.0), PROMPT, strength=0.5, seed=2).take(40)
    assert out.shape == (21, 16, 16, 3) and torch.equal(out, ref)
    assert src.reader.delivered == 21 and src.reader.max_held <= 2


# -- a growing folder -------------------------------------------------------------------------------------------
def image(i: int, size: int = H) -> torch.Tensor:
    return torch.full((size, size, 3), i / 255)


def write_frames(folder: Path, numbers, name="frame_{}.png"):
    for i in numbers:
        write_png(folder / name.format(i), image(i))


def folder_reader(folder, clock, **kw) -> FolderReader:
    return FolderReader(folder, clock=clock, poll=1 / 64, settle=1 / 16, **kw)


def test_a_growing_folder_is_read_in_numeric_order(tmp_path):
    clock = FakeClock()
    write_frames(tmp_path, range(5))  # frame_0 ... frame_4; unpadded: frame_10 sorts before frame_9 as text
    (tmp_path / "notes.txt").write_text("not a frame")
    write_png(tmp_path / "cover.png", image(99))  # no number: ignored
    reader = folder_reader(tmp_path, clock, stall_timeout=2.0)
    it = iter(reader)
    first = [index(next(it)) for _ in range(3)]
    assert first == [0, 1, 2] and clock.now() == 0  # a later file exists: no wait
    clock.at(1.0, lambda: write_frames(tmp_path, range(5, 13)))
    clock.at(2.0, lambda: write_frames(tmp_path, range(13, 16)))
    with pytest.warns(UserWarning, match="no new frame for 2 s"):
        rest = [index(f) for f in it]
    assert first + rest == list(range(16))
    assert [p.name for p in reader.read_paths] == [f"frame_{i}.png" for i in range(16)]
    # the newest file (15, written at 2 s) is complete once its size held for 1/16 s, then 2 s without a file
    assert reader.stalled and clock.now() == 2.0 + 1 / 16 + 2.0
    assert (reader.delivered, reader.dropped, reader.max_held) == (16, 0, 1)


def test_a_folder_that_stops_growing_ends_at_the_timeout(tmp_path):
    clock = FakeClock()
    write_frames(tmp_path, range(3), "cam1_{:05d}.png")
    reader = folder_reader(tmp_path, clock, stall_timeout=1.5)
    it = iter(reader)
    got = [index(next(it)) for _ in range(3)]
    waited_from = clock.now()
    with pytest.warns(UserWarning, match=r"no new frame for 1.5 s \(--stall-timeout\)"):
        assert next(it, None) is None
    assert got == [0, 1, 2] and clock.now() - waited_from == 1.5


def test_a_half_written_file_is_read_once_complete(tmp_path):
    clock = FakeClock()
    write_frames(tmp_path, [0, 1])
    whole = (tmp_path / "frame_1.png").read_bytes()
    (tmp_path / "frame_1.png").write_bytes(whole[:len(whole) // 2])  # the writer is still at it
    clock.at(0.5, lambda: (tmp_path / "frame_1.png").write_bytes(whole))
    reader = folder_reader(tmp_path, clock, stall_timeout=1.0)
    it = iter(reader)
    assert index(next(it)) == 0 and clock.now() == 0
    assert index(next(it)) == 1 and clock.now() >= 0.5  # the truncated file was not handed out


def test_a_broken_file_with_later_files_is_an_error(tmp_path):
    write_frames(tmp_path, [0, 2])
    (tmp_path / "frame_1.png").write_bytes(b"\x89PNG junk")
    with pytest.raises(ValueError, match="cannot read frame frame_1.png"):
        list(folder_reader(tmp_path, FakeClock()))


@pytest.mark.parametrize("policy", ["throttle", "drop"])
def test_a_folder_ahead_of_the_edit(tmp_path, policy):
    write_frames(tmp_path, range(20))
    reader = folder_reader(tmp_path, FakeClock(), when_behind=policy, queue_frames=4, stall_timeout=0.25)
    with pytest.warns(UserWarning) as notes:
        got = [index(f) for f in reader]
    if policy == "drop":
        # at the first look 0..18 are complete (frame 19 has no later file and its size has not held for the
        # settle time yet): the newest 4 complete ones, 15..18, are kept; 19 follows once complete
        assert got == [15, 16, 17, 18, 19] and reader.dropped == 15
        assert "dropped 15 of 20 frames (--when-behind drop keeps the newest 4)" in str(notes[0].message)
    else:
        assert got == list(range(20)) and reader.dropped == 0
    assert "no new frame for 0.25 s" in str(notes[-1].message)
    assert reader.max_held == 1


def test_folder_jpegs_and_bad_folders(tmp_path):
    import imageio_ffmpeg

    gray = np.full((8, 8, 3), 128, np.uint8)
    for i in (1, 2):
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                        "-s", "8x8", "-i", "-", "-y", str(tmp_path / f"{i:03d}.jpg")], input=gray.tobytes(),
                       check=True)
    src = FrameSource.from_folder(tmp_path, 8.0, stall_timeout=0.1, settle=0.0)  # the system clock
    with pytest.warns(UserWarning, match="no new frame for 0.1 s"):
        out = list(src)
    assert len(out) == 2 and out[0].shape == (1, 8, 8, 3) and abs(float(out[0].mean()) - 128 / 255) < 0.03
    write_png(tmp_path / "2.png", image(2))
    with pytest.raises(ValueError, match="002.jpg and 2.png both have frame number 2|2.png and 002.jpg both"):
        list(folder_reader(tmp_path, FakeClock()))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FrameSource.from_folder(tmp_path / "nope", 8.0)


# -- the edit command -------------------------------------------------------------------------------------------
def _edit(args, **kw):
    return subprocess.run([sys.executable, "-m", "streamdit", "edit", "--prompt", PROMPT, *args], cwd=ROOT,
                          capture_output=True, timeout=300, env={**os.environ, "STREAMDIT_NO_PROGRESS": "1"}, **kw)


def _moving_frames(n: int, size: int = 64) -> np.ndarray:
    f = np.zeros((n, size, size, 3), np.uint8)
    f[..., 1] = 140  # grass-ish green
    for i in range(n):
        f[i, 24:40, i % (size - 16):i % (size - 16) + 16] = (230, 150, 160)
    return f


@pytest.fixture(scope="module")
def default_model():
    from streamdit.pipeline import default_model_path

    if default_model_path() is None:
        pytest.skip("this checkout has no embedded model")


def test_edit_command_on_stdin(default_model, tmp_path):
    out = tmp_path / "live.mp4"
    raw = _moving_frames(36).tobytes() + b"\x00" * 100  # 36 frames and a partial one
    r = _edit(["--input", "-", "--input-size", "64x64", "--input-fps", "16", "--out", str(out)], input=raw)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "partial frame is dropped" in err and "wrote 36 frames" in r.stdout.decode()
    info = probe_video(str(out))
    assert info["frames"] == 36 and info["fps"] == 16.0 and (info["width"], info["height"]) == (64, 64)


def test_edit_command_ends_a_stalled_stdin_and_finalises_the_file(default_model, tmp_path):
    out, log, err = tmp_path / "stalled.mp4", tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(log, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "streamdit", "edit", "--prompt", PROMPT, "--input", "-",
                                 "--input-size", "64x64", "--input-fps", "16", "--stall-timeout", "1",
                                 "--out", str(out)], cwd=ROOT, stdin=subprocess.PIPE, stdout=stdout, stderr=stderr,
                                env={**os.environ, "STREAMDIT_NO_PROGRESS": "1"})
        try:
            proc.stdin.write(_moving_frames(20).tobytes())  # (blocks while the edit throttles the pipe)
            proc.stdin.flush()  # ... and then the writer stalls: the pipe stays open until the edit has ended
            proc.wait(timeout=300)
        finally:
            proc.kill()
            proc.stdin.close()
    assert proc.returncode == 0, err.read_text()
    assert "no new frame for 1 s (--stall-timeout): the input ended there, after 20 frames" in err.read_text()
    assert "wrote 20 frames" in log.read_text()
    frames_out, fps = read_video(str(out))
    assert frames_out.shape == (20, 64, 64, 3) and fps == 16.0


def test_edit_command_on_a_folder(default_model, tmp_path):
    folder = tmp_path / "frames"
    with PngDirWriter(folder) as w:
        w.write(_moving_frames(24))
    out = tmp_path / "folder.mp4"
    r = _edit(["--input", str(folder), "--input-fps", "12", "--stall-timeout", "0.5", "--out", str(out)])
    assert r.returncode == 0, r.stderr.decode()
    info = probe_video(str(out))
    assert info["frames"] == 24 and info["fps"] == 12.0


@pytest.mark.parametrize("args, says", [
    (["--input", "-"], "give --input-size WxH and --input-fps F, e.g. --input-size 640x480 --input-fps 30"),
    (["--input", "-", "--input-fps", "30"], "give --input-size WxH, e.g."),
    (["--input", "-", "--input-size", "64x64"], "give --input-fps F, e.g."),
    (["--input", "-", "--input-size", "64", "--input-fps", "30"], "'64' is not a frame size: give WIDTHxHEIGHT"),
    (["--input", "-", "--input-size", "64x64", "--input-fps", "fast"], "'fast' is not a frame rate"),
    (["--input", "-", "--input-size", "64x64", "--input-fps", "0"], "'0' is not a frame rate"),
    (["--input", "-", "--input-size", "64x64", "--input-fps", "8", "--stall-timeout", "0"], "--stall-timeout 0"),
    (["--input", "{tmp}"], "is a folder of images, which carry no frame rate: give --input-fps F"),
    (["--input", "clip.mp4", "--input-size", "64x64"], "--input-size is for raw frames on stdin"),
])
def test_edit_command_says_what_to_pass(args, says, tmp_path, capsys):
    from streamdit.cli import main

    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["edit", "--prompt", PROMPT, "--out", str(tmp_path / "o.mp4"), *args]) == 2
    assert says in capsys.readouterr().err
