"""The command line end to end: a real mp4 through the real ffmpeg, read back."""
import os
import subprocess
import sys
from pathlib import Path

from streamdit.checkpoint import save_checkpoint
from streamdit.video_io import probe_video, read_video

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "streamdit", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "STREAMDIT_NO_PROGRESS": "1"})


def test_generate_writes_a_playable_mp4_and_pngs(tiny_bundle, tmp_path):
    model = tmp_path / "tiny.safetensors"
    b = tiny_bundle
    save_checkpoint(str(model), b.model, b.config, text_encoder=b.text_encoder, codec=b.codec, defaults=b.defaults)
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    r = run_cli("generate", "--model", str(model), "--prompt", "0s: a pig walking right on grass\\n1s: a cat",
                "--seconds", "2.5", "--seed", "1", "--out", str(out), "--frames-dir", str(frames_dir))
    assert r.returncode == 0, r.stderr
    assert "wrote 20 frames" in r.stdout and "FPS" in r.stdout
    info = probe_video(str(out))
    assert (info["width"], info["height"]) == (16, 16) and abs(info["fps"] - 8.0) < 1e-6
    frames, fps = read_video(str(out))
    assert frames.shape == (20, 16, 16, 3) and fps == 8.0
    assert len(list(frames_dir.glob("*.png"))) == 20


def test_generate_reports_bad_input_clearly(tmp_path):
    r = run_cli("generate", "--model", str(tmp_path / "missing.safetensors"), "--prompt", "a pig", "--out",
                str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_cli("generate", "--model", "random:toy", "--prompt", "a pig", "--chunk-frames", "3", "--out",
                str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "chunk_frames=3 does not divide buffer_frames=16" in r.stderr
