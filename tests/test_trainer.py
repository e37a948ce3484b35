"""The training loop: schedule, exact resume, interrupt safety, clear errors, logs and plots, torchrun."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from streamdit.train.plot import plot_losses
from streamdit.train.trainer import CheckpointError, TrainConfig, Trainer, ema_decay, read_log

WORKER = Path(__file__).parent / "train_workers" / "ddp_worker.py"


def make(out, steps=8, ema=0.9, **kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    target = torch.randn(4, generator=torch.Generator().manual_seed(3))

    def data(step, g):
        x = torch.randn(16, 4, generator=g)
        return x, (x @ target).unsqueeze(1)

    def loss_fn(m, batch, g):
        x, y = batch
        noise = 0.01 * torch.randn(y.shape, generator=g)  # the loss generator must resume too
        return (m(x) - y - noise).pow(2).mean(), {"extra": 1.0}

    cfg = TrainConfig(out=str(out), steps=steps, lr=1e-2, warmup=2, ema=ema, checkpoint_every=3, log_every=1, **kw)
    return Trainer(model, loss_fn, data, cfg)


def weights(trainer):
    return {**{f"m.{k}": v for k, v in trainer.module.state_dict().items()},
            **{f"e.{k}": v for k, v in trainer.ema.state_dict().items()}}


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(out="x", steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.1) and cfg.lr_at(9) == pytest.approx(1.0)
    assert cfg.lr_at(10) == pytest.approx(1.0) and cfg.lr_at(100) == pytest.approx(0.1)
    assert cfg.lr_at(50) < cfg.lr_at(20)


def test_ema_warms_up_instead_of_keeping_the_initial_weights(tmp_path):
    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 10**6) == 0.999
    assert all(ema_decay(0.999, t) <= ema_decay(0.999, t + 1) for t in range(2000))
    tr = make(tmp_path, steps=1, ema=0.999)
    init = [p.detach().clone() for p in tr.module.parameters()]
    tr.run()
    for e, p, p0 in zip(tr.ema.parameters(), tr.module.parameters(), init):
        # after one step the average sits 90% of the way to the trained weights, not at 0.1% of the way
        assert torch.allclose(e, p0 + 0.9 * (p.detach() - p0), atol=1e-6)
    assert tr.raw_module() is tr.module


def test_loss_falls_and_log_and_plot_are_written(tmp_path):
    tr = make(tmp_path, steps=120)
    losses = tr.run()
    assert sum(losses[-10:]) / 10 < 0.2 * sum(losses[:10]) / 10
    rows = read_log(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 121))
    assert {"loss", "lr", "grad_norm", "extra"} <= set(rows[0])
    png = plot_losses({"toy": tmp_path / "log.csv"}, tmp_path / "loss.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_is_exact(tmp_path):
    straight = make(tmp_path / "a")
    straight.run()
    first = make(tmp_path / "b")
    first.run(steps=5)  # checkpoints at 3 and 5
    second = make(tmp_path / "b")
    assert second.resume() and second.step == 5
    second.run()
    a, b = weights(straight), weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    la, lb = read_log(tmp_path / "a" / "log.csv"), read_log(tmp_path / "b" / "log.csv")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]  # the resumed log has no gaps or repeats
    assert len(list((tmp_path / "b").glob("checkpoint-*.pt"))) == 2  # keep=2


def test_bfloat16_autocast_trains_in_bfloat16_and_resumes_exactly(tmp_path):
    seen = []

    def recording(tr):
        inner = tr.loss_fn

        def loss_fn(m, batch, g):
            seen.append(m[0](batch[0]).dtype)  # the first layer's output: bf16 under autocast
            return inner(m, batch, g)
        tr.loss_fn = loss_fn
        return tr

    straight = recording(make(tmp_path / "a", steps=60, autocast="bfloat16"))
    losses = straight.run()
    assert set(seen) == {torch.bfloat16}
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    assert all(p.dtype == torch.float32 for p in straight.module.parameters())  # master weights stay float32
    first = make(tmp_path / "b", steps=60, autocast="bfloat16")
    first.run(steps=30)
    second = make(tmp_path / "b", steps=60, autocast="bfloat16")
    assert second.resume() and second.step == 30
    second.run()
    a, b = weights(straight), weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="autocast must be"):
        TrainConfig(out="x", steps=1, autocast="float16")


def test_compiled_training_matches_eager_and_checkpoints_the_plain_module(tmp_path):
    eager = make(tmp_path / "a", steps=6)
    eager.run()
    compiled = make(tmp_path / "b", steps=6, compile=True)
    assert compiled.step_model is not compiled.model
    compiled.run()
    # the module and its EMA stay plain: a copy of an in-place compiled module would call the original's forward
    assert compiled.module._compiled_call_impl is None and compiled.ema._compiled_call_impl is None
    a, b = weights(eager), weights(compiled)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    state = torch.load(tmp_path / "b" / "checkpoint-0000006.pt", weights_only=True)
    assert set(state["model"]) == set(eager.module.state_dict())  # no _orig_mod. prefixes


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(tmp_path):
    straight = make(tmp_path / "a")
    straight.run()
    tr = make(tmp_path / "b")
    data = tr.data

    def interrupting(step, g):
        if step == 4:
            raise KeyboardInterrupt
        return data(step, g)

    tr.data = interrupting
    with pytest.raises(KeyboardInterrupt):
        tr.run()
    assert (tmp_path / "b" / "checkpoint-0000004.pt").is_file()
    again = make(tmp_path / "b")
    assert again.resume() and again.step == 4
    again.run()
    a, b = weights(straight), weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_checkpoint_is_named(tmp_path):
    tr = make(tmp_path, steps=3)
    tr.run()
    path = tr.latest()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read training checkpoint .*checkpoint-0000003.pt"):
        make(tmp_path).resume()


def test_non_finite_loss_stops_with_advice(tmp_path):
    tr = make(tmp_path, steps=3)
    tr.loss_fn = lambda m, batch, g: (m(batch[0]).sum() * float("nan"), {})
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        tr.run()


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_two_gloo_processes_keep_identical_weights(tmp_path, parallel):
    steps = 80
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STREAMDIT_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(tmp_path), parallel, str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for part in ("model", "ema"):
        assert r0[part].keys() == r1[part].keys() and len(r0[part]) > 0
        assert all(torch.equal(r0[part][k], r1[part][k]) for k in r0[part]), part
    losses = [float(r["loss"]) for r in read_log(tmp_path / "log.csv")]
    assert len(losses) == steps
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10, losses
    ckpt = torch.load(sorted(tmp_path.glob("checkpoint-*.pt"))[-1], weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == steps
    assert all(torch.equal(ckpt["model"][k], r0["model"][k]) for k in r0["model"])
