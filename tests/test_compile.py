"""WanDiT.use_compile: torch.compile (inductor, CPU) gives the eager numbers; a failing compiler falls back once."""
import warnings

import pytest
import torch

from streamdit.network.config import ModelConfig
from streamdit.network.model import WanDiT

CFG = ModelConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=1, in_dim=4, out_dim=4, text_dim=16, text_len=8,
                  freq_dim=16)


def model_and_inputs():
    torch.manual_seed(0)
    model = WanDiT(CFG)
    with torch.no_grad():  # Wan zero-inits the head: make every weight matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 4, 3, 8, 8)
    t = torch.tensor([[900.0, 500.0, 100.0], [800.0, 400.0, 50.0]])
    return model.eval(), (x, t, torch.randn(2, 5, 16))


def failing_backend(gm, example_inputs):
    raise RuntimeError("no C++ compiler here")


def test_failing_compiler_warns_once_and_runs_eagerly():
    model, args = model_and_inputs()
    with torch.no_grad():
        eager = model(*args)
        model.use_compile(backend=failing_backend)
        assert model.compile_enabled
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first, second = model(*args), model(*args)
    messages = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert len(messages) == 1 and "no C++ compiler here" in messages[0]
    assert not model.compiled and model.compile_enabled
    torch.testing.assert_close(first, eager)
    torch.testing.assert_close(second, eager)


def test_input_errors_are_not_hidden_by_the_fallback():
    model, (x, t, context) = model_and_inputs()
    model.use_compile(backend=failing_backend)
    with torch.no_grad(), pytest.raises(ValueError, match="not multiples of patch_size"):
        model(x[..., :7], t, context)  # rejected before the compiled part: a plain error, no fallback
    assert model.compile_enabled


def test_inductor_matches_eager_and_training_stays_eager():
    model, args = model_and_inputs()
    with torch.no_grad():
        eager = model(*args)
        model.use_compile()
        compiled = model(*args)
    assert model.compiled, "inductor could not compile on this machine (is a C++ compiler installed?)"
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    model.train()
    out = model(*args)  # grad enabled: the eager path, so backward works as in training
    out.square().mean().backward()
    assert model.blocks[0].ffn[0].weight.grad is not None
    model.use_compile(False)
    assert not model.compile_enabled
