"""The DiT's per-frame conv refiner (ModelConfig.head_conv): growing it keeps a trained model's output, it sees
across token borders within one frame only, it round-trips through checkpoints, and files without it stay as they
were (CPU)."""
import dataclasses
import json

import pytest
import torch
from test_model import TINY, inputs, randomise

from streamdit.network.config import ModelConfig
from streamdit.network.model import FrameRefiner, WanDiT, grow_refiner


def test_grown_refiner_keeps_the_output_until_it_trains():
    model = randomise(WanDiT(dataclasses.replace(TINY, patch_size=(1, 2, 2))))
    x, t, context = inputs(size=8)
    grown = grow_refiner(model, 16, seed=0).eval()
    assert grown.config.head_conv == 16 and grown is not model
    with torch.no_grad():
        assert torch.equal(grown(x, t, context), model(x, t, context))
        grown.refiner.conv_out.weight.normal_(0, 0.05)
        assert not torch.allclose(grown(x, t, context), model(x, t, context))
    assert grow_refiner(grown, 16) is grown  # already there: as it is
    with pytest.raises(ValueError, match="refiner of 16 channels, not 8: use head_conv=16"):
        grow_refiner(grown, 8)


def test_refiner_sees_its_own_frame_and_a_seven_cell_field():
    refiner = FrameRefiner(4, 4, 8, 32)
    randomise(refiner)
    v, x, e = torch.randn(1, 4, 3, 12, 12), torch.randn(1, 4, 3, 12, 12), torch.randn(1, 3, 32)
    base = refiner(v, x, e)
    v2 = v.clone()
    v2[0, :, 1, 6, 6] += 1.0  # one cell of the middle frame
    changed = (refiner(v2, x, e) - base).abs().amax(1)[0] > 0  # [F, H, W]
    assert not changed[0].any() and not changed[2].any()  # the other frames: untouched
    rows, cols = torch.nonzero(changed[1], as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 9, 3, 9)  # three 3x3 convs: 7x7 cells


def test_checkpoint_round_trip_with_a_refiner_and_files_without_one_unchanged(tmp_path):
    from streamdit.io.checkpoint import load_checkpoint, read_metadata, save_checkpoint

    cfg = dataclasses.replace(TINY, patch_size=(1, 2, 2), head_conv=8)
    model = randomise(WanDiT(cfg))
    save_checkpoint(str(tmp_path / "r.safetensors"), model, cfg)
    loaded = load_checkpoint(str(tmp_path / "r.safetensors")).model.eval()
    x, t, context = inputs(size=8)
    with torch.no_grad():
        assert torch.equal(loaded(x, t, context), model(x, t, context))
    assert json.loads(read_metadata(str(tmp_path / "r.safetensors"))["model_config"])["head_conv"] == 8
    # no refiner: the stored config has no such field, as files written before it (older releases read them)
    assert "head_conv" not in json.loads(TINY.to_json())
    assert ModelConfig.from_dict(json.loads(TINY.to_json())) == TINY


def test_cached_call_runs_the_refiner_like_the_full_call():
    from streamdit.sampling.causal import CacheSpec, KVCache
    from streamdit.sampling.partition import Partition

    cfg = dataclasses.replace(TINY, patch_size=(1, 2, 2), head_conv=8)
    model = randomise(WanDiT(cfg))
    x, _, context = inputs(batch=1, frames=2, size=8)
    t = torch.full((1, 2), 500.0)
    cache = KVCache(CacheSpec(window=4), Partition(chunks=1, chunk_frames=2), 16, cfg.num_layers, cfg.num_heads,
                    cfg.head_dim, grid_hw=(4, 4))
    cache.plan_denoise(2)  # nothing cached yet: the call sees its own frames, as the full forward does
    with torch.no_grad():
        torch.testing.assert_close(model.forward_cached(x, t, context[:, :4], cache),
                                   model(x, t, context[:, :4]), rtol=1e-5, atol=1e-5)


def test_negative_refiner_width_is_refused():
    with pytest.raises(ValueError, match="head_conv=-1 must be 0"):
        dataclasses.replace(TINY, head_conv=-1).validate()
    from streamdit.train.toy import ToyRecipe
    with pytest.raises(ValueError, match="head_conv must be 0"):
        ToyRecipe(head_conv=-2)
