"""Wan 2.1 DiT checkpoints in every published layout load into WanDiT with the same weights (CPU, tiny models)."""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from streamdit.network.config import ModelConfig
from streamdit.network.model import WanDiT
from streamdit.wan import infer_wan_config, load_wan_dit, read_wan_state

CFG = ModelConfig(dim=96, ffn_dim=128, num_heads=2, num_layers=2, in_dim=4, out_dim=4, text_dim=32, text_len=16,
                  freq_dim=32)
COMFY = "model.diffusion_model."


def load(path, **kwargs):
    """The loader with what the tiny config cannot tell from its weights (dim 96: heads; text_len)."""
    kwargs.setdefault("num_heads", CFG.num_heads)
    return load_wan_dit(str(path), text_len=CFG.text_len, **kwargs)


@pytest.fixture(scope="module")
def reference():
    """A tiny WanDiT with every parameter random (Wan zero-inits the head), its state dict, and an output."""
    torch.manual_seed(0)
    model = WanDiT(CFG)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if re.search(r"norm\w*\.weight", name) else 0.2 * noise)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model.eval(), state, run(model.eval())


def run(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, CFG.in_dim, 3, 8, 8, generator=g)
    t = torch.tensor([[900.0, 400.0, 30.0], [10.0, 500.0, 999.0]])  # per-frame timesteps
    context = torch.randn(2, CFG.text_len, CFG.text_dim, generator=g)
    with torch.no_grad():
        return model(x, t, context)


def assert_same_weights(model, state, exact=True):
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        assert not loaded[k].is_meta and loaded[k].shape == v.shape, k
        if exact:
            assert torch.equal(loaded[k].float(), v.float()), k
        else:
            torch.testing.assert_close(loaded[k].float(), v.float(), msg=k)


def to_diffusers(key: str) -> str:
    """Wan original -> diffusers names, written independently of the loader's inverse map (reference-wan.md 1.6)."""
    rules = [(r"^text_embedding\.(\d)\.", lambda m: f"condition_embedder.text_embedder.linear_{int(m[1]) // 2 + 1}."),
             (r"^time_embedding\.(\d)\.", lambda m: f"condition_embedder.time_embedder.linear_{int(m[1]) // 2 + 1}."),
             (r"^time_projection\.1\.", "condition_embedder.time_proj."),
             (r"^head\.head\.", "proj_out."), (r"^head\.modulation$", "scale_shift_table"),
             (r"\.modulation$", ".scale_shift_table"), (r"\.self_attn\.", ".attn1."), (r"\.cross_attn\.", ".attn2."),
             (r"\.attn(\d)\.([qkv])\.", r".attn\1.to_\2."), (r"\.attn(\d)\.o\.", r".attn\1.to_out.0."),
             (r"\.norm3\.", ".norm2."), (r"\.ffn\.0\.", ".ffn.net.0.proj."), (r"\.ffn\.2\.", ".ffn.net.2.")]
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def fp8_scaled(state: dict) -> tuple[dict, dict]:
    """ComfyUI-style fp8 scaled file contents, and the dequantized weights they stand for."""
    out, dequantized = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, {}
    for k, v in state.items():
        if k.startswith("blocks.") and k.endswith(".weight") and v.ndim == 2:  # the Linear weights
            scale = v.abs().max() / 448.0  # e4m3fn's largest finite value
            q = (v / scale).to(torch.float8_e4m3fn)
            out[COMFY + k], out[COMFY + k[: -len("weight")] + "scale_weight"] = q, scale.reshape(())
            dequantized[k] = q.float() * scale
        else:
            out[COMFY + k] = v
            dequantized[k] = v
    return out, dequantized


def test_original_single_file(reference, tmp_path):
    model, state, out = reference
    save_file(state, tmp_path / "wan.safetensors")
    loaded, config, info = load(tmp_path / "wan.safetensors")
    assert config == CFG
    assert info["layout"] == "original" and info["prefix"] == "" and info["dtype"] == torch.float32
    assert_same_weights(loaded, state)
    assert torch.equal(run(loaded), out)
    assert not loaded.training


