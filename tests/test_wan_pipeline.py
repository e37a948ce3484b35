"""Streaming a Wan-architecture DiT: file + decoder (Wan 2.1 VAE or TAEHV) + external text embeddings (tiny, CPU)."""
import sys
from pathlib import Path

import pytest
import torch
from random_weights import randomise
from safetensors.torch import save_file

from streamdit.codecs.taehv import TAEHVCodec
from streamdit.codecs.wan_vae import WanVAECodec
from streamdit.network.config import ModelConfig
from streamdit.network.model import WanDiT
from streamdit.network.text import ExternalTextEncoder
from streamdit.pipeline import Pipeline
from streamdit.wan.loading import WAN_FIFO, decoder_kind

# dim 128 = one Wan head (head_dim 128), so the head count is inferred from the weights as for real files
CFG = ModelConfig(dim=128, ffn_dim=128, num_heads=1, num_layers=2, in_dim=4, out_dim=4, text_dim=32, text_len=512,
                  freq_dim=32)
VAE = dict(dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("wan")
    dit = randomise(WanDiT(CFG))
    save_file({"model.diffusion_model." + k: v.to(torch.bfloat16) for k, v in dit.state_dict().items()},
              str(d / "wan_dit_comfy.safetensors"))
    save_file({"model." + k: v.contiguous() for k, v in randomise(WanVAECodec(**VAE), 1).state_dict().items()},
              str(d / "wan_vae.safetensors"))
    torch.save(randomise(TAEHVCodec(4, [16, 8, 8, 8]), 2, 0.3).state_dict(), str(d / "taew.pth"))
    (d / "notes.safetensors").write_bytes(b"not weights")
    return d


def words(prompt: str) -> torch.Tensor:
    """A stand-in for umT5: one fixed row per word (shape [tokens, 32], as ComfyUI's cond without padding)."""
    import zlib
    rows = [torch.randn(32, generator=torch.Generator().manual_seed(zlib.crc32(w.encode()))) for w in prompt.split()]
    return torch.stack(rows) if rows else torch.zeros(0, 32)


def test_decoder_kind_from_keys(files):
    assert decoder_kind(str(files / "wan_vae.safetensors")) == "wan2.1-vae"
    assert decoder_kind(str(files / "taew.pth")) == "taehv"
    with pytest.raises(ValueError, match="not a readable weights file"):
        decoder_kind(str(files / "notes.safetensors"))
    save_file({"blocks.0.weight": torch.zeros(2)}, str(files / "other.safetensors"))
    with pytest.raises(ValueError, match="neither a Wan 2.1 VAE nor a TAEHV decoder"):
        decoder_kind(str(files / "other.safetensors"))
    with pytest.raises(FileNotFoundError, match="models/vae"):
        decoder_kind(str(files / "missing.safetensors"))


@pytest.mark.parametrize("decoder", ["wan_vae.safetensors", "taew.pth"])
def test_streams_with_either_decoder(files, decoder):
    pipe = Pipeline.load(str(files / "wan_dit_comfy.safetensors"), decoder=str(files / decoder))
    assert pipe.bundle.text_encoder is None and pipe.dtype == torch.bfloat16  # the file's own dtype
    d = pipe.bundle.defaults
    assert (d.buffer_frames, d.chunk_frames, d.micro_steps, d.shift) == (16, 1, 2, 5.0) == \
        tuple(WAN_FIFO[k] for k in ("buffer_frames", "chunk_frames", "micro_steps", "shift"))
    with pytest.raises(ValueError, match="no text encoder of its own.*CLIP"):
        pipe.stream("a cat")
    pipe = pipe.with_text_encoder(ExternalTextEncoder(words, 32, 512, "stand-in umT5"))
    stream = pipe.stream("a cat walking", width=48, height=32, buffer_frames=4, micro_steps=1)
    sizes = [f.shape[0] for f in stream.frames(13)]
    assert sizes == [1, 4, 4, 4]  # latent 0 gives one frame, each later latent frame four
    frames = pipe.stream("a cat walking", width=48, height=32, buffer_frames=4, micro_steps=1).take(13)
    assert frames.shape == (13, 32, 48, 3) and torch.isfinite(frames).all()


def test_stream_frames_equal_whole_clip_decode_with_two_latent_chunks(files):
    """Chunks of c = 2 latents through the Wan VAE (first chunk split inside the decoder) = one whole decode."""
    pipe = Pipeline.load(str(files / "wan_dit_comfy.safetensors"), decoder=str(files / "wan_vae.safetensors"),
                         dtype=torch.float32)
    pipe = pipe.with_text_encoder(ExternalTextEncoder(words, 32, 512))
    kw = dict(width=48, height=32, buffer_frames=4, chunk_frames=2, micro_steps=1, seed=3)
    a = pipe.stream("a dog", **kw)
    latents = torch.cat([a.next_latent_chunk() for _ in range(3)], 1)  # 6 latent frames
    frames = pipe.stream("a dog", **kw).take(1 + 4 * 5)
    expected = pipe.bundle.codec.decode(latents)
    assert frames.shape[0] == expected.shape[0] == 21
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=0)


