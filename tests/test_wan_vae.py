"""Wan 2.1 VAE codec: original key names, exact streaming, equality with diffusers, loading (tiny configs, CPU)."""
import re

import pytest
import torch

from streamdit.codecs import build_codec
from streamdit.codecs.wan_vae import WanVAECodec, diffusers_to_wan, load_wan_vae, wan_vae_config

TINY = dict(dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])


pytestmark = pytest.mark.usefixtures("one_thread")


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random, norm gains around 1 (Wan zero-inits some projections)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if name.endswith("gamma") else 0.1 * noise)
    return module.eval()


@pytest.fixture(scope="module")
def tiny():
    return randomise(WanVAECodec(**TINY))


@pytest.fixture(scope="module")
def tiny64():
    return randomise(WanVAECodec(**TINY)).double()


def latents(frames=5, seed=1, dtype=torch.float32):
    return torch.randn(4, frames, 4, 6, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_original_names_and_sizes():
    with torch.device("meta"):
        full = WanVAECodec()
    sd = full.state_dict()
    assert len(sd) == 194
    assert sum(v.numel() for v in sd.values()) == pytest.approx(126.9e6, rel=1e-3)
    dec = sum(v.numel() for k, v in sd.items() if k.startswith(("decoder.", "conv2.")))
    assert dec == pytest.approx(73.3e6, rel=1e-3)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["encoder.conv1.weight"] == (96, 3, 3, 3, 3)
    assert shapes["encoder.downsamples.5.time_conv.weight"] == (192, 192, 3, 1, 1)
    assert shapes["encoder.downsamples.2.resample.1.weight"] == (96, 96, 3, 3)
    assert shapes["encoder.middle.1.norm.gamma"] == (384, 1, 1)
    assert shapes["encoder.middle.1.to_qkv.weight"] == (1152, 384, 1, 1)
    assert shapes["encoder.head.2.weight"] == (32, 384, 3, 3, 3)
    assert shapes["conv1.weight"] == (32, 32, 1, 1, 1) and shapes["conv2.weight"] == (16, 16, 1, 1, 1)
    assert shapes["decoder.conv1.weight"] == (384, 16, 3, 3, 3)
    assert shapes["decoder.upsamples.3.resample.1.weight"] == (192, 384, 3, 3)
    assert shapes["decoder.upsamples.3.time_conv.weight"] == (768, 384, 3, 1, 1)
    assert shapes["decoder.upsamples.4.shortcut.weight"] == (384, 192, 1, 1, 1)
    assert shapes["decoder.upsamples.11.resample.1.weight"] == (96, 192, 3, 3)
    assert shapes["decoder.upsamples.14.residual.0.gamma"] == (96, 1, 1, 1)
    assert shapes["decoder.head.0.gamma"] == (96, 1, 1, 1) and shapes["decoder.head.2.weight"] == (3, 96, 3, 3, 3)
    assert "decoder.upsamples.14.residual.6.weight" in sd and "decoder.upsamples.15.residual.2.weight" not in sd
    assert wan_vae_config(sd) == {**TINY, "dim": 96, "z_dim": 16}
    assert full.latent_mean[7] == 1.5508 and full.latent_std[8] == 3.2687


def test_codec_contract(tiny):
    assert (tiny.spatial_factor, tiny.temporal_factor, tiny.latent_channels) == (8, 4, 4)
    assert tiny.video_frames(1, first=True) == 1 and tiny.video_frames(5, first=True) == 17
    assert tiny.video_frames(3) == 12
    assert build_codec(tiny.spec).spec == tiny.spec and tiny.spec["kind"] == "wan2.1-vae"
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny.latent_size(30, 48)
    frames = tiny.decode(latents(3))
    assert frames.shape == (9, 32, 48, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1


@pytest.mark.parametrize("step", [1, None])
def test_streaming_decode_is_exact(tiny64, step):
    z = latents(5, dtype=torch.float64)
    whole = tiny64.decode_pixels(z)
    assert whole.shape == (3, 17, 32, 48)
    for schedule in ([1] * 5, [1, 2, 2], [1, 4], [1, 1, 3], [2, 3], [5]):
        dec, parts, start = tiny64.stream_decoder(step=step), [], 0
        for n in schedule:
            part = dec.decode_pixels(z[:, start:start + n])
            assert part.shape[1] == tiny64.video_frames(n, first=start == 0)
            parts.append(part)
            start += n
        assert (torch.cat(parts, 1) - whole).abs().max() < 1e-12, schedule


@pytest.mark.parametrize("step", [1, None])
def test_first_chunk_of_several_latents_splits_latent_0_off(tiny64, step):
    """A stream's first chunk holds c latents; Wan decodes latent 0 alone, so the decoder splits it off."""
    z = latents(3, dtype=torch.float64)
    ref = tiny64.stream_decoder(step=step)
    expected = torch.cat([ref.decode_pixels(z[:, :1]), ref.decode_pixels(z[:, 1:])], 1)
    got = tiny64.stream_decoder(step=step).decode_pixels(z)
    assert got.shape[1] == 9 and torch.equal(got, expected)


def test_decoder_state_round_trip(tiny64):
    z = latents(4, dtype=torch.float64)
    a = tiny64.stream_decoder()
    a.decode_pixels(z[:, :1])
    b = tiny64.stream_decoder()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.decode_pixels(z[:, 1:]), b.decode_pixels(z[:, 1:]))


@pytest.mark.parametrize("step", [1, None])
def test_streaming_encoder_uneven_chunks(tiny64, step):
    frames = torch.rand(13, 32, 48, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    whole = tiny64.encode(frames)
    assert whole.shape == (4, 4, 4, 6)
    enc, parts, start = tiny64.stream_encoder(step=step), [], 0
    for n in (2, 3, 1, 7):
        out = enc.encode(frames[start:start + n])
        start += n
        assert out.shape[1] == (1 + (start - 1) // 4) - sum(p.shape[1] for p in parts)
        parts.append(out)
    assert enc.pending_frames == 0
    assert (torch.cat(parts, 1) - whole).abs().max() < 1e-12
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        tiny64.encode(frames[:11])


@pytest.fixture(scope="module")
def diffusers_pair():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                     temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                     latents_std=[1.0] * 4)
    randomise(ref, seed=3)
    ours = WanVAECodec(**TINY).eval()
    ours.load_state_dict(diffusers_to_wan(ref.state_dict()), strict=True)
    return ref, ours


def test_matches_diffusers_fp32(diffusers_pair):
    ref, ours = diffusers_pair
    z = latents(5)
    with torch.no_grad():
        expected = ref.decode(z[None]).sample[0]
    got = ours.decode_pixels(z)
    assert got.shape == expected.shape == (3, 17, 32, 48)
    assert (got - expected).abs().max() < 2e-5
    frames = torch.rand(9, 32, 48, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mean = ref.encode((frames * 2 - 1).permute(3, 0, 1, 2)[None]).latent_dist.mean[0]
    mu = ours.encode(frames)
    assert mu.shape == mean.shape == (4, 3, 4, 6)
    assert (mu - mean).abs().max() < 1e-5 * max(1.0, mean.abs().max().item())


def test_matches_diffusers_fp64(diffusers_pair, monkeypatch):
    import diffusers.models.autoencoders.autoencoder_kl_wan as wan

    # diffusers upsamples through float32 even in float64; undo that to compare to rounding
    monkeypatch.setattr(wan.WanUpsample, "forward", torch.nn.Upsample.forward)
    ref, ours = (m.double() for m in diffusers_pair)
    try:
        z = latents(5, dtype=torch.float64)
        with torch.no_grad():
            expected = ref.decode(z[None]).sample[0]
        assert (ours.decode_pixels(z) - expected).abs().max() < 1e-12
        frames = torch.rand(9, 32, 48, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        with torch.no_grad():
            mean = ref.encode((frames * 2 - 1).permute(3, 0, 1, 2)[None]).latent_dist.mean[0]
        assert (ours.encode(frames) - mean).abs().max() < 1e-12
    finally:
        ref.float(), ours.float()


def test_load_files(tiny, tmp_path):
    from safetensors.torch import save_file

    sd = tiny.state_dict()
    z = latents(3)
    expected = tiny.decode_pixels(z)
    pth, st = tmp_path / "Wan2.1_VAE.pth", tmp_path / "wan_2.1_vae.safetensors"
    torch.save(sd, pth)
    save_file({"model." + k: v.half() for k, v in sd.items()}, st)
    a, b = load_wan_vae(str(pth)), load_wan_vae(str(st))
    assert a.spec == b.spec == tiny.spec
    assert torch.equal(a.decode_pixels(z), expected)
    assert (b.decode_pixels(z) - expected).abs().max() < 0.05  # stored in fp16
    assert torch.equal(b.conv2.weight, sd["conv2.weight"].half().float())


def test_load_diffusers_names(diffusers_pair, tmp_path):
    from safetensors.torch import save_file

    ref, ours = diffusers_pair
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v.float().contiguous() for k, v in ref.state_dict().items()}, path)
    loaded = load_wan_vae(str(path))
    for k, v in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.float()), k


def test_load_errors(tiny, tmp_path):
    from safetensors.torch import save_file

    pth = tmp_path / "vae.pth"
    torch.save(tiny.state_dict(), pth)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(pth.read_bytes()[:5000])
    with pytest.raises(ValueError, match=re.escape(str(cut))):
        load_wan_vae(str(cut))
    st = tmp_path / "cut.safetensors"
    save_file(tiny.state_dict(), st)
    st.write_bytes(st.read_bytes()[:3000])
    with pytest.raises(ValueError, match=re.escape(str(st))):
        load_wan_vae(str(st))
    fake22 = {"encoder.conv1.weight": torch.zeros(160, 12, 3, 3, 3), "conv2.weight": torch.zeros(48, 48, 1, 1, 1),
              "decoder.upsamples.0.upsamples.0.residual.0.gamma": torch.zeros(1024, 1, 1, 1)}
    path22 = tmp_path / "Wan2.2_VAE.pth"
    torch.save(fake22, path22)
    with pytest.raises(ValueError, match="Wan 2.2"):
        load_wan_vae(str(path22))
    with pytest.raises(ValueError, match="not a Wan 2.1 VAE"):
        wan_vae_config({"foo.weight": torch.zeros(1)})
