"""Choosing a family: one Wan-shaped file runs causally or bidirectionally as chosen, from the entry of a
trainer's .pt file that the family's authors load; our own files name their family; the CLI end to end."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamdit.codecs.taehv import TAEHVCodec
from streamdit.io.checkpoint import save_checkpoint
from streamdit.io.video import read_video
from streamdit.network.config import ModelConfig
from streamdit.network.model import WanDiT
from streamdit.network.text import hashed_text_encoder
from streamdit.pipeline import Pipeline
from streamdit.sampling.causal import CausalDenoiser
from streamdit.sampling.denoiser import ModelDenoiser
from streamdit.sampling.families import FAMILIES
from streamdit.wan.loading import streaming_defaults

ROOT = Path(__file__).resolve().parents[1]
CFG = ModelConfig(dim=128, ffn_dim=128, num_heads=1, num_layers=2, in_dim=4, out_dim=4, text_dim=32, text_len=512,
                  freq_dim=32)
SIZE = dict(width=48, height=32)

pytestmark = pytest.mark.usefixtures("one_thread")


def weights(seed: int) -> dict:
    torch.manual_seed(seed)
    model = WanDiT(CFG)
    with torch.no_grad():
        model.head.head.weight.normal_(0, 0.1)
    return {"model." + k: v for k, v in model.state_dict().items()}  # the authors' wrapper prefix


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("families")
    torch.save({"generator": weights(1), "generator_ema": weights(2), "critic": weights(3)}, d / "self_forcing.pt")
    torch.save({"generator": weights(4)}, d / "causvid.pt")  # CausVid keeps no EMA
    torch.manual_seed(5)
    torch.save(TAEHVCodec(4, [16, 8, 8, 8]).state_dict(), d / "taew.pth")
    return d


def load(files, name, family):
    pipe = Pipeline.load(str(files / name), decoder=str(files / "taew.pth"), family=family)
    return pipe.with_text_encoder(hashed_text_encoder(CFG.text_dim, CFG.text_len))


def first_weight(pipe) -> torch.Tensor:
    return pipe.bundle.model.blocks[0].self_attn.q.weight


@pytest.mark.parametrize("family,key", [("self-forcing", "generator_ema"), ("causvid", "generator"),
                                        ("causal-forcing", "generator"), ("causal-forcing-frame", "generator_ema")])
def test_each_family_loads_the_entry_its_authors_load(files, family, key):
    pipe = load(files, "self_forcing.pt", family)
    expected = torch.load(files / "self_forcing.pt", weights_only=True)[key]["model.blocks.0.self_attn.q.weight"]
    assert torch.equal(first_weight(pipe), expected)
    assert pipe.family.name == family and f"family {family}" in pipe.describe()


def test_a_missing_entry_names_the_family_and_what_the_file_has(files):
    with pytest.raises(ValueError, match=r"family self-forcing loads the 'generator_ema' entry.*'generator'.*--family"):
        load(files, "causvid.pt", "self-forcing")
    with pytest.raises(ValueError, match="unknown model family 'selfforcing'; choose one of wan, self-forcing"):
        load(files, "causvid.pt", "selfforcing")


def test_one_file_two_families_each_streams_its_own_way(files):
    causal = load(files, "causvid.pt", "causvid")
    bidir = load(files, "causvid.pt", "wan")
    assert torch.equal(first_weight(causal), first_weight(bidir))
    a, b = causal.stream("a cat walking", **SIZE), bidir.stream("a cat walking", **SIZE)
    assert isinstance(a.denoise, CausalDenoiser) and isinstance(b.denoise, ModelDenoiser)
    fa, fb = a.take(9), b.take(9)
    assert fa.shape == fb.shape == (9, 32, 48, 3)
    # causal: one chunk of 3 latent frames = 3 CausVid steps (the first chunk's cache pass waits for the next)
    assert a.calls == 3 and a.config.partition.describe().startswith("uniform: K=0 reference + N=1 chunks x c=3")
    assert a.denoise.cache.frames_seen == 0
    a.take(12)
    assert a.calls == 3 + 1 + 3 and a.denoise.cache.frames_seen == 3  # then the cache pass, then 3 steps
    assert b.config.cache is None and b.calls > 3  # the training-free buffer: 16 frames, 2 micro steps
    assert (fa - fb).abs().max() > 1e-3


def test_causal_families_refuse_what_they_were_not_trained_for(files):
    pipe = load(files, "causvid.pt", "causvid")
    with pytest.raises(ValueError, match="guidance-distilled.*cfg 1"):
        pipe.stream("a cat", cfg_scale=2.0, **SIZE)
    with pytest.raises(ValueError, match="trained with chunk_frames=3; chunk_frames=2"):
        pipe.stream("a cat", chunk_frames=2, **SIZE)
    with pytest.raises(ValueError, match="trained with micro_steps=3"):
        pipe.stream("a cat", micro_steps=4, **SIZE)
    with pytest.raises(ValueError, match="guidance-distilled.*cfg 1"):
        pipe.edit(torch.zeros(8, 32, 48, 3), "a cat", cfg_scale=2.0)  # editing runs the family's own sampler
    with pytest.raises(ValueError, match="window.*cannot hold the sink"):
        pipe.stream("a cat", window=4, sink=2, **SIZE)
    with pytest.raises(ValueError, match="own step table; cold_micro_steps=4 cannot work"):
        pipe.stream("a cat", cold_micro_steps=4, **SIZE)
    with pytest.raises(ValueError, match="own step table; cold_micro_steps cannot work"):
        pipe.edit(torch.zeros(8, 32, 48, 3), "a cat", cold_micro_steps=4)
    with pytest.raises(ValueError, match="window/sink/recache set a causal family"):
        load(files, "causvid.pt", "wan").stream("a cat", window=12, **SIZE)


def test_our_own_files_name_their_family(tmp_path):
    torch.manual_seed(0)
    model = WanDiT(CFG)
    codec = TAEHVCodec(4, [16, 8, 8, 8])
    path = tmp_path / "ours.safetensors"
    save_checkpoint(str(path), model, CFG, codec=codec, defaults=streaming_defaults(codec),
                    meta={"family": "self-forcing"})
    assert Pipeline.load(str(path)).family is FAMILIES["self-forcing"]
    assert Pipeline.load(str(path), family="wan").family is FAMILIES["wan"]  # the user's choice wins


def test_cli_generates_with_a_causal_family(files, tmp_path):
    out = tmp_path / "sf.mp4"
    r = subprocess.run([sys.executable, "-m", "streamdit", "generate", "--model", str(files / "self_forcing.pt"),
                        "--family", "self-forcing", "--decoder", str(files / "taew.pth"), "--text-encoder", "hashed",
                        "--prompt", "a corgi on a beach", "--width", "48", "--height", "32", "--seconds", "2",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "STREAMDIT_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert "family self-forcing (Self-Forcing" in r.stderr and "timesteps [1000, 937.5, 833.333, 625]" in r.stderr
    frames, fps = read_video(str(out))
    assert frames.shape == (32, 32, 48, 3) and fps == 16.0
    r = subprocess.run([sys.executable, "-m", "streamdit", "generate", "--model", str(files / "causvid.pt"),
                        "--family", "self-forcing", "--decoder", str(files / "taew.pth"), "--text-encoder", "hashed",
                        "--prompt", "a corgi", "--out", str(tmp_path / "x.mp4")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "generator_ema" in r.stderr and "--family" in r.stderr


def lora_state(seed: int, rank: int = 4) -> dict:
    """A PEFT state dict in LongLive's layout: every Linear of every block."""
    g = torch.Generator().manual_seed(seed)
    model = WanDiT(CFG)
    out = {}
    for name, m in model.named_modules():
        if name.startswith("blocks.") and isinstance(m, torch.nn.Linear):
            out[f"base_model.model.{name}.lora_A.weight"] = 0.05 * torch.randn(rank, m.in_features, generator=g)
            out[f"base_model.model.{name}.lora_B.weight"] = 0.05 * torch.randn(m.out_features, rank, generator=g)
    return out