def test_comfyui_fp16_and_bf16(reference, tmp_path):
    _, state, out = reference
    for dtype in (torch.float16, torch.bfloat16):
        path = tmp_path / f"comfy_{dtype}.safetensors"
        save_file({COMFY + k: v.to(dtype) for k, v in state.items()}, path)
        loaded, config, info = load(path)
        assert info["prefix"] == COMFY and info["dtype"] == dtype == loaded.blocks[0].ffn[0].weight.dtype
        loaded32, _, _ = load(path, dtype=torch.float32)
        assert_same_weights(loaded32, {k: v.to(dtype) for k, v in state.items()})
        assert (run(loaded32) - out).abs().max() < 0.02 * out.abs().max()


def test_comfyui_fp8_scaled(reference, tmp_path):
    _, state, out = reference
    contents, dequantized = fp8_scaled(state)
    save_file(contents, tmp_path / "fp8.safetensors")
    loaded, _, info = load(tmp_path / "fp8.safetensors", dtype=torch.float32)
    assert info["quantization"] == "fp8-scaled" and "scaled_fp8" in info["ignored"]
    assert_same_weights(loaded, dequantized)
    assert (run(loaded) - out).abs().max() < 0.15 * out.abs().max()  # e4m3 keeps 3 mantissa bits
    default, _, info = load(tmp_path / "fp8.safetensors")
    assert info["dtype"] == torch.bfloat16 == default.blocks[1].self_attn.q.weight.dtype
    assert_same_weights(default, {k: v.bfloat16() for k, v in dequantized.items()})


