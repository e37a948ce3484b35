"""TAEHV (taew2_1 layout) codec: Sequential key names, frame counts, exact streaming, loading, and the encoder:
chunked == whole clip, the reference key layout, the encode -> decode frame alignment (tiny, CPU)."""
import math
import re

import pytest
import torch

from streamdit.codecs import build_codec
from streamdit.codecs.taehv import TAEHVCodec, load_taehv

TINY = dict(latent_channels=4, widths=[16, 8, 8, 8])


pytestmark = pytest.mark.usefixtures("one_thread")


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


def latents(frames=6, seed=1, dtype=torch.float64):
    return torch.randn(4, frames, 3, 5, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_taew2_1_key_layout():
    with torch.device("meta"):
        full = TAEHVCodec()
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert all(k.startswith("decoder.") for k in shapes)
    assert shapes["decoder.1.weight"] == (256, 16, 3, 3) and "decoder.1.bias" in shapes
    for i in (3, 4, 5):
        assert shapes[f"decoder.{i}.conv.0.weight"] == (256, 512, 3, 3)
        assert shapes[f"decoder.{i}.conv.4.weight"] == (256, 256, 3, 3)
    assert shapes["decoder.7.conv.weight"] == (256, 256, 1, 1)
    assert shapes["decoder.8.weight"] == (128, 256, 3, 3) and "decoder.8.bias" not in shapes
    assert shapes["decoder.9.conv.0.weight"] == (128, 256, 3, 3)
    assert shapes["decoder.13.conv.weight"] == (256, 128, 1, 1)
    assert shapes["decoder.14.weight"] == (64, 128, 3, 3)
    assert shapes["decoder.19.conv.weight"] == (128, 64, 1, 1)
    assert shapes["decoder.20.weight"] == (64, 64, 3, 3)
    assert shapes["decoder.22.weight"] == (3, 64, 3, 3) and shapes["decoder.22.bias"] == (3,)
    indices = {int(re.match(r"decoder\.(\d+)\.", k)[1]) for k in shapes}
    assert indices == {1, 3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 19, 20, 22}
    tiny = TAEHVCodec(**TINY)
    assert {re.sub(r"\.weight|\.bias", "", k) for k in tiny.state_dict()} == \
        {re.sub(r"\.weight|\.bias", "", k) for k in shapes}
    assert 9.7e6 < sum(v.numel() for v in full.state_dict().values()) < 10e6


def test_frame_count_rule():
    codec = randomise(TAEHVCodec(**TINY))
    assert (codec.temporal_factor, codec.spatial_factor) == (4, 8)
    assert codec.video_frames(1, first=True) == 1 and codec.video_frames(6, first=True) == 21
    assert codec.video_frames(3) == 12
    frames = codec.decode(latents(3, dtype=torch.float32))
    assert frames.shape == (9, 24, 40, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    assert build_codec(codec.spec).spec == codec.spec
    with pytest.raises(NotImplementedError, match="no encoder.*wan2.1-vae"):  # decode-only
        codec.encode(torch.zeros(1, 24, 40, 3))


def test_streaming_equals_whole_video():
    codec = randomise(TAEHVCodec(**TINY)).double()
    z = latents(6)
    whole = codec.decode_pixels(z)
    assert whole.shape == (21, 3, 24, 40) and whole.std() > 0.05
    for schedule in ([1] * 6, [2, 4], [3, 3], [6]):
        dec, parts, start = codec.stream_decoder(), [], 0
        for n in schedule:
            part = dec.decode_pixels(z[:, start:start + n])
            assert part.shape[0] == codec.video_frames(n, first=start == 0)
            parts.append(part)
            start += n
        assert (torch.cat(parts) - whole).abs().max() < 1e-12, schedule
    # the memory matters: restarting the stream mid-way changes the frames
    fresh = codec.stream_decoder().decode_pixels(z[:, 3:])
    assert (fresh[-4:] - whole[-4:]).abs().max() > 1e-3


def test_load_safetensors(tmp_path):
    from safetensors.torch import save_file

    codec = randomise(TAEHVCodec(**TINY))
    state = {k: v.contiguous() for k, v in codec.state_dict().items()}
    state["other.weight"] = torch.zeros(2)  # keys outside decoder./encoder. are ignored
    path = tmp_path / "taew2_1.safetensors"
    save_file(state, path)
    loaded = load_taehv(str(path))
    assert loaded.spec == codec.spec
    z = latents(2, dtype=torch.float32)
    assert torch.equal(loaded.decode(z), codec.decode(z))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match=re.escape(str(cut))):
        load_taehv(str(cut))


# -- the encoder ------------------------------------------------------------------------------------------------

TINY_ENC = dict(TINY, encoder_width=8)


def scaled(codec: TAEHVCodec, seed: int = 0) -> TAEHVCodec:
    """Random weights of std 1/sqrt(fan in) (the flat 0.3 of `randomise` blows the encoder's latents up to ~1e5,
    and the decoder's tanh clamp then hides what they depend on), the last bias at 0.5 to centre the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in codec.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(math.prod(p.shape[1:]) if p.ndim > 1 else 10))
        codec.decoder[22].bias.fill_(0.5)
    return codec.eval()


def frames(n=14, seed=3, h=24, w=40, dtype=torch.float32):
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def reference_encoder_shapes(width=64, latent_channels=16, pools=(2, 2, 1)) -> dict[str, tuple]:
    """The encoder's key names and shapes as the reference's nn.Sequential names them, written out by hand from
    its layer list (madebyollin/taehv taehv.py, TAEHV.encoder): 0 conv(3, w) / 1 ReLU / then three stages of
    [TPool(w, stride), conv(w, w, stride 2, no bias), MemBlock x3] at 2-6, 7-11, 12-16 / 17 conv(w, latent).
    A MemBlock(w, w) has conv.0 (2w -> w), conv.2, conv.4 (w -> w), all with bias, and no skip weight."""
    e = width
    shapes = {"encoder.0.weight": (e, 3, 3, 3), "encoder.0.bias": (e,)}
    for stage, stride in enumerate(pools):
        base = 2 + 5 * stage
        shapes[f"encoder.{base}.conv.weight"] = (e, e * stride, 1, 1)
        shapes[f"encoder.{base + 1}.weight"] = (e, e, 3, 3)
        for block in (base + 2, base + 3, base + 4):
            for j, n_in in ((0, 2 * e), (2, e), (4, e)):
                shapes[f"encoder.{block}.conv.{j}.weight"] = (e, n_in, 3, 3)
                shapes[f"encoder.{block}.conv.{j}.bias"] = (e,)
    shapes["encoder.17.weight"] = (latent_channels, e, 3, 3)
    shapes["encoder.17.bias"] = (latent_channels,)
    return shapes


def test_taew2_1_encoder_key_layout():
    with torch.device("meta"):
        full = TAEHVCodec(encoder_width=64)
    enc = {k: tuple(v.shape) for k, v in full.state_dict().items() if k.startswith("encoder.")}
    assert enc == reference_encoder_shapes()
    assert sum(math.prod(s) for s in enc.values()) == 1_470_928
    assert full.spec["encoder_width"] == 64 and full.spec["time_downscale"] == [True, True, False]
    assert {k for k in full.state_dict() if k.startswith("decoder.")} == set(TAEHVCodec().state_dict())
    tiny = TAEHVCodec(**TINY_ENC)
    assert {k: tuple(v.shape) for k, v in tiny.state_dict().items() if k.startswith("encoder.")} == \
        reference_encoder_shapes(8, 4)
    with pytest.raises(ValueError, match="time_downscale"):
        TAEHVCodec(**TINY, encoder_width=8, time_downscale=(True, False, False))


def test_tpool_puts_frame_s_of_each_group_in_channel_group_s():
    from streamdit.codecs.taehv import TPool

    pool = TPool(3, 2)
    x = torch.randn(6, 3, 2, 2)
    for s in (0, 1):  # a 1x1 conv that picks channel group s gives frames s, s + 2, s + 4
        with torch.no_grad():
            pool.conv.weight.zero_()
            pool.conv.weight[:, 3 * s:3 * s + 3, 0, 0] = torch.eye(3)
        assert torch.equal(pool(x), x[s::2])


def test_streaming_encode_equals_whole_clip_for_any_chunking():
    codec = scaled(TAEHVCodec(**TINY_ENC))
    x = frames(14)  # not a multiple of 4: the last group is completed by repeating frame 13
    whole = codec.encode(x)
    assert whole.shape == (4, 4, 3, 5) and whole.dtype == torch.float32 and whole.std() > 0.05
    padded = torch.cat([x, x[-1:].expand(2, -1, -1, -1)])
    assert torch.equal(codec.encode(padded), whole)  # the end padding is the last frame repeated
    for schedule in ([1] * 14, [3] * 5, [4] * 4, [5] * 3, [7, 7], [2, 9, 3], [14]):
        enc, parts, fed = codec.stream_encoder(), [], 0
        for n in schedule:
            part = enc.encode(x[fed:fed + n])
            assert part.shape[1] == codec.latent_frames(min(14, fed + n)) - codec.latent_frames(fed), schedule
            parts.append(part)
            fed = min(14, fed + n)
        assert enc.pending_frames == 2
        parts.append(enc.flush())
        assert parts[-1].shape[1] == 1 and enc.pending_frames == 0
        assert torch.equal(torch.cat(parts, 1), whole), schedule  # bit for bit (step=1: one group per call)
    # all ready groups in one call (step=None): the same latents to float32 rounding
    many = codec.stream_encoder(step=None)
    parts = [many.encode(c) for c in x.split(5)] + [many.flush()]
    assert (torch.cat(parts, 1) - whole).abs().max() < 1e-5 * whole.abs().max()
    # the memory matters: restarting the stream mid-way changes the latents
    fresh = codec.stream_encoder().encode(x[4:12])
    assert (fresh - whole[:, 1:3]).abs().max() > 1e-3
    # state round trip mid-group
    enc = codec.stream_encoder()
    first = enc.encode(x[:6])
    other = codec.stream_encoder()
    other.load_state_dict(enc.state_dict())
    assert torch.equal(torch.cat([first, other.encode(x[6:]), other.flush()], 1), whole)
    assert codec.stream_encoder().flush().shape == (4, 0, 0, 0)
    with pytest.raises(ValueError, match="frame size changed"):
        enc.encode(frames(2, h=16))
    aligned = codec.stream_encoder()
    aligned.encode(x[:4])  # nothing pending: the MemBlock memory still pins the size
    with pytest.raises(ValueError, match="frame size changed"):
        aligned.encode(frames(4, h=16))
    with pytest.raises(ValueError, match="multiple of 8"):
        codec.stream_encoder().encode(frames(4, h=20))


def test_encoder_state_dict_in_the_reference_layout_round_trips(tmp_path):
    from safetensors.torch import save_file

    codec = randomise(TAEHVCodec(**TINY))
    g = torch.Generator().manual_seed(7)
    encoder = {k: 0.3 * torch.randn(s, generator=g) for k, s in reference_encoder_shapes(8, 4).items()}
    state = {**{k: v.contiguous() for k, v in codec.state_dict().items()}, **encoder}
    x = frames(9)
    for path in (tmp_path / "taew2_1.safetensors", tmp_path / "taew2_1.pth"):
        save_file(state, path) if path.suffix == ".safetensors" else torch.save(state, path)
        loaded = load_taehv(str(path))
        assert loaded.has_encoder and loaded.spec == dict(codec.spec, encoder_width=8,
                                                          time_downscale=[True, True, False])
        assert build_codec(loaded.spec).spec == loaded.spec
        got = loaded.state_dict()
        assert all(torch.equal(got[k], v) for k, v in encoder.items())
        z = loaded.encode(x)
        assert z.shape == (4, 3, 3, 5) and loaded.decode(z).shape == (9, 24, 40, 3)
        z2 = latents(2, dtype=torch.float32)
        assert torch.equal(loaded.decode(z2), codec.decode(z2))
    # the same weights through a module built by the codec, then saved with its own names: equal latents
    again = TAEHVCodec(**TINY_ENC)
    again.load_state_dict(state, strict=True)
    assert torch.equal(again.eval().encode(x), z)


def test_roundtrip_alignment_output_frame_k_is_source_frame_k():
    """Causal-dependency probe: perturb source frame j, see which decoded frames change.

    The encoder packs frames 4g .. 4g+3 into latent g; the decoder turns latent g into output frames 4g-3 .. 4g
    (its 3 start-up frames dropped). So output k comes from latent (k+3)//4 and, the whole chain being causal,
    changes exactly when a source frame of a group <= (k+3)//4 changes: source j moves output k iff
    k >= 4 (j//4) - 3. Every output k moves with source k (and never with nothing before it changing), and also
    sees up to 4 ceil(k/4) + 3 - k = 3..6 frames ahead (the rest of its group). The training recipe makes output
    k reconstruct source k (docs/wan.md)."""
    codec = scaled(TAEHVCodec(**TINY_ENC)).double()
    t = 10  # ceil(10/4) = 3 latents (frame 9 repeated twice to complete the last group) -> 9 output frames
    x = frames(t, h=16, w=16, dtype=torch.float64)
    base = codec.decode_pixels(codec.encode(x))
    assert base.shape[0] == codec.frames_after_roundtrip(t) == 9 and base.std() > 0.05
    moved = torch.zeros(t, base.shape[0], dtype=torch.bool)
    for j in range(t):
        y = x.clone()
        y[j] = frames(1, seed=100 + j, h=16, w=16, dtype=torch.float64)[0]
        out = codec.decode_pixels(codec.encode(y))
        diff = (out - base).flatten(1).abs().amax(1)
        moved[j] = diff > 1e-9
        assert torch.equal(out[~moved[j]], base[~moved[j]])  # the frames that did not move are bit-identical
    j, k = torch.meshgrid(torch.arange(t), torch.arange(base.shape[0]), indexing="ij")
    assert torch.equal(moved, k >= 4 * (j // 4) - 3)
    assert moved.diagonal().all()  # output k follows source k ...
    last_seen = [max(i for i in range(t) if moved[i, kk]) for kk in range(base.shape[0])]
    assert last_seen == [min(t - 1, 4 * math.ceil(kk / 4) + 3) for kk in range(base.shape[0])]  # ... with lookahead
    assert last_seen[:5] == [3, 7, 7, 7, 7]


def test_roundtrip_frame_count_arithmetic():
    codec = scaled(TAEHVCodec(**TINY_ENC))
    for t in range(0, 30):
        assert codec.latent_frames(t) == t // 4
        assert codec.frames_after_roundtrip(t) == (0 if t == 0 else 1 + 4 * ((t - 1) // 4))  # largest 1 + 4k <= T
        assert codec.frames_after_roundtrip(t, flush=False) == max(0, 4 * (t // 4) - 3)
    assert [codec.frames_after_roundtrip(t) for t in (1, 4, 5, 8, 9, 13)] == [1, 1, 5, 5, 9, 13]
    x = frames(13, h=16, w=16)
    dec = codec.stream_decoder()
    enc, fed, decoded = codec.stream_encoder(), 0, 0
    for n in (1, 2, 4, 3, 3):  # mid-stream: what exists after each call
        decoded += dec.decode_pixels(enc.encode(x[fed:fed + n])).shape[0]
        fed += n
        assert decoded == codec.frames_after_roundtrip(fed, flush=False)
    decoded += dec.decode_pixels(enc.flush()).shape[0]
    assert decoded == codec.frames_after_roundtrip(13) == 13
    for t in (1, 4, 6, 11):
        z = codec.encode(x[:t])
        assert z.shape[1] == math.ceil(t / 4)
        assert codec.decode(z).shape[0] == codec.frames_after_roundtrip(t)


def test_decoder_only_file_has_no_encoder(tmp_path):
    from safetensors.torch import save_file

    codec = randomise(TAEHVCodec(**TINY))
    path = tmp_path / "taew2_1_decoder.safetensors"
    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, path)
    loaded = load_taehv(str(path))
    assert not loaded.has_encoder and "encoder_width" not in loaded.spec
    with pytest.raises(NotImplementedError, match="no encoder.*decoder.*taew2_1.*wan2.1-vae"):
        loaded.stream_encoder()
    with pytest.raises(NotImplementedError, match="no encoder"):
        loaded.encode(frames(4))
    # an encoder cut short is an error that names the missing key and the file
    part = {k: v.contiguous() for k, v in codec.state_dict().items()}
    part["encoder.0.weight"] = torch.zeros(8, 3, 3, 3)
    cut = tmp_path / "cut_encoder.safetensors"
    save_file(part, cut)
    with pytest.raises(ValueError, match=re.escape(str(cut)) + ".*encoder.17.weight"):
        load_taehv(str(cut))