def test_longlive_lora_applied_at_load_equals_the_merged_weights(files, tmp_path):
    torch.save({"generator": weights(7)}, tmp_path / "longlive_base.pt")
    lora = lora_state(8)
    torch.save({"generator_lora": lora, "critic_lora": {}, "step": 3}, tmp_path / "lora.pt")
    assert len(lora) == 2 * 10 * CFG.num_layers  # q, k, v, o of both attentions, ffn.0, ffn.2
    with pytest.warns(UserWarning, match="base model plus a LoRA"):
        base = load(files, str(tmp_path / "longlive_base.pt"), "longlive")
    pipe = Pipeline.load(str(tmp_path / "longlive_base.pt"), decoder=str(files / "taew.pth"), family="longlive",
                         lora=str(tmp_path / "lora.pt"))
    pipe = pipe.with_text_encoder(hashed_text_encoder(CFG.text_dim, CFG.text_len))
    assert pipe.bundle.meta["lora"]["modules"] == 10 * CFG.num_layers
    # the merge written out by hand: W + B A (LongLive's alpha = rank, so scale 1)
    merged = {k: v.clone() for k, v in weights(7).items()}
    for key, a in lora.items():
        if ".lora_A." in key:
            name = key[len("base_model.model."):-len(".lora_A.weight")]
            b = lora[key.replace("lora_A", "lora_B")]
            merged[f"model.{name}.weight"] += b @ a
    torch.save({"generator": merged}, tmp_path / "merged.pt")
    with pytest.warns(UserWarning, match="base model plus a LoRA"):  # merged by hand: the loader cannot know
        by_hand = load(files, str(tmp_path / "merged.pt"), "longlive")

    def latents(p):
        stream = p.stream("a cat walking", **SIZE)
        return torch.cat([stream.next_latent_chunk() for _ in range(3)], dim=1)

    a = latents(pipe)
    torch.testing.assert_close(a, latents(by_hand), rtol=0, atol=1e-5)
    assert (a - latents(base)).abs().max() > 100 * 1e-5  # the LoRA matters
    with pytest.raises(ValueError, match="no LoRA weights for a Wan DiT"):
        torch.save({"generator_lora": {"x.weight": torch.zeros(2)}}, tmp_path / "bad.pt")
        Pipeline.load(str(tmp_path / "longlive_base.pt"), decoder=str(files / "taew.pth"), family="longlive",
                      lora=str(tmp_path / "bad.pt"))


