"""The umT5 text encoder (streamdit/umt5.py) against transformers' UMT5EncoderModel, on tiny random files in
ComfyUI's layout (fp32, fp16, bf16 and "fp8 scaled"), with a sentencepiece model trained here (CPU, seconds)."""
import io
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

spm = pytest.importorskip("sentencepiece")
transformers = pytest.importorskip("transformers")

from streamdit.network.text import TextEncoder  # noqa: E402
from streamdit.network.umt5 import load_umt5_encoder, load_umt5_text_encoder, relative_position_buckets  # noqa: E402

LAYERS = 2
SENTENCES = ["a pig walking right on grass", "a cat walking left on sand", "the camera pans over a city at night",
             "two dogs run along the beach", "a red car drives through the rain", "snow falls on a quiet village"]
PROMPTS = ["a pig walking right on grass", "", "the red camera pans over two dogs at night on the beach",
           "zebra ünïcode 42!"]
LONG = " ".join(SENTENCES * 12)  # far more tokens than TEXT_LEN: truncated, and distances past max_distance 128
TEXT_LEN = 160
COMFYUI = Path(__file__).resolve().parents[1].parent / "shared" / "hosts" / "ComfyUI-0.3.64.tar.gz"


def comfy_names(layers: int) -> list[str]:
    """ComfyUI's umT5 tensor names (comfy/text_encoders/t5.py module names, umT5: a position bias per layer)."""
    out = ["shared.weight", "encoder.final_layer_norm.weight"]
    for i in range(layers):
        a, f = f"encoder.block.{i}.layer.0.", f"encoder.block.{i}.layer.1."
        out += [a + f"SelfAttention.{n}.weight" for n in ("q", "k", "v", "o", "relative_attention_bias")]
        out += [a + "layer_norm.weight", f + "layer_norm.weight"]
        out += [f + f"DenseReluDense.{n}.weight" for n in ("wi_0", "wi_1", "wo")]
    return out


def is_linear(name: str) -> bool:
    return name.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi_0.weight", "wi_1.weight", "wo.weight"))