def test_diffusers_sharded(reference, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    _, state, out = reference
    ref = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=48, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=32, ffn_dim=128, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
    ref.load_state_dict({to_diffusers(k): v for k, v in state.items()}, strict=True)
    folder = tmp_path / "transformer"
    ref.save_pretrained(folder, max_shard_size="200KB")  # diffusers writes the shards and the index itself
    shards = sorted(folder.glob("*-of-*.safetensors"))
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    assert len(shards) > 2 and index.is_file()
    for path in (folder, index, shards[1], tmp_path):  # folder, index, one shard, the pipeline folder above
        loaded, config, info = load_wan_dit(str(path), text_len=CFG.text_len)  # heads come from config.json
        assert config == CFG, path
        assert info["layout"] == "diffusers" and info["num_heads_from"] == "config.json"
        assert info["format"] == "sharded safetensors" and len(info["files"]) == len(shards)
        assert_same_weights(loaded, state)
        assert torch.equal(run(loaded), out)


def test_torch_files(reference, tmp_path):
    _, state, out = reference
    torch.save(state, tmp_path / "wan.pth")
    loaded, _, info = load(tmp_path / "wan.pth")
    assert info["format"] == "torch" and info["state_key"] is None
    assert_same_weights(loaded, state)
    assert torch.equal(run(loaded), out)


def test_self_forcing_dict(reference, tmp_path):
    """Self-Forcing/CausVid: {"generator": {"model.<key>": ...}, "generator_ema": ...} plus training state."""
    _, state, out = reference
    other = {k: v + 1 for k, v in state.items()}
    torch.save({"generator": {"model." + k: v for k, v in state.items()}, "step": 7}, tmp_path / "sf.pt")
    loaded, _, info = load(tmp_path / "sf.pt")
    assert info["state_key"] == "generator" and info["prefix"] == "model."
    assert_same_weights(loaded, state)
    assert torch.equal(run(loaded), out)
    both = {"generator": {"model._orig_mod." + k: v for k, v in other.items()},
            "generator_ema": {"model." + k: v for k, v in state.items()}}
    torch.save(both, tmp_path / "sf_ema.pt")
    assert_same_weights(load(tmp_path / "sf_ema.pt")[0], state)  # EMA weights by default
    assert_same_weights(load(tmp_path / "sf_ema.pt", state_key="generator")[0], other)
    torch.save({"generator": {"generator.model." + k: v for k, v in state.items()}}, tmp_path / "sf2.pt")
    assert load(tmp_path / "sf2.pt")[2]["prefix"] == "generator.model."


def test_truncated_files(reference, tmp_path):
    _, state, _ = reference
    save_file(state, tmp_path / "full.safetensors")
    torch.save(state, tmp_path / "full.pth")
    for name in ("full.safetensors", "full.pth"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / ("cut_" + name)
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=rf"cut_{re.escape(name)}.*incomplete or corrupt"):
            load(cut)


def test_missing_unexpected_and_wrong_shape(reference, tmp_path):
    _, state, _ = reference
    path = tmp_path / "bad.safetensors"
    save_file({k: v for k, v in state.items() if k != "blocks.1.ffn.2.bias"}, path)
    with pytest.raises(ValueError, match=r"missing.*blocks\.1\.ffn\.2\.bias"):
        load(path)
    save_file({**state, "blocks.0.extra.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"unexpected.*blocks\.0\.extra\.weight"):
        load(path)
    save_file({**state, "blocks.1.self_attn.k.bias": torch.zeros(95)}, path)
    with pytest.raises(ValueError, match=r"blocks\.1\.self_attn\.k\.bias: expected \(96,\), found \(95,\)"):
        load(path)
    shard_like = {k: v for k, v in state.items() if k.startswith("blocks.1.")}
    save_file(shard_like, path)
    with pytest.raises(ValueError, match="index"):
        load(path)


def test_head_count_needs_override_below_128(reference, tmp_path):
    _, state, _ = reference
    save_file(state, tmp_path / "wan.safetensors")
    with pytest.raises(ValueError, match="num_heads"):
        load_wan_dit(str(tmp_path / "wan.safetensors"))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    shapes["head.modulation"] = (1, 2, 1536)
    assert infer_wan_config(shapes).num_heads == 12  # Wan's head_dim 128


def test_refuses_variants(reference, tmp_path):
    _, state, _ = reference
    d = CFG.dim
    i2v = {**state, "img_emb.proj.0.weight": torch.ones(1280), "img_emb.proj.1.weight": torch.zeros(d, 1280),
           "blocks.0.cross_attn.k_img.weight": torch.zeros(d, d)}
    save_file({COMFY + k: v for k, v in i2v.items()}, tmp_path / "i2v.safetensors")
    with pytest.raises(ValueError, match=r"i2v\.safetensors.*image-to-video.*text-to-video"):
        load(tmp_path / "i2v.safetensors")
    wide = {**state, "patch_embedding.weight": torch.zeros(d, 36, 1, 2, 2)}  # Wan 2.2 I2V: no img_emb, 36 channels
    save_file(wide, tmp_path / "i2v22.safetensors")
    with pytest.raises(ValueError, match="image-to-video"):
        load(tmp_path / "i2v22.safetensors")
    vace = {**state, "vace_blocks.0.before_proj.weight": torch.zeros(d, d)}
    save_file(vace, tmp_path / "vace.safetensors")
    with pytest.raises(ValueError, match="VACE"):
        load(tmp_path / "vace.safetensors")


def test_refuses_vae_and_text_encoder(tmp_path):
    vae = {"encoder.conv1.weight": torch.zeros(8, 3, 3, 3, 3), "encoder.downsamples.0.residual.0.gamma": torch.ones(8),
           "decoder.conv1.weight": torch.zeros(8, 4, 3, 3, 3), "conv1.weight": torch.zeros(8, 8, 1, 1, 1)}
    save_file(vae, tmp_path / "vae.safetensors")
    with pytest.raises(ValueError, match=r"vae\.safetensors.*looks like a VAE, not a DiT"):
        load(tmp_path / "vae.safetensors")
    t5 = {"token_embedding.weight": torch.zeros(10, 8), "blocks.0.attn.q.weight": torch.zeros(8, 8)}
    torch.save(t5, tmp_path / "t5.pth")
    with pytest.raises(ValueError, match="looks like a text encoder, not a DiT"):
        load(tmp_path / "t5.pth")


def test_reads_shapes_without_tensors(reference, tmp_path):
    _, state, _ = reference
    save_file({COMFY + k: v.half() for k, v in state.items()}, tmp_path / "wan.safetensors")
    with read_wan_state(str(tmp_path / "wan.safetensors")) as wan:
        assert wan.shapes == {k: tuple(v.shape) for k, v in state.items()}
        assert wan.file_dtype == torch.float16
        assert infer_wan_config(wan.shapes, num_heads=2, text_len=16) == CFG


def test_builds_on_meta(reference, tmp_path, monkeypatch):
    """The model is created on the meta device, so the loaded tensors are its only storage."""
    _, state, _ = reference
    save_file(state, tmp_path / "wan.safetensors")
    devices = []
    original = WanDiT.init_weights
    monkeypatch.setattr(WanDiT, "init_weights",
                        lambda self, *a, **k: (devices.append(self.patch_embedding.weight.device.type),
                                               original(self, *a, **k))[1])
    loaded, _, _ = load(tmp_path / "wan.safetensors")
    assert devices == ["meta"]
    assert all(not p.is_meta for p in loaded.parameters())


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import torch
    from safetensors.torch import load_file, save_file
    from streamdit.network.config import ModelConfig
    from streamdit.network.model import WanDiT
    from streamdit.wan import load_wan_dit

    cfg = ModelConfig(dim=512, ffn_dim=2048, num_heads=4, num_layers=6, in_dim=4, out_dim=4, text_dim=32,
                      text_len=16, freq_dim=32)
    path = sys.argv[1]
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WanDiT(cfg).state_dict().items()}
    state = {k: torch.randn(s) for k, s in shapes.items()}
    save_file(state, path)
    nbytes = sum(v.nbytes for v in state.values())
    del state

    def rss():  # anonymous and file-backed: safetensors may hand out tensors that map the file
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    def touch(model):  # fault every weight in, so lazily mapped pages count too
        for p in model.parameters():
            p.sum()
        return model

    def peak(fn):
        base, top, stop = rss(), [0], threading.Event()
        def sample():
            while not stop.is_set():
                top[0] = max(top[0], rss())
                time.sleep(0.0005)
        thread = threading.Thread(target=sample)
        thread.start()
        try:
            keep = fn()
            top[0] = max(top[0], rss())
        finally:
            stop.set()
            thread.join()
        del keep
        return top[0] - base

    def two_copies():  # the pattern the loader avoids: a full state dict plus an allocated model
        full = load_file(path)
        with torch.device("meta"):
            model = WanDiT(cfg)
        model.to_empty(device="cpu").load_state_dict(full)
        return touch(model), full

    good = peak(lambda: touch(load_wan_dit(path, num_heads=4)[0]))
    bad = peak(two_copies)
    print(json.dumps({"nbytes": nbytes, "good": good, "bad": bad}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads VmRSS from /proc")
def test_loading_holds_one_copy(tmp_path):
    """Peak resident memory while loading a ~110 MB file and using its weights stays near one copy.

    A fresh process with a fixed malloc mmap threshold, so freed tensors go back to the OS and VmRSS is exact.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "big.safetensors")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    m = json.loads(result.stdout.strip().splitlines()[-1])
    assert m["nbytes"] > 100e6
    assert 0.8 * m["nbytes"] < m["good"] < 1.3 * m["nbytes"], m
    assert m["bad"] > 1.7 * m["nbytes"], m  # the measurement does see a second copy
