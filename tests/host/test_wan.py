"""The Wan 2.1 path on the real host: a Wan-layout DiT file in the model folder, a decoder from models/vae or
models/vae_approx, and a CLIP with umT5's output format on the Prompt Schedule (tiny random weights; the host
has no umT5, so a test node stands in for ComfyUI's Load CLIP). The causal families (docs/causal.md) run on a
tiny Self-Forcing-style trainer's .pt file of the same network."""
from __future__ import annotations

import pytest
import torch
from graphs import load_api, load_ui, nodes_of, stream_graph
from safetensors.torch import save_file

from streamdit.codecs.taehv import TAEHVCodec
from streamdit.codecs.wan_vae import WanVAECodec
from streamdit.io.video import read_video
from streamdit.network.config import ModelConfig
from streamdit.network.model import WanDiT

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
    return with_stand_in_clip(g) if clip else g


def with_stand_in_clip(g: dict) -> dict:
    g["9"] = {"class_type": "StreamDiTTestStandInUMT5", "inputs": {"dim": CFG.text_dim}}
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


# -- causal families: a Self-Forcing-style .pt ------------------------------------------------------------------
SF = "tiny_self_forcing_dmd.pt"
CORGI = "0s: a corgi running on a beach\n0.5s: a corgi running through snow"


@pytest.fixture(scope="module")
def self_forcing_file(host):
    """As Self-Forcing's trainer saves it: {"generator", "generator_ema", "critic"}, each {"model.<wan key>": fp32}."""
    def entry(seed):
        return {"model." + k: v.contiguous() for k, v in randomise(WanDiT(CFG), seed).state_dict().items()}

    torch.save({"generator": entry(3), "generator_ema": entry(4), "critic": entry(5)},
               str(host.models_dir / "streamdit" / SF))
    return SF


def causal_graph(taehv: str, stream_id: str, seconds: float, family: str = "self-forcing", cfg: float = 1.0,
                 negative: str = "") -> dict:
    """The tiny file at 48x32; the buffer settings are those of the Wan tests (a causal family ignores them)."""
    return with_stand_in_clip(stream_graph(
        model=SF, decoder=taehv, family=family, width=48, height=32, chunk_frames=1, chunks=4, micro_steps=1,
        seconds=seconds, stream_id=stream_id, cfg=cfg, negative=negative, save="mp4", schedule=CORGI))


def video_of(host, run, node: str = "6"):
    (video,) = run.outputs[node]["videos"]
    return read_video(host.output_dir / video["subfolder"] / video["filename"])


def test_loader_lists_self_forcing_pt_files(host, self_forcing_file):
    """Self-Forcing, CausVid and Causal Forcing ship .pt files: the loader lists them next to .safetensors."""
    info = host.get("/object_info/StreamDiTModelLoader")["StreamDiTModelLoader"]["input"]
    assert "self-forcing" in info["optional"]["family"][0]
    assert SF in info["required"]["model"][0]


def test_self_forcing_file_streams_causally_and_continues(host, client, wan_files, self_forcing_file):
    """family self-forcing: 1.5 s = 24 frames per queue (chunks of 3 latent frames = 9, then 12 video frames, so
    each run ends inside a chunk); the second queue continues the stream exactly where the first one stopped."""
    host.post("/streamdit/free")
    parts = []
    for i in range(2):
        run = client.run(causal_graph(wan_files["taehv"], "sf", seconds=1.5))
        assert run.status == "success", run.error()
        frames, fps = video_of(host, run)
        assert frames.shape == (24, 32, 48, 3) and fps == 16
        (info,) = run.outputs["5"]["streamdit"]
        assert info["start_frame"] == 24 * i and info["new_stream"] == (i == 0) and info["run"] == i + 1
        assert frames.std() > 0 and float((frames[1:] - frames[:-1]).abs().amax()) > 0  # not constant in time
        parts.append(frames)
    log = host.log_tail(200_000)
    assert "streamdit: self-forcing (Self-Forcing" in log and "causal, chunks of 3 latent frames" in log
    # the same stream made in one queue: the two files join seamlessly (lossless H.264 at crf 0, up to YUV rounding)
    once = client.run(causal_graph(wan_files["taehv"], "sf-once", seconds=3.0))
    assert once.status == "success", once.error()
    whole, _ = video_of(host, once)
    joined = torch.cat(parts)
    assert whole.shape == joined.shape == (48, 32, 48, 3)
    assert float((whole - joined).abs().mean()) < 1 / 255