def test_cli_edits_with_a_causal_family_and_a_taehv_encoder(files, tmp_path):
    """`edit` on a Self-Forcing .pt with a TAEHV file that has its encoder: the source's length and rate come back,
    and the strength used is one of the family's entry points."""
    from streamdit.io.video import VideoWriter

    codec = TAEHVCodec(4, [16, 8, 8, 8], encoder_width=8)
    torch.save(codec.state_dict(), tmp_path / "taew_full.pth")
    src = tmp_path / "src.mp4"
    g = torch.Generator().manual_seed(0)
    with VideoWriter(src, 16.0) as w:
        w.write(torch.rand(1, 32, 48, 3, generator=g).expand(23, -1, -1, -1))
    out = tmp_path / "edited.mp4"
    r = subprocess.run([sys.executable, "-m", "streamdit", "edit", "--model", str(files / "self_forcing.pt"),
                        "--family", "self-forcing", "--decoder", str(tmp_path / "taew_full.pth"),
                        "--text-encoder", "hashed", "--input", str(src), "--prompt", "a corgi", "--strength", "0.6",
                        "--width", "48", "--height", "32", "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "STREAMDIT_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    assert "strength 0.5 (asked 0.6; allowed: 0, 0.25, 0.5, 0.75, 1)" in r.stderr
    assert "family self-forcing" in r.stderr
    frames, fps = read_video(str(out))
    assert frames.shape == (23, 32, 48, 3) and fps == 16.0
