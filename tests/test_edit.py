"""Video-to-video editing in the moving buffer: lengths, sizes, determinism, the forward-process hold,
strength 1 = generation, live sources, and bad input."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamdit.io.video import VideoWriter, probe_video, read_video
from streamdit.sampling.edit import EditStream
from streamdit.sampling.sources import FrameSource, SourceError

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a cat walking right on grass"


def source(n, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, 3, generator=g)


@pytest.mark.parametrize("n", [1, 7, 16, 21])
@pytest.mark.parametrize("lookahead", [True, False])
def test_frames_in_equal_frames_out_and_seeded(tiny_pipeline, n, lookahead):
    src = source(n)
    a = tiny_pipeline.edit(src, PROMPT, strength=0.5, seed=3, lookahead=lookahead).take(n + 10)
    b = tiny_pipeline.edit(src, PROMPT, strength=0.5, seed=3, lookahead=lookahead).take(n + 10)
    c = tiny_pipeline.edit(src, PROMPT, strength=0.5, seed=4, lookahead=lookahead).take(n + 10)
    assert a.shape == (n, 16, 16, 3) and torch.equal(a, b) and not torch.equal(a, c)


def test_strength_one_is_generation(tiny_pipeline):
    edited = tiny_pipeline.edit(source(24), PROMPT, strength=1.0, seed=5).take(24)
    generated = tiny_pipeline.stream(PROMPT, seed=5).take(24)
    torch.testing.assert_close(edited, generated, rtol=0, atol=1e-6)


def test_frames_above_the_edit_level_stay_on_their_forward_process(tiny_pipeline):
    es = tiny_pipeline.edit(source(40), PROMPT, strength=0.5, seed=1)
    assert es.strength == 0.5 and es.edit_m == 2  # N = 4 chunks, s = 1: a u grid of 1/4
    for _ in range(3):
        es.next_latent_chunk()
        m = es._frame_levels(es.buffer.micro)
        above = (m >= es.edit_m).nonzero().flatten()
        sigma = (m[above].double() / es.levels).float().view(1, -1, 1, 1)
        expected = (1 - sigma) * es.z[:, above] + sigma * es.eps[:, above]
        torch.testing.assert_close(es.buffer.latents[:, above], expected)
        assert bool(es.real[:2 * es.partition.chunk_frames].all())


def test_strength_is_rounded_onto_the_u_grid(tiny_pipeline):
    assert tiny_pipeline.edit(source(4), PROMPT, strength=0.6).strength == 0.5
    assert tiny_pipeline.edit(source(4), PROMPT, strength=0.6, micro_steps=4).strength == 10 / 16
    assert tiny_pipeline.edit(source(4), PROMPT, strength=0.01).strength == 0.25  # at least one step
    assert tiny_pipeline.edit(source(4), PROMPT, strength=0).strength == 0  # the codec's round trip
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            tiny_pipeline.edit(source(4), PROMPT, strength=bad)


def test_other_sizes_are_resized_with_a_note_never_cropped(tiny_pipeline):
    src = torch.zeros(6, 24, 40, 3)
    src[:, :, :20] = 1.0  # left half white: after resizing, still the left half
    with pytest.warns(UserWarning, match="frames are 40x24, the model makes 16x16: resizing"):
        out = tiny_pipeline.edit(src, PROMPT, strength=0.25, seed=0).source
        frames = list(out)
    assert frames[0].shape == (6, 16, 16, 3)
    assert frames[0][:, :, :8].mean() == 1.0 and frames[0][:, :, 8:].mean() == 0.0


def test_live_source_is_read_as_late_as_possible(tiny_pipeline):
    pulled = []

    def camera():
        for i, f in enumerate(source(30)):
            pulled.append(i)
            yield f

    es = tiny_pipeline.edit(FrameSource.from_iterable(camera(), fps=8.0), PROMPT, strength=0.5, seed=0)
    assert not es.lookahead and es.latency_frames == 6  # chunk k_e = 2 of N = 4, c = 2, plus decoding
    first = next(es.frames())
    assert first.shape[0] == 2 and len(pulled) == es.latency_frames + 2
    rest = torch.cat([first, *es.frames()])
    assert rest.shape[0] == 30


def test_bad_sources_say_what_is_wrong(tiny_pipeline, tmp_path):
    with pytest.raises(SourceError, match="no source frames"):
        tiny_pipeline.edit(torch.zeros(0, 16, 16, 3), PROMPT)
    with pytest.raises(SourceError, match=r"frames differ in size \(16x16 at 0, 8x8 at 2\)"):
        FrameSource.from_frames([torch.zeros(16, 16, 3), torch.zeros(16, 16, 3), torch.zeros(8, 8, 3)], 8.0)
    with pytest.raises(SourceError, match=r"expected RGB frames \[T, H, W, 3\]"):
        FrameSource.from_frames(torch.zeros(4, 16, 16), 8.0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FrameSource.from_path(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match="cannot read the source video"):
        FrameSource.from_path(junk)
    live = FrameSource.from_iterable(iter([torch.zeros(2, 16, 16, 3), torch.zeros(2, 8, 8, 3)]), 8.0)
    with pytest.raises(SourceError, match="frame 2 is 8x8 but earlier frames were 16x16"):
        tiny_pipeline.edit(live, PROMPT, strength=0.5, lookahead=True).take(4)


def test_extension_partitions_are_refused(tiny_pipeline):
    with pytest.raises(ValueError, match="without reference frames"):
        tiny_pipeline.edit(source(4), PROMPT, ref_frames=2)
    assert isinstance(tiny_pipeline.edit(source(4), PROMPT), EditStream)


def test_edit_command_keeps_length_and_frame_rate(tiny_bundle, tmp_path):
    from streamdit.io.checkpoint import save_checkpoint

    model = tmp_path / "tiny.safetensors"
    b = tiny_bundle
    save_checkpoint(str(model), b.model, b.config, text_encoder=b.text_encoder, codec=b.codec, defaults=b.defaults)
    src = tmp_path / "src.mp4"
    with VideoWriter(str(src), 12.0) as w:
        w.write(source(19, size=32))
    out = tmp_path / "out.mp4"
    r = subprocess.run([sys.executable, "-m", "streamdit", "edit", "--model", str(model), "--input", str(src),
                        "--prompt", PROMPT, "--strength", "0.6", "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "STREAMDIT_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert "strength 0.5 (asked 0.6" in r.stderr and "resizing" in r.stderr and "FPS" in r.stdout
    assert "unclosed file" not in r.stderr  # imageio-ffmpeg's leftover pipes are not the user's business
    frames, fps = read_video(str(out))
    assert frames.shape == (19, 16, 16, 3) and fps == 12.0 and probe_video(str(out))["frames"] == 19
    r = subprocess.run([sys.executable, "-m", "streamdit", "edit", "--model", str(model), "--input",
                        str(tmp_path / "nope.mp4"), "--prompt", PROMPT, "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "does not exist" in r.stderr
