"""Video/PNG I/O against the real ffmpeg binary of imageio-ffmpeg (no mocks)."""
import json
import os
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdit.io.png import PngDirWriter, read_png
from streamdit.io.video import (
    VideoWriter,
    ffmpeg_exe,
    iter_video,
    probe_video,
    read_metadata,
    read_video,
    to_uint8,
)

H, W, FPS = 48, 64, 16


def pattern(t0: int, t: int, h: int = H, w: int = W) -> torch.Tensor:
    """Smooth moving colour pattern, frames t0 .. t0 + t - 1, float32 [t, h, w, 3]."""
    ts = torch.arange(t0, t0 + t, dtype=torch.float32)[:, None, None]
    y = torch.arange(h, dtype=torch.float32)[None, :, None]
    x = torch.arange(w, dtype=torch.float32)[None, None, :]
    r = 0.5 + 0.4 * torch.sin((x + 2 * ts) / 9)
    g = 0.5 + 0.4 * torch.cos((y - ts) / 7) + 0 * x
    b = 0.5 + 0.3 * torch.sin((x + y + ts) / 11)
    return torch.stack([c.expand(t, h, w) for c in (r, g, b)], -1).contiguous()


def wait_for_size(path: Path, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not (path.exists() and path.stat().st_size > 0):
        time.sleep(0.05)


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_round_trip_incremental(tmp_path, ext):
    frames = pattern(0, 40)
    path = tmp_path / f"clip.{ext}"
    with VideoWriter(path, FPS) as w:
        for i in range(0, 39, 7):  # several calls of 7 frames, the last one short
            w.write(frames[i:min(i + 7, 39)])
        w.write(frames[39])  # a single [H, W, 3] frame
        assert w.frames_written == 40
    assert w.closed and not w.padded
    w.close()  # idempotent

    video, fps = read_video(path)
    assert video.shape == (40, H, W, 3) and video.dtype == torch.float32
    assert fps == FPS
    assert (video - frames).abs().mean() < 0.03
    info = probe_video(path)
    assert (info["width"], info["height"], info["fps"], info["frames"]) == (W, H, FPS, 40)
    assert info["duration"] == pytest.approx(40 / FPS, abs=0.1)
    assert [c.shape[0] for c in iter_video(path, chunk_frames=16)] == [16, 16, 8]
    assert read_video(path, max_frames=5)[0].shape[0] == 5


def test_to_uint8_rounds_and_clamps():
    x = torch.tensor([-1.0, 0.4 / 255, 0.6 / 255, float("nan"), 2.0, 1.0]).reshape(1, 1, 2, 3)
    assert to_uint8(x).reshape(-1).tolist() == [0, 0, 1, 0, 255, 255]
    u = torch.randint(0, 256, (2, 4, 4, 3), dtype=torch.uint8)
    assert np.array_equal(to_uint8(u), u.numpy())
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        to_uint8(torch.zeros(2, 3, 8, 8))


def test_killed_ffmpeg_leaves_a_decodable_file(tmp_path):
    """Killing ffmpeg (as a crash would) keeps every complete 1 s fragment: here ~64 of 96 frames."""
    frames = pattern(0, 96)
    path = tmp_path / "killed.mp4"
    w = VideoWriter(path, FPS)
    for i in range(0, 96, 8):
        w.write(frames[i:i + 8])
    time.sleep(0.5)  # let ffmpeg take in what is in the pipe
    w._proc.kill()
    with pytest.raises(RuntimeError, match="killed by signal|exit code"):
        w.close()
    video, fps = read_video(path)
    n = video.shape[0]
    # lost: the frames inside x264 (lookahead 16 + B-frames + threads, ~23) and the unfinished fragment
    assert 16 <= n < 96 and fps == FPS
    assert (video - frames[:n]).abs().mean() < 0.03


@pytest.mark.skipif(sys.platform.startswith("win"), reason="uses SIGKILL")
def test_killed_python_process_still_finalises(tmp_path):
    """If the writing process dies, ffmpeg sees the end of its input and finishes the file: all frames."""
    path = tmp_path / "orphan.mp4"
    script = textwrap.dedent(f"""
        import os, signal, torch
        from streamdit.io.video import VideoWriter
        w = VideoWriter({str(path)!r}, {FPS})
        w.write(torch.rand(40, {H}, {W}, 3))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == -9
    end, n = time.monotonic() + 15, 0
    while time.monotonic() < end and n < 40:  # the orphaned ffmpeg finishes on its own
        time.sleep(0.1)
        try:
            n = probe_video(path)["frames"] or 0
        except (ValueError, FileNotFoundError):
            pass
    assert n == 40


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_metadata_round_trip_long_json(tmp_path, ext):
    workflow = {"nodes": [{"id": i, "text": 'a "quote"\nnew line = ; # \\ ü 日本 \t end'} for i in range(2500)]}
    comment = json.dumps(workflow, indent=1)
    assert len(comment.encode()) > 200_000  # more than one command-line argument may hold on Linux
    path = tmp_path / f"meta.{ext}"
    with VideoWriter(path, FPS, metadata={"comment": comment, "title": "t=1;2", "workflow": workflow}) as w:
        w.write(pattern(0, 4))
    meta = read_metadata(path)
    assert meta["comment"] == comment
    assert meta["title"] == "t=1;2"
    assert json.loads(meta["workflow"]) == workflow  # non-strings are JSON-encoded
    with pytest.raises(ValueError, match="metadata key"):
        VideoWriter(path, FPS, metadata={"bad key=": "x"})


def test_odd_size_is_padded_by_repeating_the_edge(tmp_path):
    frames = pattern(0, 6, h=33, w=47)
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, Fraction(30000, 1001)) as w:  # NTSC rate, read back exactly
        w.write(frames)
    assert w.padded and w.frame_size == (33, 47)
    video, fps = read_video(path)
    assert fps == 30000 / 1001
    assert video.shape == (6, 34, 48, 3)
    assert (video[:, :33, :47] - frames).abs().mean() < 0.03
    assert (video[:, 33, :47] - frames[:, 32]).abs().mean() < 0.03
    assert (video[:, :33, 47] - frames[:, :, 46]).abs().mean() < 0.03


def test_writer_errors(tmp_path):
    path = tmp_path / "a.mp4"
    with VideoWriter(path, FPS) as w:
        w.write(pattern(0, 2))
        with pytest.raises(ValueError, match=r"expected 48x64 .* got 32x32"):
            w.write(pattern(0, 1, h=32, w=32))
        w.write(pattern(2, 2))  # still usable
    assert probe_video(path)["frames"] == 4
    with pytest.raises(RuntimeError, match="closed"):
        w.write(pattern(0, 1))
    with pytest.raises(ValueError, match="unsupported video extension"):
        VideoWriter(tmp_path / "a.avi", FPS)
    with pytest.raises(RuntimeError, match="nonexistent_codec"):
        w = VideoWriter(tmp_path / "b.mp4", FPS, codec="nonexistent_codec")
        w.write(pattern(0, 1))
        w.close()
    VideoWriter(tmp_path / "none.mp4", FPS).close()
    assert not (tmp_path / "none.mp4").exists()  # no frames: no file


def test_read_errors(tmp_path):
    missing = tmp_path / "missing.mp4"
    for fn in (read_video, probe_video, read_metadata, iter_video, read_png):
        with pytest.raises(FileNotFoundError, match="missing.mp4"):
            fn(missing)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for fn in (read_video, probe_video, read_metadata):
        with pytest.raises(ValueError, match="garbage.mp4.*Invalid data"):
            fn(garbage)
    with pytest.raises(ValueError, match="not a PNG"):
        read_png(garbage)


def test_zero_frame_file(tmp_path):
    """A writer killed before its first fragment leaves a header-only mp4: reading says there are no frames."""
    path = tmp_path / "zero.mp4"
    w = VideoWriter(path, FPS)
    w.write(pattern(0, 1))
    wait_for_size(path)
    w._proc.kill()
    with pytest.raises(RuntimeError):
        w.close()
    with pytest.raises(ValueError, match="no video frames"):
        read_video(path)


def test_png_dir_writer_is_lossless(tmp_path):
    frames = torch.rand(3, 21, 30, 3)
    with PngDirWriter(tmp_path / "pngs") as w:
        w.write(frames[:2])
        w.write(frames[2])
    assert w.frames_written == 3
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == [f"frame_00000{i}.png" for i in range(3)]
    expect = to_uint8(frames)
    for i, p in enumerate(w.paths):
        back = read_png(p)
        assert back.shape == (21, 30, 3)
        assert np.array_equal(to_uint8(back)[0], expect[i])
    # a PNG from another encoder (Paeth/mixed filters) is read through ffmpeg, also exactly
    other = tmp_path / "paeth.png"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(w.paths[0]), "-pred", "mixed", str(other)], check=True)
    assert np.array_equal(to_uint8(read_png(other))[0], expect[0])