def test_causal_family_refuses_guidance(host, client, wan_files, self_forcing_file):
    run = client.run(causal_graph(wan_files["taehv"], "sf-cfg", seconds=0.5, cfg=2.0, negative="blurry"))
    err = run.error()
    assert err and err["node_type"] == "StreamDiTSampler"
    msg = err["exception_message"]
    assert "family self-forcing is guidance-distilled" in msg and "classifier-free guidance" in msg and "cfg=2" in msg
    # a running causal stream: cfg 2 is refused, the stream survives and continues at cfg 1
    assert client.run(causal_graph(wan_files["taehv"], "sf-live", seconds=0.5)).status == "success"
    err = client.run(causal_graph(wan_files["taehv"], "sf-live", seconds=0.5, cfg=2.0)).error()
    assert err and "guidance-distilled" in err["exception_message"] and "cfg back to 1" in err["exception_message"]
    run = client.run(causal_graph(wan_files["taehv"], "sf-live", seconds=0.5))
    assert run.status == "success", run.error()
    assert run.outputs["5"]["streamdit"][0]["start_frame"] == 8


def test_the_same_file_streams_bidirectionally_with_family_wan(host, client, wan_files, self_forcing_file):
    run = client.run(causal_graph(wan_files["taehv"], "sf-as-wan", seconds=1.0625, family="wan"))
    assert run.status == "success", run.error()
    frames, fps = video_of(host, run)
    assert frames.shape == (17, 32, 48, 3) and fps == 16 and frames.std() > 0  # the Wan buffer: 1 + 4 per latent
    assert any(SF in line and line.endswith("; family wan") for line in host.log_tail(200_000).splitlines())


def test_realtime_causal_workflow_runs_with_tiny_stand_ins(host, client, wan_files, self_forcing_file):
    """The bundled workflow names real weights (self_forcing_dmd.pt, umT5, taew2_1), so it runs with the tiny file,
    the tiny TAEHV and the stand-in umT5 in their place, at 48x32 for 1 s; everything else as bundled."""
    prompt, ui = load_api("realtime_causal_stream"), load_ui("realtime_causal_stream")
    (loader,) = nodes_of(prompt, "StreamDiTModelLoader")
    (clip,) = nodes_of(prompt, "CLIPLoader")
    (settings,) = nodes_of(prompt, "StreamDiTBufferSettings")
    (schedule,) = nodes_of(prompt, "StreamDiTPromptSchedule")
    (sampler,) = nodes_of(prompt, "StreamDiTSampler")
    assert prompt[loader]["inputs"]["model"] == "self_forcing_dmd.pt"
    assert prompt[loader]["inputs"]["family"] == "self-forcing" and prompt[schedule]["inputs"]["cfg"] == 1.0
    assert prompt[schedule]["inputs"]["clip"] == [clip, 0]
    prompt[clip] = {"class_type": "StreamDiTTestStandInUMT5", "inputs": {"dim": CFG.text_dim}}
    prompt[loader]["inputs"].update(model=SF, decoder=wan_files["taehv"])
    prompt[settings]["inputs"].update(width=48, height=32)
    prompt[sampler]["inputs"].update(seconds=1.0)
    fps = prompt[settings]["inputs"]["fps"]
    run = client.run(prompt, extra_pnginfo={"workflow": ui})
    assert run.status == "success", run.error()
    (save,) = nodes_of(prompt, "StreamDiTSaveVideo")
    frames, got_fps = video_of(host, run, save)
    assert frames.shape == (round(fps), 32, 48, 3) and got_fps == fps and frames.std() > 0
    (preview,) = nodes_of(prompt, "StreamDiTLivePreview")
    assert run.outputs[preview]["streamdit"][0]["frames"] == round(fps)


@pytest.mark.parametrize("decoder", ["vae"])
def test_wan_edit_runs_in_the_host_and_continues_run_by_run(host, client, wan_files, decoder):
    """Video Edit on a Wan file with the Wan VAE (frames packed 1 + 4k); seconds = 1: each queue edits the next
    16 frames of the 64-frame source (the unit of a run: source frames at the source's rate)."""
    graph = wan_graph(wan_files[decoder], "wan-edit", seconds=1.0)
    del graph["4"]
    graph["11"] = {"class_type": "StreamDiTVideoEdit",
                   "inputs": {"model": ["1", 0], "prompt": ["3", 0], "settings": ["2", 0], "strength": 0.5,
                              "source_video": "example: a pig walking right on grass", "seed": 0, "fps": 16.0,
                              "seconds": 1.0}}
    for node in ("5", "6"):
        graph[node]["inputs"]["frames"] = ["11", 0]
    starts = []
    for _ in range(2):
        run = client.run(graph)
        assert run.status == "success", run.error()
        frames, fps = video_of(host, run)
        assert frames.shape == (16, 32, 48, 3) and fps == 16 and frames.std() > 0
        (info,) = run.outputs["5"]["streamdit"]
        starts.append((info["start_frame"], info["new_stream"]))
    assert starts == [(0, True), (16, False)]  # the second queue continued the same edit