def test_decoder_must_match_the_latent_channels(files, tmp_path):
    save_file({k: v.contiguous() for k, v in randomise(TAEHVCodec(16, [16, 8, 8, 8])).state_dict().items()},
              str(tmp_path / "taew16.safetensors"))
    with pytest.raises(ValueError, match="16-channel latents.*4 channels"):
        Pipeline.load(str(files / "wan_dit_comfy.safetensors"), decoder=str(tmp_path / "taew16.safetensors"))
    with pytest.raises(ValueError, match="no decoder of its own.*wan_2.1_vae"):
        Pipeline.load(str(files / "wan_dit_comfy.safetensors"))


def test_external_text_encoder_pads_and_checks_width():
    enc = ExternalTextEncoder(words, 32, 6, "stand-in")
    out = enc.encode(["a b c", "one two three four five six seven eight"])
    assert out.shape == (2, 6, 32)
    assert out[0, 3:].abs().sum() == 0 and out[0, :3].abs().sum() > 0  # zero rows after the tokens (Wan padding)
    assert torch.equal(out[1], words("one two three four five six")[:6])  # cut at text_len
    bad = ExternalTextEncoder(lambda p: torch.zeros(3, 16), 32, 6, "clip-l")
    with pytest.raises(ValueError, match=r"\(clip-l\).*\(3, 16\).*\[tokens, 32\].*umT5"):
        bad.encode(["x"])


def test_wan_presets_name_the_wan_vae_and_random_text_stands_in():
    from streamdit.codecs import build_codec
    from streamdit.network.config import get_preset
    from streamdit.network.text import hashed_text_encoder

    for name in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b"):
        assert get_preset(name).stream.codec == {"kind": "wan2.1-vae"}
    codec = build_codec({"kind": "wan2.1-vae", "dim": 8, "num_res_blocks": 1})
    assert isinstance(codec, WanVAECodec) and codec.latent_channels == 16 and codec.temporal_factor == 4
    emb = hashed_text_encoder(4096, 512).encode(["a pig", ""])
    assert emb.shape == (2, 512, 4096) and emb[1].abs().sum() == 0 and emb[0, 2:].abs().sum() == 0
    assert emb[0, :2].abs().sum() > 0


class OldStandInCLIP:
    """ComfyUI's CLIP interface (the March-2024 host: encode_from_tokens only) with umT5's output format:
    cond [1, 512, 32], rows past the tokens zeroed."""

    def __init__(self):
        self.calls = 0

    def tokenize(self, text):
        return {"umt5xxl": [[(w, 1.0) for w in text.split()]]}

    def _cond(self, tokens):
        self.calls += 1
        rows = words(" ".join(w for w, _ in tokens["umt5xxl"][0]))
        cond = torch.zeros(1, 512, 32)
        cond[0, :rows.shape[0]] = rows
        return cond

    def encode_from_tokens(self, tokens, return_pooled=False):
        cond = self._cond(tokens)
        return (cond, None) if return_pooled else cond



class StandInCLIP(OldStandInCLIP):
    """Current hosts: CONDITIONING [[cond, {"pooled_output": ...}]] from encode_from_tokens_scheduled."""

    def encode_from_tokens_scheduled(self, tokens):
        return [[self._cond(tokens), {"pooled_output": None}]]


