"""Fine-tuning a Wan-shaped DiT into StreamDiT: the latent dataset folder, both stages in bf16 with activation
checkpointing, exact resume, the export streams, and two gloo processes under torchrun with FSDP2 (tiny, CPU)."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from streamdit.codecs.taehv import TAEHVCodec
from streamdit.network.config import ModelConfig
from streamdit.network.text import ExternalTextEncoder
from streamdit.pipeline import Pipeline
from streamdit.train.latent_folder import LatentFolder, write_clip, write_null_context
from streamdit.train.trainer import read_log
from streamdit.train.wan_finetune import WanFinetune, run

CFG = ModelConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, in_dim=4, out_dim=4, text_dim=16, text_len=8,
                  freq_dim=16)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("STREAMDIT_NO_PROGRESS", "1")
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def data(tmp_path):
    """Six clips: five 4x4-latent clips of 8..12 frames, one 4x6 clip (its own bucket), one too short."""
    root = tmp_path / "data"
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        base = torch.randn(4, 1, 4, 4, generator=g)
        write_clip(root, f"clip{i}", base + 0.1 * torch.randn(4, 8 + i, 4, 4, generator=g),
                   torch.randn(3 + i, 16, generator=g), caption=f"clip {i}")
    write_clip(root, "wide", torch.randn(4, 9, 4, 6, generator=g), torch.randn(5, 16, generator=g))
    write_clip(root, "short", torch.randn(4, 3, 4, 4, generator=g), torch.randn(5, 16, generator=g))
    write_null_context(root, torch.randn(2, 16, generator=g))
    return root


def test_latent_folder_crops_pads_and_buckets(data):
    ds = LatentFolder(data, batch=3, frames=4, text_len=8, text_dim=16, latent_channels=4)
    assert len(ds) == 6 and ds.skipped == ["short.safetensors (3)"]
    clips = {p.stem: __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(p))
             for p in (data / "clips").glob("*.safetensors")}
    g = torch.Generator().manual_seed(1)
    shapes = set()
    for step in range(40):
        batch = ds(step, g)
        x, ctx = batch["latents"], batch["context"]
        shapes.add(tuple(x.shape))
        assert x.shape[:3] == (3, 4, 4) and ctx.shape == (3, 8, 16)
        assert batch["null_context"].shape == (8, 16) and batch["null_context"][2:].abs().sum() == 0
        for b in range(3):  # every sample is a real crop of one clip, with that clip's context zero-padded
            hits = [n for n, c in clips.items() if c["latents"].shape[2:] == x.shape[3:] and any(
                torch.equal(c["latents"][:, s:s + 4], x[b]) for s in range(c["latents"].shape[1] - 3))]
            assert len(hits) == 1
            own = clips[hits[0]]["context"]
            assert torch.equal(ctx[b, :len(own)], own) and ctx[b, len(own):].abs().sum() == 0
    assert shapes == {(3, 4, 4, 4, 4), (3, 4, 4, 4, 6)}  # both buckets drawn, one size per batch


def test_latent_folder_errors(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="no clips in .*clips.*latents.*context"):
        LatentFolder(tmp_path / "empty", 1, 4, 8, 16)
    with pytest.raises(ValueError, match="text_dim 32 .*4096"):
        LatentFolder(data, 1, 4, 8, 32)
    with pytest.raises(ValueError, match="latents have 4 channels, the model takes 5"):
        LatentFolder(data, 1, 4, 8, 16, latent_channels=5)
    with pytest.raises(ValueError, match="shorter than the 40 latent frames"):
        LatentFolder(data, 1, 40, 8, 16)
    from safetensors.torch import save_file
    save_file({"latents": torch.zeros(4, 8, 4, 4)}, str(data / "clips" / "nocontext.safetensors"))
    with pytest.raises(ValueError, match="needs 'latents' and 'context'"):
        LatentFolder(data, 1, 4, 8, 16)
    (data / "clips" / "nocontext.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable safetensors clip"):
        LatentFolder(data, 1, 4, 8, 16)


def recipe(data, out, **kw):
    base = dict(data=str(data), out=str(out), config=CFG, steps=6, lr=3e-3, warmup=2, batch=2, chunks=2,
                chunk_frames=2, checkpoint_every=3, log_every=1, shift=3.0)
    from streamdit.train.flow import PartitionMix
    base["mix"] = PartitionMix(4, (1, 2, 4), (0.3, 0.4, 0.3))
    base.update(kw)
    return WanFinetune(**base)


def test_teacher_then_student_in_bf16_with_checkpointing_resume_and_stream(tmp_path, data):
    r = recipe(data, tmp_path / "teacher")
    assert r.precision == "bf16" and r.checkpointing
    path = run(r)
    log = read_log(tmp_path / "teacher" / "log.csv")
    assert [int(row["step"]) for row in log] == [1, 2, 3, 4, 5, 6] and all(float(row["loss"]) > 0 for row in log)
    first = [row["loss"] for row in log]
    run(dataclasses.replace(r, steps=8))  # resumes at step 6 and continues
    log = read_log(tmp_path / "teacher" / "log.csv")
    assert [row["loss"] for row in log][:6] == first and int(log[-1]["step"]) == 8
    assert sorted(p.name for p in (tmp_path / "teacher").glob("checkpoint-*.pt")) == [
        "checkpoint-0000006.pt", "checkpoint-0000008.pt"]

    student = run(recipe(data, tmp_path / "student", stage="student", init=str(path), config=None, steps=3,
                         teacher_micro_steps=2, cfg_scale=2.0))
    taehv = TAEHVCodec(4, [16, 8, 8, 8]).eval()
    for file, micro in ((path, 4), (student, 1)):  # the teacher streams with its guided s
        pipe = Pipeline.load(str(file), decoder=taehv).with_text_encoder(
            ExternalTextEncoder(lambda p: torch.ones(2, 16), 16, 8))
        d = pipe.bundle.defaults
        assert (d.buffer_frames, d.chunk_frames, d.micro_steps, d.width, d.height) == (4, 2, micro, 32, 32)
        assert pipe.stream("anything", buffer_frames=4).take(9).shape == (9, 32, 32, 3)


def test_recipe_rejects_a_mix_that_does_not_fit_the_partition(data, tmp_path):
    with pytest.raises(ValueError, match="4-frame buffers, the partition N=8 x c=2 has 16"):
        recipe(data, tmp_path, chunks=8)
    from streamdit.train.wan_finetune import default_mix
    assert WanFinetune(str(data), str(tmp_path)).mix.chunk_sizes == (1, 2, 4, 8, 16)  # c = B included
    mix = default_mix(12)
    assert mix.chunk_sizes == (1, 2, 4, 12) and mix.chunk_probs[-1] == 0.25


def test_torchrun_two_gloo_processes_fsdp_bf16(tmp_path, data):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STREAMDIT_NO_PROGRESS": "1"}
    config = json.dumps(dataclasses.asdict(CFG))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "streamdit",
           "finetune-wan", "--data", str(data), "--out", str(tmp_path / "run"), "--config", config, "--steps", "4",
           "--lr", "1e-3", "--checkpoint-every", "2", "--parallel", "fsdp", "--chunks", "2", "--chunk-frames", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(sorted((tmp_path / "run").glob("checkpoint-*.pt"))[-1], weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 4
    assert (tmp_path / "run" / "streamdit-wan-teacher.safetensors").is_file()
    assert int(read_log(tmp_path / "run" / "log.csv")[-1]["step"]) == 4
