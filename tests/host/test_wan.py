"""The Wan 2.1 path on the real host: a Wan-layout DiT file in the model folder, a decoder from models/vae or
models/vae_approx, and a CLIP with umT5's output format on the Prompt Schedule (tiny random weights; the host
has no umT5, so a test node stands in for ComfyUI's Load CLIP)."""
from __future__ import annotations

import pytest
import torch
from graphs import stream_graph
from safetensors.torch import save_file

from streamdit.codecs.taehv import TAEHVCodec
from streamdit.codecs.wan_vae import WanVAECodec
from streamdit.config import ModelConfig
from streamdit.model import WanDiT
from streamdit.video_io import read_video

DIT = "tiny_wan2.1_t2v.safetensors"
CFG = ModelConfig(dim=128, ffn_dim=128, num_heads=1, num_layers=2, in_dim=16, out_dim=16, text_dim=32, text_len=512,
                  freq_dim=32)


def randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.1 * noise if name.endswith(("gamma", "norm.weight")) else 0.1 * noise)
    return module


@pytest.fixture(scope="module")
def wan_files(host):
    """ComfyUI-layout DiT (model.diffusion_model. prefix, bf16) in models/streamdit; decoders in vae, vae_approx."""
    models = host.models_dir
    dit = randomise(WanDiT(CFG), 0)
    save_file({"model.diffusion_model." + k: v.to(torch.bfloat16).contiguous() for k, v in dit.state_dict().items()},
              str(host.models_dir / "streamdit" / DIT))
    vae = randomise(WanVAECodec(dim=8, z_dim=16, num_res_blocks=1), 1)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()},
              str(models / "vae" / "tiny_wan_vae.safetensors"))
    taehv = randomise(TAEHVCodec(16, [16, 8, 8, 8]), 2)
    torch.save(taehv.state_dict(), str(models / "vae_approx" / "tiny_taew2_1.pth"))
    return {"vae": "vae/tiny_wan_vae.safetensors", "taehv": "vae_approx/tiny_taew2_1.pth"}


def wan_graph(decoder: str, stream_id: str, seconds: float, clip: bool = True) -> dict:
    g = stream_graph(model=DIT, decoder=decoder, width=48, height=32, chunk_frames=1, chunks=4, micro_steps=1,
                     seconds=seconds, stream_id=stream_id, cfg=2.0, negative="blurry", save="mp4",
                     schedule="0s: a corgi running on a beach\n0.5s: a corgi running through snow")
    if clip:
        g["9"] = {"class_type": "StreamDiTTestStandInUMT5", "inputs": {"dim": 32}}
        g["3"]["inputs"]["clip"] = ["9", 0]
    return g


def test_loader_lists_decoders_from_vae_and_vae_approx(host, wan_files):
    info = host.get("/object_info/StreamDiTModelLoader")["StreamDiTModelLoader"]["input"]["required"]
    assert DIT in info["model"][0]
    assert {wan_files["vae"], wan_files["taehv"]} <= set(info["decoder"][0])
    assert info["decoder"][1]["default"] == "model's own codec"


@pytest.mark.parametrize("decoder", ["vae", "taehv"])
def test_wan_stream_runs_with_a_clip_and_continues(host, client, wan_files, decoder):
    graph = wan_graph(wan_files[decoder], f"wan-{decoder}", seconds=1.0625)  # 17 frames = 1 + 4 latent frames
    for i in range(2):
        run = client.run(graph)
        assert run.status == "success", run.error()
        (video,) = run.outputs["6"]["videos"]
        frames, fps = read_video(host.output_dir / video["subfolder"] / video["filename"])
        assert frames.shape == (17, 32, 48, 3) and fps == 16
        (info,) = run.outputs["5"]["streamdit"]
        assert info["start_frame"] == 17 * i  # the second queue continues the same stream
        assert frames.std() > 0


def test_wan_model_without_clip_says_what_to_connect(client, wan_files):
    run = client.run(wan_graph(wan_files["taehv"], "wan-noclip", 0.25, clip=False))
    err = run.error()
    assert err and err["node_type"] == "StreamDiTSampler"
    assert "no text encoder of its own; load a umT5 text encoder with Load CLIP (type 'wan')" in \
        err["exception_message"]


def test_wan_model_with_its_own_codec_names_the_decoders(client, wan_files):
    run = client.run(wan_graph("model's own codec", "wan-nodecoder", 0.25))
    err = run.error()
    assert err and err["node_type"] == "StreamDiTModelLoader"
    assert "no decoder of its own" in err["exception_message"] and "taew2_1" in err["exception_message"]
