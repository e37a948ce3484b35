"""TAEHV (taew2_1 layout) codec: Sequential key names, frame counts, exact streaming, loading (tiny, CPU)."""
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
    with pytest.raises(NotImplementedError, match="wan2.1-vae"):
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
    state["encoder.0.weight"] = torch.zeros(8, 3, 3, 3)  # real files carry the encoder too: ignored
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
