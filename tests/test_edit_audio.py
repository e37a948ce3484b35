"""An edited file keeps the source's audio, in sync and cut to the frames (VideoWriter(audio_from=...), `edit`).

Everything runs against the real ffmpeg binary of imageio-ffmpeg. Times are read the way a player sees them: the
video's frame times (showinfo) and the audio decoded onto the same timeline (gaps filled with silence), so the
codec's delay is whatever the container says it is, not a fudge factor of the test.
"""
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from streamdit.io.video import VideoWriter, ffmpeg_exe, probe_audio, read_video

FPS, SECONDS, SR = 16, 2, 48000
PROMPT = "a cat walking right on grass"
AUDIO_FRAME = 1024 / 44100  # the longest audio frame here (AAC at 44.1 kHz; Opus uses 20 ms)


def _ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", *args], capture_output=True)


def make_source(path, audio: bool = True, seconds: float = SECONDS):
    """64x64 test pattern at 16 fps; with audio: a rising chirp (no period, so the best lag is unique)."""
    cmd = ["-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=64x64:rate={FPS}:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"aevalsrc=0.5*sin(2*PI*(220+440*t)*t):s=44100:d={seconds}", "-c:a", "aac"]
    r = _ffmpeg(*cmd, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    assert r.returncode == 0, r.stderr.decode()
    return path


def video_times(path) -> list[float]:
    """Presentation times of the decodable video frames."""
    err = _ffmpeg("-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-").stderr.decode()
    return [float(t) for t in re.findall(r"\bn: *\d+ pts: *-?\d+ pts_time:(\S+)", err)]


def audio_end(path) -> float:
    """End time of the last decodable audio frame (start + samples / rate)."""
    err = _ffmpeg("-i", str(path), "-map", "0:a:0", "-af", "ashowinfo", "-f", "null", "-").stderr.decode()
    frames = re.findall(r"\bn:\d+ pts:-?\d+ pts_time:(\S+) .*?rate:(\d+) nb_samples:(\d+)", err)
    assert frames, f"no audio decoded from {path}"
    t, rate, n = frames[-1]
    return float(t) + int(n) / int(rate)


def pcm(path) -> np.ndarray:
    """The first audio track as mono float32 at 48 kHz on the file's timeline from 0 (a late start is silence)."""
    r = _ffmpeg("-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-af",
                f"aresample={SR}:async=1:first_pts=0", "-ac", "1", "-f", "f32le", "pipe:1")
    assert r.returncode == 0, r.stderr.decode()
    return np.frombuffer(r.stdout, np.float32)


def best_lag(ref: np.ndarray, x: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag, correlation): x[i + lag] ~ ref[i]; the Pearson correlation over the overlap at that lag."""
    n = len(ref) + len(x)
    xc = np.fft.irfft(np.fft.rfft(x, n) * np.conj(np.fft.rfft(ref, n)), n)
    lags = np.r_[0:max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(xc[lags])])
    a, b = (ref, x[lag:]) if lag >= 0 else (ref[-lag:], x)
    m = min(len(a), len(b))
    return lag, float(np.corrcoef(a[:m], b[:m])[0, 1])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("audio") / "source.mp4")


@pytest.fixture(scope="module")
def silent_source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("silent") / "silent.mp4", audio=False)


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_audio_from_gives_the_sources_audio_in_sync(source, tmp_path, ext):
    frames, fps = read_video(source)
    out = tmp_path / f"out.{ext}"
    with VideoWriter(out, fps, audio_from=source) as w:
        for i in range(0, len(frames), 5):
            w.write(frames[i:i + 5])
    assert w.audio == {"codec": "aac", "sample_rate": 44100, "channels": "mono"}  # the source's track
    assert probe_audio(out)["codec"] == {"mp4": "aac", "webm": "opus"}[ext]

    # (a) same length: the audio ends with the last frame, within one frame period; both start at 0 (so a
    # reader at a constant rate sees exactly the frames written, no repeated first frame)
    v = video_times(out)
    assert len(v) == len(frames) == FPS * SECONDS and v[0] == 0.0
    assert read_video(out)[0].shape[0] == len(frames)
    video_end = v[-1] + 1 / fps
    assert abs(audio_end(out) - video_end) < 1 / fps

    # (b) the source's audio, at the source's time: where the first frame is shown, the first sample plays
    src, got = pcm(source), pcm(out)
    lag, corr = best_lag(src, got, int(0.3 * SR))
    assert corr > 0.99
    assert abs(lag / SR - (v[0] - video_times(source)[0])) < 0.001, lag / SR


@pytest.mark.parametrize("ext", ["mp4", "webm"])
@pytest.mark.parametrize("n", [4, 20])
def test_closed_early_the_audio_stops_with_the_frames(source, tmp_path, ext, n):
    """A cancelled stream: n of 32 frames, written slowly; the file plays and its audio stops with the video.

    Bound: the audio ends no more than one audio frame (23 ms) after the last frame, and no more than two before
    it. (With the audio as a plain second ffmpeg input and a small -shortest_buf_duration, a 4-frame file got a
    full second of audio.)
    """
    frames, fps = read_video(source)
    out = tmp_path / f"early.{ext}"
    with VideoWriter(out, fps, audio_from=source) as w:
        for i in range(0, n, 4):
            w.write(frames[i:min(i + 4, n)])
            time.sleep(0.05)
    video, _ = read_video(out)
    assert video.shape[0] == n
    v = video_times(out)
    video_end = v[-1] + 1 / fps
    assert video_end - 2 * AUDIO_FRAME <= audio_end(out) <= video_end + AUDIO_FRAME + 0.001


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_written_slowly_the_file_plays_while_it_grows(source, tmp_path, ext):
    """Audio must not hold the video back: the frames written so far decode, with their audio, before close.

    A plain second input stalls here: ffmpeg reads the audio ahead while x264 holds its lookahead, and -shortest's
    sync queue keeps the video until 10 s are buffered (nothing decodable after 4 s written).
    """
    frames, fps = read_video(source)
    out, snap = tmp_path / f"growing.{ext}", tmp_path / f"snapshot.{ext}"
    w = VideoWriter(out, fps, audio_from=source)
    try:
        for i in range(64):  # 4 s: the 2 s source twice; the audio goes silent after 2 s
            w.write(frames[i % len(frames)])
            if i % 4 == 3:
                time.sleep(0.02)
        n, deadline = 0, time.monotonic() + 10
        while n < 16 and time.monotonic() < deadline:
            time.sleep(0.2)
            shutil.copy(out, snap)
            n = len(video_times(snap))
        assert n >= 16, f"only {n} of 64 frames decodable while writing"
        assert audio_end(snap) > 0.9
    finally:
        w.close()
    assert len(video_times(out)) == 64


def test_source_without_audio_writes_video_only(silent_source, tmp_path):
    frames, fps = read_video(silent_source)
    out = tmp_path / "silent_out.mp4"
    with VideoWriter(out, fps, audio_from=silent_source) as w:
        w.write(frames)
    assert w.audio is None and probe_audio(out) is None
    assert len(video_times(out)) == len(frames)


def test_audio_from_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        VideoWriter(tmp_path / "out.mp4", FPS, audio_from=tmp_path / "missing.mp4")
    bad = tmp_path / "not_media.mp4"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="cannot read"):
        VideoWriter(tmp_path / "out.mp4", FPS, audio_from=bad)


def _edit(capsys, *args: str) -> str:
    from streamdit.cli import main

    assert main(["edit", "--prompt", PROMPT, *args]) == 0
    return capsys.readouterr().err


def test_cli_edit_keeps_the_audio_and_no_audio_drops_it(source, tmp_path, capsys):
    out = tmp_path / "edited.mp4"
    err = _edit(capsys, "--input", str(source), "--out", str(out))
    assert "audio: the source's (aac 44100 Hz mono)" in err
    v = video_times(out)
    assert len(v) == FPS * SECONDS and probe_audio(out)["codec"] == "aac"
    assert abs(audio_end(out) - (v[-1] + 1 / FPS)) < 1 / FPS
    lag, corr = best_lag(pcm(source), pcm(out), int(0.3 * SR))
    assert corr > 0.99 and abs(lag / SR - (v[0] - video_times(source)[0])) < 0.001

    out2 = tmp_path / "edited_no_audio.mp4"
    err = _edit(capsys, "--input", str(source), "--out", str(out2), "--no-audio")
    assert "audio: dropped (--no-audio)" in err
    assert probe_audio(out2) is None and len(video_times(out2)) == FPS * SECONDS


def test_cli_edit_of_a_source_without_audio(silent_source, tmp_path, capsys):
    out = tmp_path / "edited_silent.mp4"
    err = _edit(capsys, "--input", str(silent_source), "--out", str(out))
    assert "audio: none in the source" in err
    assert probe_audio(out) is None and len(video_times(out)) == FPS * SECONDS


def test_audio_shorter_than_the_video_keeps_every_frame(tmp_path):
    """-shortest must not end the file with the audio: a 1 s track under 2 s of video is padded with silence."""
    src = tmp_path / "short_audio.mkv"
    r = _ffmpeg("-loglevel", "error", "-f", "lavfi", "-i", f"testsrc=size=64x64:rate={FPS}:duration=2", "-f",
                "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=1", "-c:v", "libx264", "-c:a", "aac",
                str(src))
    assert r.returncode == 0, r.stderr.decode()
    frames, fps = read_video(src)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, fps, audio_from=src) as w:
        w.write(frames)
    v = video_times(out)
    assert len(v) == 32 and abs(audio_end(out) - (v[-1] + 1 / fps)) < 1 / fps


def test_a_later_run_of_an_edit_in_comfyui_keeps_the_audio_from_where_it_starts(source, tmp_path, monkeypatch):
    """Save Video after Video Edit: run 2 starts 1 s into the source, and so does its audio."""
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    sys.path.insert(0, str(Path(__file__).parent))
    from workflow_format import pack_input_types

    pack_input_types()
    save, host = sys.modules["ComfyUI_StreamDiT_pack.nodes.save"], sys.modules["ComfyUI_StreamDiT_pack.nodes.host"]
    monkeypatch.setattr(host, "output_directory", lambda: str(tmp_path))
    frames, _ = read_video(source)
    run = SimpleNamespace(width=64, height=64, fps=float(FPS), graph=None, extra_pnginfo=None, stream_id="e",
                          run_index=2, start_frame=FPS, audio_source=str(source))
    sink = save.VideoSink(run, "edit/run2", "mp4", 0)
    sink.write(frames[FPS:], FPS, run)
    result = sink.close(True, run)
    out = tmp_path / result["subfolder"] / result["filename"]
    ref, got = pcm(source)[SR:], pcm(out)  # the source's audio from 1 s on
    lag, corr = best_lag(ref[:SR // 2], got[:SR // 2], SR // 10)
    assert abs(lag) < SR // 1000 and corr > 0.99, (lag, corr)  # within 1 ms
    assert abs(audio_end(out) - len(frames[FPS:]) / FPS) <= AUDIO_FRAME