def quantize_fp8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's "fp8 scaled" storage of one weight: float8_e4m3fn values and a float32 scale, W ~ w8 * scale."""
    scale = (w.abs().max() / 448.0).float()
    return (w.float() / scale).to(torch.float8_e4m3fn), scale


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random umT5 (transformers), its sentencepiece model, and ComfyUI-layout files of it."""
    d = tmp_path_factory.mktemp("umt5")
    buf = io.BytesIO()
    # umT5's special ids: pad 0, end 1, unk 2, no begin token
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES * 4), model_writer=buf, vocab_size=48,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   hard_vocab_limit=False, minloglevel=2, num_threads=1)
    proto = buf.getvalue()
    (d / "spiece.model").write_bytes(proto)
    sp = spm.SentencePieceProcessor(model_proto=proto)

    torch.manual_seed(0)
    cfg = transformers.UMT5Config(vocab_size=sp.get_piece_size() + 3, d_model=32, d_kv=8, num_heads=4,
                                  num_layers=LAYERS, d_ff=64, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                                  relative_attention_num_buckets=32, relative_attention_max_distance=128,
                                  layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1)
    hf = transformers.UMT5EncoderModel(cfg).eval()
    with torch.no_grad():  # every tensor random and O(1) in effect, so any mix-up shows
        for name, p in hf.named_parameters():
            if "layer_norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif "relative_attention_bias" in name:
                p.normal_(0, 1.0)
            elif "shared" in name:
                p.normal_(0, 1.0)
            else:
                p.normal_(0, p.shape[1] ** -0.5)
    state = hf.state_dict()
    assert set(state) - {"encoder.embed_tokens.weight"} == set(comfy_names(LAYERS))  # transformers' names = ComfyUI's
    weights = {k: state[k].clone().contiguous() for k in comfy_names(LAYERS)}
    tok = torch.frombuffer(bytearray(proto), dtype=torch.uint8)

    files = {}
    for kind, dt in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        files[kind] = str(d / f"umt5_{kind}.safetensors")
        save_file({**{k: v.to(dt) for k, v in weights.items()}, "spiece_model": tok}, files[kind])
    fp8, deq = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn), "spiece_model": tok}, {}
    for k, v in weights.items():  # as ComfyUI's file: linears fp8 + scale_weight, the rest fp16
        if is_linear(k):
            w8, s = quantize_fp8(v)
            fp8[k], fp8[k[: -len("weight")] + "scale_weight"] = w8, s
            deq[k] = w8.float() * s
        else:
            fp8[k] = v.half()
            deq[k] = v.half().float()
    files["fp8"] = str(d / "umt5_fp8_scaled.safetensors")
    save_file(fp8, files["fp8"])
    files["no_tokenizer"] = str(d / "umt5_no_tokenizer.safetensors")
    save_file(weights, files["no_tokenizer"])
    return {"dir": d, "sp": sp, "hf": hf, "weights": weights, "dequantized": deq, "files": files,
            "proto": proto, "tok": tok}


def reference(tiny, prompts: list[str], text_len: int, weights: dict | None = None) -> torch.Tensor:
    """transformers' output on Wan's input: ids padded to text_len with the mask, padded rows zeroed."""
    hf = tiny["hf"]
    if weights is not None:
        hf = transformers.UMT5EncoderModel(hf.config).eval()
        hf.load_state_dict({**weights, "encoder.embed_tokens.weight": weights["shared.weight"]})
    ids = torch.zeros(len(prompts), text_len, dtype=torch.long)
    mask = torch.zeros(len(prompts), text_len, dtype=torch.long)
    for i, p in enumerate(prompts):
        t = (tiny["sp"].encode(p)[: text_len - 1] + [1])
        ids[i, : len(t)], mask[i, : len(t)] = torch.tensor(t), 1
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask).last_hidden_state
    return out * mask.unsqueeze(-1)


def test_matches_transformers_fp32(tiny):
    enc = load_umt5_text_encoder(tiny["files"]["fp32"], text_len=TEXT_LEN)
    assert isinstance(enc, TextEncoder) and (enc.text_len, enc.text_dim) == (TEXT_LEN, 32)
    prompts = PROMPTS + [LONG]
    out = enc.encode(prompts)
    assert out.shape == (len(prompts), TEXT_LEN, 32) and out.dtype == torch.float32
    ref = reference(tiny, prompts, TEXT_LEN)
    assert (out - ref).abs().max().item() < 1e-4
    # the prompt's rows (end token included) are filled, the rest zero; the empty prompt is its end token
    for i, p in enumerate(prompts):
        n = min(len(tiny["sp"].encode(p)) + 1, TEXT_LEN)
        assert out[i, :n].abs().sum(-1).min() > 0 and out[i, n:].abs().sum() == 0
    assert out[1, 0].abs().sum() > 0 and out[1, 1:].abs().max() == 0
    # one prompt at a time gives the same rows as in a batch
    assert (enc.encode([prompts[2]])[0] - out[2]).abs().max().item() < 1e-5
    # checkpoints store none of its weights (as with ComfyUI's CLIP)
    assert enc.spec["kind"] == "external" and len(enc.state_dict()) == 0


def test_tokenization_is_sentencepiece_plus_end_token(tiny):
    enc = load_umt5_text_encoder(tiny["files"]["fp32"], text_len=TEXT_LEN)
    sp = tiny["sp"]
    for p in PROMPTS:
        assert enc.tokenizer(p) == sp.encode(p) + [1]
    long = enc.tokenizer(LONG)
    assert len(long) == TEXT_LEN and long == sp.encode(LONG)[: TEXT_LEN - 1] + [1]
    # Wan's clean='whitespace': html entities and whitespace runs
    assert enc.tokenizer("  a  pig\n\twalking &amp;amp; grass ") == sp.encode("a pig walking & grass") + [1]


@pytest.mark.parametrize("kind,dtype", [("fp16", None), ("bf16", None), ("fp16", torch.float32)])
def test_half_precision_files(tiny, kind, dtype):
    """Weights kept as stored (or converted at load); computed in float32: exact to the rounded weights."""
    net, _ = load_umt5_encoder(tiny["files"][kind], dtype=dtype)
    stored = torch.float16 if kind == "fp16" else torch.bfloat16
    assert net.blocks[0].wi_0.weight.dtype == (dtype or stored) and net.embed.dtype == (dtype or stored)
    enc = load_umt5_text_encoder(tiny["files"][kind], dtype=dtype, text_len=TEXT_LEN)
    rounded = {k: v.to(stored).float() for k, v in tiny["weights"].items()}
    ref = reference(tiny, PROMPTS + [LONG], TEXT_LEN, rounded)
    assert (enc.encode(PROMPTS + [LONG]) - ref).abs().max().item() < 1e-4


def test_fp8_scaled_file(tiny):
    # kept fp8 (1 byte a weight), dequantized per layer in use
    net, _ = load_umt5_encoder(tiny["files"]["fp8"])
    assert net.blocks[1].wo.weight.dtype == torch.float8_e4m3fn and net.blocks[1].wo.scale is not None
    assert net.embed.dtype == torch.float16
    prompts = PROMPTS + [LONG]
    ref_deq = reference(tiny, prompts, TEXT_LEN, tiny["dequantized"])
    kept = load_umt5_text_encoder(tiny["files"]["fp8"], text_len=TEXT_LEN).encode(prompts)
    # exactly the network with fp8 * scale weights: same float32 tolerance as the fp32 file
    assert (kept - ref_deq).abs().max().item() < 1e-4
    at_load = load_umt5_text_encoder(tiny["files"]["fp8"], dtype=torch.float32, text_len=TEXT_LEN).encode(prompts)
    assert (at_load - ref_deq).abs().max().item() < 1e-4
    # dequantized at load into bf16: one more rounding (8 significant bits, relative 2^-9 per weight)
    bf16 = load_umt5_text_encoder(tiny["files"]["fp8"], dtype=torch.bfloat16, text_len=TEXT_LEN).encode(prompts)
    assert ((bf16 - ref_deq).norm() / ref_deq.norm()).item() < 0.02
    # against the unquantized model: e4m3 keeps 4 significant bits (relative rounding up to 2^-4 per weight,
    # about 2% rms), plus fp16 for the rest: 7.8% on the outputs (rms ~1 per row) of this seed; bound 15%
    full = reference(tiny, prompts, TEXT_LEN)
    rel = ((kept - full).norm() / full.norm()).item()
    assert 1e-3 < rel < 0.15


def test_buckets_match_transformers():
    attn = transformers.models.umt5.modeling_umt5.UMT5Attention(
        transformers.UMT5Config(relative_attention_num_buckets=32, relative_attention_max_distance=128),
        has_relative_attention_bias=True)
    pos = torch.arange(300)
    assert torch.equal(relative_position_buckets(300), attn._relative_position_bucket(pos[None, :] - pos[:, None]))


def test_separate_tokenizer_file(tiny):
    with pytest.raises(ValueError, match=r"no tokenizer inside.*'spiece_model'.*umt5_xxl_fp16\.safetensors"):
        load_umt5_text_encoder(tiny["files"]["no_tokenizer"])
    enc = load_umt5_text_encoder(tiny["files"]["no_tokenizer"], tokenizer=str(tiny["dir"] / "spiece.model"),
                                 text_len=TEXT_LEN)
    ref = reference(tiny, PROMPTS, TEXT_LEN)
    assert (enc.encode(PROMPTS) - ref).abs().max().item() < 1e-4


def test_prefixed_names(tiny, tmp_path):
    """The encoder under a prefix (as inside a full ComfyUI checkpoint), the tokenizer beside it."""
    pre = "text_encoders.umt5xxl."
    path = str(tmp_path / "full.safetensors")
    save_file({**{pre + "transformer." + k: v for k, v in tiny["weights"].items()}, pre + "spiece_model": tiny["tok"],
               "model.diffusion_model.patch_embedding.weight": torch.zeros(2, 2)}, path)
    enc = load_umt5_text_encoder(path, text_len=TEXT_LEN)
    assert (enc.encode(PROMPTS) - reference(tiny, PROMPTS, TEXT_LEN)).abs().max().item() < 1e-4


def test_errors(tiny, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*umt5_xxl_fp8_e4m3fn_scaled\.safetensors"):
        load_umt5_text_encoder(str(tmp_path / "missing.safetensors"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_umt5_text_encoder(str(junk))

    def file_with(tensors: dict) -> str:
        path = str(tmp_path / f"other{len(list(tmp_path.iterdir()))}.safetensors")
        save_file(tensors, path)
        return path

    def x():
        return torch.zeros(4, 4)

    t5 = {k: v for k, v in tiny["weights"].items() if not k.startswith("encoder.block.1.layer.0.SelfAttention.rel")}
    with pytest.raises(ValueError, match="T5 encoder, not umT5.*only its first layer"):
        load_umt5_text_encoder(file_with({**t5, "spiece_model": tiny["tok"]}))
    with pytest.raises(ValueError, match="not a umT5 encoder: it looks like a CLIP text encoder"):
        load_umt5_text_encoder(file_with({"text_model.encoder.layers.0.mlp.fc1.weight": x()}))
    with pytest.raises(ValueError, match="not a umT5 encoder: it looks like a Wan diffusion model"):
        load_umt5_text_encoder(file_with({"patch_embedding.weight": x(), "blocks.0.self_attn.q.weight": x()}))
    with pytest.raises(ValueError, match="not a umT5 encoder: it looks like a decoder-only language model"):
        load_umt5_text_encoder(file_with({"model.layers.0.self_attn.q_proj.weight": x()}))
    with pytest.raises(ValueError, match="looks like Wan's own umT5 checkpoint layout"):
        load_umt5_text_encoder(file_with({"token_embedding.weight": x(), "blocks.0.attn.q.weight": x()}))
    with pytest.raises(ValueError, match="dtype"):
        load_umt5_text_encoder(tiny["files"]["fp32"], dtype=torch.float8_e4m3fn)

    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install sentencepiece"):
        load_umt5_text_encoder(tiny["files"]["fp32"])


COMFY_SCRIPT = textwrap.dedent("""
    # ComfyUI's own Wan text-encoder path on a tiny file: t5_xxl_detect, SDClipModel over comfy's T5 with
    # umT5's special tokens, attention masks and zeroed padding (as wan.UMT5XXlModel), and its tokenizer.
    import json, sys
    import torch
    root, out, files = sys.argv[1], sys.argv[2], sys.argv[5:]
    cfg, prompts = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    sys.argv = sys.argv[:1] + ["--cpu"]
    sys.path.insert(0, root)
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.sd1_clip, comfy.text_encoders.t5, comfy.text_encoders.wan, comfy.utils
    from comfy.text_encoders.sd3_clip import t5_xxl_detect
    result = {}
    for path in files:
        state = comfy.utils.load_torch_file(path, safe_load=True)
        found = t5_xxl_detect(state)
        options = {"scaled_fp8": found["t5xxl_scaled_fp8"]} if "t5xxl_scaled_fp8" in found else {}
        model = comfy.sd1_clip.SDClipModel(textmodel_json_config=dict(cfg), dtype=found.get("dtype_t5"),
                                           special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                                           enable_attention_masks=True, zero_out_masked=True, model_options=options)
        missing, unexpected = model.load_sd(state)
        tokenizer = comfy.text_encoders.wan.UMT5XXlTokenizer(tokenizer_data={"spiece_model": state["spiece_model"]})
        ids = [[t for t, _ in tokenizer.tokenize_with_weights(p)[0]] for p in prompts]
        with torch.no_grad():
            z = [model([i])[0][0].float() for i in ids]
        result[path] = {"missing": list(missing), "unexpected": list(unexpected), "ids": ids, "z": z}
    torch.save(result, out)
