"""The command line end to end: a real mp4 through the real ffmpeg, read back."""
import os
import subprocess
import sys
from pathlib import Path

from streamdit.io.checkpoint import save_checkpoint
from streamdit.io.video import probe_video, read_video

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


def test_demo_writes_video_and_frame_strip(tiny_bundle, tmp_path):
    from streamdit.io.png import read_png

    model = tmp_path / "tiny.safetensors"
    b = tiny_bundle
    save_checkpoint(str(model), b.model, b.config, text_encoder=b.text_encoder, codec=b.codec, defaults=b.defaults)
    out, strip = tmp_path / "demo.mp4", tmp_path / "strip.png"
    r = run_cli("demo", "--model", str(model), "--seconds", "3", "--out", str(out), "--strip", str(strip))
    assert r.returncode == 0, r.stderr
    assert "3s: a cat walking right on grass" in r.stderr  # the showcase schedule has prompt changes
    frames, fps = read_video(str(out))
    assert frames.shape == (24, 16, 16, 3) and fps == 8.0
    png = read_png(str(strip))  # 3 frames, one per second, scaled x2 with 2-pixel gaps
    assert png.shape[:2] == (32, 3 * 32 + 2 * 2)


def save_tiny_32(b, path):
    """The tiny test model as a checkpoint whose default frame size is 32x32 (fast judged runs)."""
    defaults = type(b.defaults)(**{**b.defaults.__dict__, "width": 32, "height": 32})
    save_checkpoint(str(path), b.model, b.config, text_encoder=b.text_encoder, codec=b.codec, defaults=defaults)
    return path


def test_eval_command_writes_tables(tiny_bundle, tmp_path):
    model = save_tiny_32(tiny_bundle, tmp_path / "tiny.safetensors")
    md, js = tmp_path / "eval.md", tmp_path / "eval.json"
    r = run_cli("eval", "--model", f"tiny={model}", "--scenes", "2", "--seconds", "1", "--long-streams", "1",
                "--long-seconds", "10", "--change-streams", "1", "--out", str(md), "--json", str(js), "--plot", "")
    assert r.returncode == 0, r.stderr
    text = md.read_text()
    assert "| tiny | 1 / 1 | 2 |" in text and "Prompt change pig -> cat" in text
    assert '"adherence"' in js.read_text()
    # results measured elsewhere (another process or session) join the tables without being measured again
    import json

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"baseline": json.loads(js.read_text())["tiny"]}))
    md2, js2 = tmp_path / "merged.md", tmp_path / "merged.json"
    png = tmp_path / "models.png"
    r = run_cli("eval", "--merge", str(js), "--merge", str(other), "--out", str(md2), "--json", str(js2),
                "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = md2.read_text()
    assert text.index("| tiny | 1 / 1 | 2 |") < text.index("| baseline | 1 / 1 | 2 |")
    assert set(json.loads(js2.read_text())) == {"tiny", "baseline"}
    r = run_cli("eval", "--merge", str(md), "--out", str(md2))
    assert r.returncode == 2 and "not an eval results file" in r.stderr
    # a replaced model: the old rows renamed where they stood, the new file's rows under the old name, first
    r = run_cli("eval", "--merge", str(js), "--rename", "tiny=v0-tiny", "--merge", str(other), "--rename",
                "baseline=tiny", "--out", str(md2), "--json", str(js2), "--plot", "")
    assert r.returncode == 0, r.stderr
    assert list(json.loads(js2.read_text())) == ["tiny", "v0-tiny"]
    assert md2.read_text().index("| tiny | 1 / 1 | 2 |") < md2.read_text().index("| v0-tiny | 1 / 1 | 2 |")
    r = run_cli("eval", "--rename", "tiny=v0-tiny", "--merge", str(js), "--out", str(md2))
    assert r.returncode == 2 and "put --rename after the --merge it applies to" in r.stderr


def test_eval_edit_command_sweeps_guidance_and_merges(tiny_bundle, tmp_path):
    model = save_tiny_32(tiny_bundle, tmp_path / "tiny.safetensors")
    md, js = tmp_path / "edit.md", tmp_path / "edit.json"
    common = ("eval-edit", "--model", str(model), "--sources", "1", "--seconds", "1", "--plot", "",
              "--noise-seeds", "2")
    r = run_cli(*common, "--strengths", "0.5", "--out", str(md), "--json", str(js))
    assert r.returncode == 0, r.stderr
    assert "| none | 0.500 |" in md.read_text()
    # a guided sweep in a second run joins the first run's rows
    md2, js2 = tmp_path / "edit2.md", tmp_path / "edit2.json"
    r = run_cli(*common, "--strengths", "0.5", "--cfg", "2", "--merge", str(js), "--out", str(md2), "--json", str(js2))
    assert r.returncode == 0, r.stderr
    text = md2.read_text()
    assert text.index("| none | 0.500 |") < text.index("| cfg 2, away from the source caption | 0.500 |")
    import json

    assert [r["cfg"] for r in json.loads(js2.read_text())] == [1.0, 2.0]
    # every sweep is a line of the log beside --json; the sealed sources are scored once per model file
    log = [json.loads(line) for line in (tmp_path / "eval-log.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["seed_set"], e["judge"], len(e["rows"])) for e in log] == [("edit", "dev", "v2", 1)] * 2
    assert log[0]["counts"] == {"sources": 1, "seconds": 1.0, "noise_seeds": 2}
    sealed = (*common, "--strengths", "0.5", "--seed-set", "sealed", "--out", "", "--json", str(tmp_path / "s.json"))
    assert run_cli(*sealed).returncode == 0
    r = run_cli(*sealed)
    assert r.returncode == 2 and "scored on the sealed set already" in r.stderr
    r = run_cli(*common, "--strengths", "0.5", "--merge", str(md), "--out", "", "--json", "")
    assert r.returncode == 2 and "cannot read an eval-edit results file" in r.stderr
