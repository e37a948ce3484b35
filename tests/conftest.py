import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("STREAMDIT_NO_PROGRESS", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_bundle():
    """A small random model with a toy text encoder and the patch codec (fast on a CPU)."""
    from streamdit.codecs import PatchCodec
    from streamdit.io.checkpoint import Bundle
    from streamdit.network.config import ModelConfig, StreamDefaults
    from streamdit.network.model import WanDiT
    from streamdit.network.text import ToyTextEncoder, toy_vocabulary

    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, in_dim=12, out_dim=12, text_dim=16,
                      text_len=8, freq_dim=16)
    model = WanDiT(cfg)
    model.init_weights(0)
    with torch.no_grad():  # Wan zero-inits the head; make every weight matter for the tests
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    defaults = StreamDefaults(width=16, height=16, fps=8.0, codec={"kind": "patch", "patch": 2},
                              buffer_frames=8, chunk_frames=2, micro_steps=1)
    text = ToyTextEncoder(toy_vocabulary(), cfg.text_dim, cfg.text_len)
    return Bundle(model.eval(), cfg, text, PatchCodec(2), defaults, {"test": True})


@pytest.fixture()
def tiny_pipeline(tiny_bundle):
    from streamdit.pipeline import Pipeline

    return Pipeline(tiny_bundle, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions and models run faster on one thread (and far faster than two on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
