"""Video-to-video editing with codecs that pack several frames into one latent (the Wan 2.1 VAE: frame 0 alone, then
groups of 4): strength 0 is the codec's own streaming round trip bit for bit, an exact point-mass denoiser keeps
every latent on its own source's forward process, and the output has the source's length whatever it is."""
from __future__ import annotations

import pytest
import torch
from random_weights import randomise

from streamdit.codecs.wan_vae import WanVAECodec
from streamdit.io.checkpoint import Bundle
from streamdit.network.config import ModelConfig, StreamDefaults
from streamdit.network.model import WanDiT
from streamdit.network.text import ExternalTextEncoder
from streamdit.pipeline import Pipeline
from streamdit.sampling.edit import EditStream
from streamdit.sampling.sources import FrameSource

pytestmark = pytest.mark.usefixtures("one_thread")
VAE = dict(dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True])
CFG = ModelConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, in_dim=4, out_dim=4, text_dim=16, text_len=8,
                  freq_dim=16)
H = W = 32


@pytest.fixture(scope="module")
def wan_pipe():
    torch.manual_seed(0)
    codec = randomise(WanVAECodec(**VAE), 1)
    defaults = StreamDefaults(width=W, height=H, fps=16.0, codec=codec.spec, buffer_frames=4, chunk_frames=1,
                              micro_steps=2, shift=3.0)
    text = ExternalTextEncoder(lambda p: torch.full((2, 16), float(len(p)) / 10), 16, 8, "stand-in")
    bundle = Bundle(randomise(WanDiT(CFG), 2, 0.05), CFG, text, codec, defaults, {})
    return Pipeline(bundle, torch.device("cpu"), torch.float32)


def clip(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, H, W, 3, generator=g)
    return (base + 0.1 * torch.randn(n, H, W, 3, generator=g).cumsum(0)).clamp(0, 1)  # frames that drift


def roundtrip(codec, frames: torch.Tensor, source_chunks: int, latent_chunk: int) -> torch.Tensor:
    """The codec's streaming encode (the source's chunking, last group padded by repeating the last frame) and
    streaming decode (chunks of `latent_chunk` latents), trimmed to the source's length."""
    enc, dec = codec.stream_encoder(), codec.stream_decoder()
    pad = codec.end_padding(frames.shape[0])
    padded = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
    latents = torch.cat([enc.encode(c) for c in frames.split(source_chunks)]
                        + ([enc.encode(padded[frames.shape[0]:])] if pad else []), dim=1)
    out = torch.cat([dec.decode(c) for c in latents.split(latent_chunk, dim=1)])
    return out[:frames.shape[0]]


@pytest.mark.parametrize("n", [1, 2, 5, 8, 13])
@pytest.mark.parametrize("lookahead", [True, False])
def test_strength_zero_is_the_codecs_streaming_round_trip_bit_for_bit(wan_pipe, n, lookahead):
    frames = clip(n)
    es = wan_pipe.edit(FrameSource.from_frames(frames, 16.0), "a cat", strength=0, seed=1, lookahead=lookahead)
    out = es.take(n + 8)
    assert out.shape == frames.shape and es.strength == 0 and es.calls == 0  # no network call at strength 0
    assert es.padded_frames == wan_pipe.bundle.codec.end_padding(n)
    assert torch.equal(out, roundtrip(wan_pipe.bundle.codec, frames, n, es.partition.chunk_frames))


def test_a_live_source_frame_by_frame_fills_groups_as_they_complete(wan_pipe):
    """One frame per read: most reads complete no group (the encoder gives no latent yet)."""
    frames = clip(10, seed=7)
    live = FrameSource.from_iterable(iter(frames.split(1)), 16.0)
    es = wan_pipe.edit(live, "a cat", strength=0, seed=1)
    out = es.take(20)
    assert out.shape == frames.shape and not es.lookahead
    assert torch.equal(out, roundtrip(wan_pipe.bundle.codec, frames, 1, es.partition.chunk_frames))


