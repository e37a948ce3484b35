import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from streamdit.io.checkpoint import load_checkpoint, save_checkpoint
from streamdit.pipeline import Pipeline


def save_tiny(bundle, path, **kw):
    save_checkpoint(str(path), bundle.model, bundle.config, text_encoder=bundle.text_encoder, codec=bundle.codec,
                    defaults=bundle.defaults, meta={"note": "test"}, **kw)


def test_round_trip_gives_identical_streams(tiny_bundle, tiny_pipeline, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_tiny(tiny_bundle, path)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert json.loads(meta["model_config"])["dim"] == 32 and meta["format"] == "streamdit"
    assert "blocks.0.self_attn.q.weight" in keys and any(k.startswith("text_encoder.") for k in keys)
    loaded = Pipeline.load(str(path))
    a = torch.cat(list(tiny_pipeline.stream("a pig", seed=1).frames(8)))
    b = torch.cat(list(loaded.stream("a pig", seed=1).frames(8)))
    assert torch.equal(a, b)
    assert loaded.bundle.meta == {"note": "test"}


def test_bf16_load(tiny_bundle, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_tiny(tiny_bundle, path, dtype=torch.bfloat16)
    b = load_checkpoint(str(path), dtype=torch.bfloat16)
    assert next(b.model.parameters()).dtype == torch.bfloat16
    assert b.text_encoder.positions.dtype == torch.float32


def test_shape_mismatch_is_refused_with_names(tiny_bundle, tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_tiny(tiny_bundle, path)
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors["blocks.1.ffn.0.weight"] = torch.zeros(65, 32)
    del tensors["head.modulation"]
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ValueError) as err:
        load_checkpoint(str(bad))
    msg = str(err.value)
    assert "blocks.1.ffn.0.weight: file (65, 32), config (64, 32)" in msg and "missing: head.modulation" in msg


def test_missing_and_corrupt_files(tiny_bundle, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nope.safetensors"))
    path = tmp_path / "tiny.safetensors"
    save_tiny(tiny_bundle, path)
    data = path.read_bytes()
    trunc = tmp_path / "truncated.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(str(trunc))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_checkpoint(str(garbage))
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="no StreamDiT metadata"):
        load_checkpoint(str(plain))
