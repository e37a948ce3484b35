"""A finer uniform start (cold_micro_steps): its u grid, the buffer it leaves, the model's default and who gets it."""
import dataclasses
import json
from fractions import Fraction

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from streamdit.io.checkpoint import load_checkpoint, save_checkpoint
from streamdit.sampling.buffer import StreamBuffer, cold_grid
from streamdit.sampling.partition import Partition, Schedule
from streamdit.sampling.stream import StreamConfig

PROMPT = "a cat walking right on grass"


def test_cold_grid_from_a_start_between_grid_points():
    assert cold_grid(Fraction(1), 2, 4, Fraction(1, 4)) == [Fraction(k, 8) for k in range(8, 1, -1)]
    # an edit's start at u = 3/4 on a grid of 1/12: it steps to the first grid point below, then on down
    assert cold_grid(Fraction(3, 4), 3, 4, Fraction(1, 4)) == [Fraction(k, 12) for k in range(9, 2, -1)]
    expect = [Fraction(5, 8)] + [Fraction(k, 12) for k in range(7, -1, -1)]
    assert cold_grid(Fraction(5, 8), 3, 4, Fraction(0)) == expect
    assert cold_grid(Fraction(1, 4), 4, 4, Fraction(1, 4)) == [Fraction(1, 4)]  # nothing to do


def test_an_edit_start_on_a_finer_grid_keeps_every_frame_on_its_trajectory():
    """Point-mass data: with the exact velocity every frame must sit at (1 - sigma) x0 + sigma eps of its u."""
    p, sched = Partition(chunks=4, chunk_frames=1, micro_steps=1), Schedule(3.0)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 2, 2, generator=g, dtype=torch.float64), torch.randn(2, 4, 2, 2, generator=g,
                                                                                     dtype=torch.float64)
    calls = []

    def velocity(x, sigma):
        calls.append(sigma[0].item())
        return (x - x0) / sigma.view(1, -1, 1, 1)

    def on_trajectory(u):
        s = sched.sigma(u)
        return (1 - s) * x0 + s * eps

    buf = StreamBuffer(p, sched)
    start = on_trajectory(3 / 4)  # strength 0.75: the edit level, grid index 3 of the partition's 1/4
    buf.cold_start(start.clone(), velocity, level=3, micro_steps=3)
    assert len(calls) == 6  # u = 9/12 ... 4/12, one call each
    for chunk in range(1, 4):  # chunk k left at u = k/4
        torch.testing.assert_close(buf.latents[:, chunk - 1], on_trajectory(chunk / 4)[:, chunk - 1], rtol=0,
                                   atol=1e-12)
    torch.testing.assert_close(buf.latents[:, 3], start[:, 3], rtol=0, atol=0)  # above the start: kept


def test_bad_values_say_what_works():
    p = Partition(chunks=4, chunk_frames=1, micro_steps=1)
    with pytest.raises(ValueError, match="cold_micro_steps=-1 must be >= 0"):
        StreamConfig(partition=p, height=16, width=16, cold_micro_steps=-1)
    with pytest.raises(ValueError, match="literal step table has no finer grid"):
        StreamConfig(partition=p, height=16, width=16, cold_micro_steps=2, steps=Schedule(1.0, (0, 500, 1000)))


@pytest.fixture()
def cold4(tiny_pipeline):
    """The tiny pipeline with a model default of 4 calls per band at the start."""
    from streamdit.pipeline import Pipeline

    bundle = dataclasses.replace(tiny_pipeline.bundle,
                                 defaults=dataclasses.replace(tiny_pipeline.bundle.defaults, cold_micro_steps=4))
    return Pipeline(bundle, torch.device("cpu"), torch.float32)


def test_the_model_default_applies_to_streams_unless_streaming_is_as_fine(cold4, tiny_pipeline):
    s = cold4.stream(PROMPT, seed=1)
    frames = s.take(4)
    assert s.config.cold_micro_steps == 4 and s.calls == 4 * 4 - 4 + 2  # N = 4 bands: 12 start calls, 2 chunks
    assert cold4.stream(PROMPT, seed=1, micro_steps=4).config.cold_micro_steps == 0
    assert cold4.stream(PROMPT, seed=1, cold_micro_steps=2).config.cold_micro_steps == 2
    plain = tiny_pipeline.stream(PROMPT, seed=1)
    assert plain.config.cold_micro_steps == 0
    assert not torch.equal(frames, plain.take(4))  # the finer start changes the frames
    assert torch.equal(frames, cold4.stream(PROMPT, seed=1).take(4))


def test_edits_start_with_the_streaming_steps_unless_told(cold4):
    src = torch.rand(12, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    assert cold4.edit(src, PROMPT, strength=1.0).config.cold_micro_steps == 0
    assert cold4.edit(src, PROMPT, cold_micro_steps=None).config.cold_micro_steps == 0  # what the CLI and node pass
    told = cold4.edit(src, PROMPT, strength=1.0, seed=5, cold_micro_steps=4)
    assert told.config.cold_micro_steps == 4
    # strength 1 with the same start is generation
    torch.testing.assert_close(told.take(12), cold4.stream(PROMPT, seed=5).take(12), rtol=0, atol=1e-6)


def test_the_default_travels_in_the_checkpoint_and_old_files_read_as_zero(tiny_bundle, tmp_path):
    b = tiny_bundle
    for value in (4, None):
        defaults = dataclasses.replace(b.defaults, cold_micro_steps=value or 0)
        path = str(tmp_path / f"m{value}.safetensors")
        save_checkpoint(path, b.model, b.config, text_encoder=b.text_encoder, codec=b.codec, defaults=defaults)
        if value is None:  # a file written before the field existed
            with safe_open(path, "pt") as f:
                meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
            d = json.loads(meta["stream_defaults"])
            del d["cold_micro_steps"]
            meta["stream_defaults"] = json.dumps(d)
            save_file(tensors, path, metadata=meta)
        assert load_checkpoint(path).defaults.cold_micro_steps == (value or 0)