@pytest.mark.parametrize("scheduled", [True, False])
def test_prompt_node_clip_feeds_a_wan_model(files, scheduled):
    sys.path.insert(0, str(Path(__file__).parent))
    from workflow_format import pack_input_types

    pack_input_types()  # imports the pack the way ComfyUI does
    prompts = sys.modules["ComfyUI_StreamDiT_pack.nodes.prompts"]
    loader = sys.modules["ComfyUI_StreamDiT_pack.nodes.loader"]
    pipe = Pipeline.load(str(files / "wan_dit_comfy.safetensors"), decoder=str(files / "taew.pth"))
    model = loader.LoadedModel(pipe, "tiny wan", ("tiny",))
    spec = prompts.PromptSpec("0s: a cat walking\n0.5s: a dog walking", 0.0, "", 2.0, None)
    with pytest.raises(prompts.TextSourceError, match="no text encoder of its own.*Load CLIP.*wan"):
        prompts.text_pipeline(model, spec)
    clip = StandInCLIP() if scheduled else OldStandInCLIP()
    spec = prompts.PromptSpec(spec.schedule, 0.0, "", 2.0, clip)
    stream = prompts.text_pipeline(model, spec).stream(spec.schedule, cfg_scale=2.0, width=48, height=32,
                                                       buffer_frames=4, micro_steps=1)
    assert clip.calls == 3  # the two prompts and the empty negative prompt, each once
    assert stream.take(17).shape == (17, 32, 48, 3)
    emb = stream.denoise.text.get("a cat walking")
    assert torch.equal(emb[:3], words("a cat walking")) and emb[3:].abs().sum() == 0 and emb.shape == (512, 32)
    again = prompts.text_pipeline(model, spec).stream(spec.schedule, width=48, height=32)
    assert clip.calls == 3 and again.take(1).shape[0] == 1  # cached per prompt across streams
    toy = loader.LoadedModel(Pipeline.load("random:toy"), "toy", ("toy",))
    with pytest.raises(prompts.TextSourceError, match="has its own text encoder; disconnect the CLIP"):
        prompts.text_pipeline(toy, spec)


def test_loaders_differing_in_kernel_compile_decoder_or_family_share_one_copy_of_the_weights(files):
    import dataclasses
    sys.path.insert(0, str(Path(__file__).parent))
    from workflow_format import pack_input_types

    pack_input_types()
    loader = sys.modules["ComfyUI_StreamDiT_pack.nodes.loader"]
    loader.clear_model_cache()
    dit, vae, taew = (str(files / n) for n in ("wan_dit_comfy.safetensors", "wan_vae.safetensors", "taew.pth"))
    a, _ = loader.shared_pipeline(dit, "cpu", torch.float32, vae, None, None)
    b, _ = loader.shared_pipeline(dit, "cpu", torch.float32, taew, "self-forcing", None)  # same tensors, other family
    storage = [p.data_ptr() for p in a.bundle.model.parameters()]
    assert a.bundle.model is b.bundle.model and storage == [p.data_ptr() for p in b.bundle.model.parameters()]
    # (the pack's own import of the engine: compare class names)
    assert (type(a.bundle.codec).__name__, type(b.bundle.codec).__name__) == ("WanVAECodec", "TAEHVCodec")
    assert (a.family.name, b.family.name) == ("wan", "self-forcing")
    again, _ = loader.shared_pipeline(dit, "cpu", torch.float32, taew, None, None)
    assert again.bundle.codec is b.bundle.codec  # the decoder in use is loaded once too
    assert [c for c, _ in loader._decoders.values()] == [b.bundle.codec]  # a changed decoder: the old one is let go
    with pytest.raises(ValueError, match="no decoder of its own"):
        loader.shared_pipeline(dit, "cpu", torch.float32, None, None, None)
    other_dtype, _ = loader.shared_pipeline(dit, "cpu", torch.bfloat16, vae, None, None)
    assert other_dtype.bundle.model is not a.bundle.model  # what changes the weights gets its own copy...
    assert [w.pipeline.bundle.model for w in loader._weights.values()] == [other_dtype.bundle.model]  # ...in place

    # attention kernel and compile are per stream: the shared module is never changed
    text = ExternalTextEncoder(lambda p: torch.zeros(3, CFG.text_dim), CFG.text_dim, CFG.text_len)
    fast = dataclasses.replace(a, attention="sdpa", compile=True).with_text_encoder(text)
    plain = a.with_text_encoder(text)
    s1, s2 = fast.stream("x", width=48, height=32), plain.stream("x", width=48, height=32)
    assert s1.denoise.run == {"backend": "sdpa", "compiled": True}
    assert s2.denoise.run == {"backend": "auto", "compiled": False}
    model = a.bundle.model
    assert model.attention_backend == "auto" and not model.compile_enabled


def test_the_loader_node_shares_weights_between_kernels_and_compile():
    sys.path.insert(0, str(Path(__file__).parent))
    from workflow_format import pack_input_types

    pack_input_types()
    loader = sys.modules["ComfyUI_StreamDiT_pack.nodes.loader"]
    loader.clear_model_cache()
    node = loader.StreamDiTModelLoader()
    (eager,) = node.load(loader.EMBEDDED, "cpu", "float32", "auto")
    (compiled,) = node.load(loader.EMBEDDED, "cpu", "float32", "sdpa", compile=True)
    assert compiled.pipeline.bundle.model is eager.pipeline.bundle.model
    assert (eager.pipeline.attention, eager.pipeline.compile) == ("auto", False)
    assert (compiled.pipeline.attention, compiled.pipeline.compile) == ("sdpa", True)
    assert eager.identity == compiled.identity  # a stream continues when only the kernel changes
    assert not eager.pipeline.bundle.model.compile_enabled