@pytest.mark.parametrize("n", [1, 4, 6, 9])
def test_strength_zero_with_taehv_is_its_round_trip_and_keeps_the_length(wan_pipe, n):
    """TAEHV groups frames 4g..4g+3 and its decoder drops 3 start-up frames: padding covers every source frame."""
    import dataclasses

    from streamdit.codecs.taehv import TAEHVCodec
    codec = TAEHVCodec(4, [16, 8, 8, 8], encoder_width=8).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in codec.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
    pipe = dataclasses.replace(wan_pipe, bundle=dataclasses.replace(wan_pipe.bundle, codec=codec))
    frames = clip(n)
    es = pipe.edit(FrameSource.from_frames(frames, 16.0), "a cat", strength=0, seed=1)
    out = es.take(n + 8)
    assert out.shape == frames.shape and es.padded_frames == codec.end_padding(n)
    assert torch.equal(out, roundtrip(codec, frames, n, es.partition.chunk_frames))


def test_wan_edit_keeps_length_and_changes_the_video(wan_pipe):
    frames = clip(11)
    es = wan_pipe.edit(FrameSource.from_frames(frames, 16.0), "a dog", strength=0.5, seed=0)
    out = es.take(40)
    assert out.shape == frames.shape and es.padded_frames == 2 and es.ended
    assert es.latency_frames == (es.pull_chunk + 1) * es.partition.chunk_frames * 4
    same = roundtrip(wan_pipe.bundle.codec, frames, 11, es.partition.chunk_frames)
    assert (out - same).abs().mean() > 1e-3  # the network changed it


class PointMass:
    """The exact velocity toward every latent's own source latent, checking that each input frame lies on its
    forward process (1 - sigma) z + sigma eps at the sigma the stream gives it."""

    def __init__(self):
        self.stream: EditStream | None = None
        self.calls = 0

    def __call__(self, x, sigma, weights):
        st = self.stream
        s = sigma.to(x.dtype).view(1, -1, 1, 1)
        expected = (1 - s) * st.z + s * st.eps
        torch.testing.assert_close(x, expected, atol=2e-5, rtol=0)
        self.calls += 1
        return (x - st.z) / s

    def set_guidance(self, cfg, negative):
        pass


@pytest.mark.parametrize("lookahead", [True, False])
def test_smallest_strength_keeps_every_latent_on_its_own_forward_process(wan_pipe, lookahead):
    frames = clip(14, seed=4)
    config = wan_pipe._config(seed=2)
    denoise = PointMass()
    es = EditStream(denoise, wan_pipe.bundle.codec, config, "a cat", FrameSource.from_frames(frames, 16.0),
                    strength=1e-3, lookahead=lookahead)
    denoise.stream = es
    assert es.edit_m == 1 and es.strength == 1 / es.levels  # one step of the u grid
    out = es.take(20)
    assert denoise.calls > 0 and out.shape == frames.shape
    # x0 = z exactly for every latent: the edited video is the codec's round trip
    torch.testing.assert_close(out, roundtrip(wan_pipe.bundle.codec, frames, 14, config.partition.chunk_frames),
                               atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def causal_pipe(wan_pipe):
    import dataclasses

    from streamdit.sampling.families import get_family
    return dataclasses.replace(wan_pipe, family=get_family("self-forcing"))


def test_causal_edit_at_strength_one_is_causal_generation_bit_for_bit(causal_pipe):
    """Self-Forcing's sampler (one chunk, 4 listed steps, fresh noise, a KV cache): at strength 1 every chunk enters
    as pure noise, so the edit is the generation, frame for frame."""
    frames = clip(29)
    edit = causal_pipe.edit(FrameSource.from_frames(frames, 16.0), "a cat", strength=1.0, seed=5)
    gen = causal_pipe.stream("a cat", seed=5, width=W, height=H)
    assert torch.equal(edit.take(29), gen.take(29))
    assert edit.calls == gen.calls


def test_causal_edit_strengths_are_the_step_list_entry_points(causal_pipe):
    frames = clip(21, seed=2)
    es = causal_pipe.edit(FrameSource.from_frames(frames, 16.0), "a dog", strength=0.6, seed=1)
    assert es.allowed_strengths() == [0, 0.25, 0.5, 0.75, 1.0]  # t = 0, 250, 500, 750, 1000 of its list
    assert es.strength == 0.5
    out = es.take(40)
    assert out.shape == frames.shape and es.ended
    latents = es.latents_emitted
    chunks = -(-latents // 3)
    assert es.calls == chunks * 2 + (chunks - 1)  # two steps below the entry point per chunk, plus cache passes
    with pytest.raises(ValueError, match="trained with micro_steps=4"):
        causal_pipe.edit(FrameSource.from_frames(frames, 16.0), "a dog", strength=0.5, micro_steps=2)