""")


def test_matches_comfyui_own_umt5(tiny, tmp_path):
    """ComfyUI v0.3.64's own code (from ../shared, when present) loads our tiny files with no missing or
    unexpected tensors and gives the same tokens and embeddings (short prompts: ComfyUI does not truncate)."""
    if not COMFYUI.is_file():
        pytest.skip(f"{COMFYUI} not present (optional fixture)")
    with tarfile.open(COMFYUI) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith("ComfyUI-0.3.64/comfy/")]
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(tmp_path, members=members, **kwargs)
    hf = tiny["hf"].config
    cfg = {"d_ff": hf.d_ff, "d_kv": hf.d_kv, "d_model": hf.d_model, "num_heads": hf.num_heads,
           "num_layers": hf.num_layers, "vocab_size": hf.vocab_size, "dense_act_fn": "gelu_pytorch_tanh",
           "is_gated_act": True, "model_type": "umt5"}
    files = [tiny["files"][k] for k in ("fp32", "fp16", "fp8")]
    out = tmp_path / "comfy.pt"
    run = subprocess.run([sys.executable, "-c", COMFY_SCRIPT, str(tmp_path / "ComfyUI-0.3.64"), str(out),
                          json.dumps(cfg), json.dumps(PROMPTS), *files], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    comfy = torch.load(out)
    for path in files:
        r = comfy[path]
        assert r["missing"] == [] and r["unexpected"] == ["spiece_model"]
        enc = load_umt5_text_encoder(path, text_len=512)
        ours = enc.encode(PROMPTS)
        for i, p in enumerate(PROMPTS):
            ids = [t for t in r["ids"][i] if t != 0]  # ComfyUI pads with 0 to 512 tokens
            assert ids == enc.tokenizer(p) and len(r["ids"][i]) == 512
            assert r["z"][i].shape == (512, hf.d_model)
            assert (ours[i] - r["z"][i]).abs().max().item() < 1e-4


def test_cli_streams_a_causal_model_with_the_umt5_file(tiny, tmp_path):
    """The command line end to end with a real (tiny) umT5 file: tokenizer and weights from ComfyUI's layout."""
    import os
    import subprocess
    import sys

    from test_families import CFG as DIT
    from test_families import weights as dit_weights

    from streamdit.codecs.taehv import TAEHVCodec
    from streamdit.io.video import read_video

    assert DIT.text_dim == 32 and DIT.text_len == 512  # the tiny umT5's d_model, Wan's 512 rows
    torch.save({"generator_ema": dit_weights(2)}, tmp_path / "sf.pt")
    torch.save(TAEHVCodec(4, [16, 8, 8, 8]).state_dict(), tmp_path / "taew.pth")
    out = tmp_path / "sf.mp4"
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "streamdit", "generate", "--model", str(tmp_path / "sf.pt"),
                        "--family", "self-forcing", "--decoder", str(tmp_path / "taew.pth"),
                        "--text-encoder", tiny["files"]["fp8"], "--prompt", "0s: a pig walking right on grass\n"
                        "0.5s: a cat walking left on sand", "--width", "48", "--height", "32", "--seconds", "1.5",
                        "--out", str(out)], cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "STREAMDIT_NO_PROGRESS": "1"})
    assert r.returncode == 0, r.stderr
    frames, fps = read_video(str(out))
    assert frames.shape == (24, 32, 48, 3) and fps == 16.0
    r = subprocess.run([sys.executable, "-m", "streamdit", "generate", "--model", str(tmp_path / "sf.pt"),
                        "--family", "self-forcing", "--decoder", str(tmp_path / "taew.pth"), "--text-encoder",
                        tiny["files"]["no_tokenizer"], "--prompt", "a pig", "--out", str(tmp_path / "x.mp4")],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "spiece_model" in r.stderr
