"""ComfyUI's own MODEL and VAE as a stream's network and decoder (newest host: core has Wan there).

A tiny Wan-2.1-shaped DiT that core's detection accepts (num_heads = dim / 128, freq_dim 256, text_dim 4096) goes
through UNETLoader and LoraLoaderModelOnly (a tiny LoRA in diffusers' lora_A/lora_B layout); the reference is the
pack's own loader given the LoRA-merged weights, merged here in the test (W + B @ A). Core's Wan 2.1 VAE detection
fixes dim 96, so the VAE is a full-size random Wan 2.1 VAE (bf16 on disk). Frames are compared as floats (a test
consumer receives the run's chunks through the run's sink mechanism, before any 8-bit rounding).
"""
from __future__ import annotations

import pytest
import torch
from random_weights import randomise
from safetensors.torch import save_file

from streamdit.codecs.wan_vae import WanVAECodec
from streamdit.network.config import ModelConfig
from streamdit.network.model import WanDiT

pytestmark = pytest.mark.newest_host("core's Wan model (comfy.ldm.wan) and UNETLoader for it")

CFG = ModelConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=16, out_dim=16, text_dim=4096,
                  text_len=512, freq_dim=256)
DIT, MERGED, LORA, VAE = "tiny_core_wan.safetensors", "tiny_core_wan_merged.safetensors", "tiny_wan_lora.safetensors", \
    "tiny_core_wan_vae.safetensors"
LORA_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.v", "ffn.0",
                "ffn.2")
TOL = 1e-4


@pytest.fixture(scope="module")
def core_files(host):
    diffusion, loras = host.comfy_dir / "models" / "diffusion_models", host.comfy_dir / "models" / "loras"
    diffusion.mkdir(parents=True, exist_ok=True)
    loras.mkdir(parents=True, exist_ok=True)
    dit = randomise(WanDiT(CFG), 10)
    state = {k: v.contiguous() for k, v in dit.state_dict().items()}
    save_file({"model.diffusion_model." + k: v for k, v in state.items()}, str(diffusion / DIT))
    g = torch.Generator().manual_seed(11)
    lora, merged = {}, dict(state)
    for i in range(CFG.num_layers):
        for target in LORA_TARGETS:
            name = f"blocks.{i}.{target}"
            w = state[name + ".weight"]
            a = 0.3 * torch.randn(4, w.shape[1], generator=g)
            b = 0.3 * torch.randn(w.shape[0], 4, generator=g)
            lora[f"diffusion_model.{name}.lora_A.weight"] = a
            lora[f"diffusion_model.{name}.lora_B.weight"] = b
            merged[name + ".weight"] = w + b @ a  # no alpha key: scale 1, as core's diffusers-format reader does
    save_file(lora, str(loras / LORA))
    save_file({"model.diffusion_model." + k: v.contiguous() for k, v in merged.items()},
              str(host.models_dir / "streamdit" / MERGED))
    vae = randomise(WanVAECodec(dim=96, z_dim=16, num_res_blocks=2), 12, scale=0.02)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in vae.state_dict().items()},
              str(host.models_dir / "vae" / VAE))
    return {"vae": "vae/" + VAE}


SETTINGS = {"width": 48, "height": 32, "chunk_frames": 1, "chunks": 4, "micro_steps": 1, "ref_frames": 0, "seed": 3,
            "fps": 16.0, "shift": 0.0, "cold_start": "uniform"}


def graph(source: dict, name: str, stream_id: str, seconds: float = 0.8125) -> dict:
    """source: the nodes giving a STREAMDIT_MODEL as node "1"; then settings, schedule (stand-in umT5 CLIP, cfg 2),
    sampler and the float-frame capture. 0.8125 s = 13 frames = 1 + 3 x 4: the first latent frame and 3 chunks."""
    g = dict(source)
    g.update({
        "2": {"class_type": "StreamDiTBufferSettings", "inputs": dict(SETTINGS)},
        "9": {"class_type": "StreamDiTTestStandInUMT5", "inputs": {"dim": CFG.text_dim}},
        "3": {"class_type": "StreamDiTPromptSchedule",
              "inputs": {"schedule": "0s: a corgi running on a beach\n0.5s: a corgi in snow",
                         "transition_seconds": 0.25, "negative_prompt": "blurry", "cfg": 2.0, "clip": ["9", 0]}},
        "4": {"class_type": "StreamDiTSampler", "inputs": {"model": ["1", 0], "settings": ["2", 0], "prompt": ["3", 0],
                                                          "seconds": seconds, "stream_id": stream_id, "reset": True}},
        "7": {"class_type": "StreamDiTTestCaptureFrames", "inputs": {"frames": ["4", 0], "name": name}},
    })
    return g


def core_source(lora: bool = True, weight_dtype: str = "default", decoder: str = "connected VAE") -> dict:
    g = {"10": {"class_type": "UNETLoader", "inputs": {"unet_name": DIT, "weight_dtype": weight_dtype}},
         "12": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
         "1": {"class_type": "StreamDiTCoreModel",
               "inputs": {"model": ["11" if lora else "10", 0], "family": "wan", "decoder": decoder, "vae": ["12", 0]}}}
    if lora:
        g["11"] = {"class_type": "LoraLoaderModelOnly",
                   "inputs": {"model": ["10", 0], "lora_name": LORA, "strength_model": 1.0}}
    return g


def own_source(decoder: str, model: str = MERGED, dtype: str = "float32") -> dict:
    inputs = {"model": model, "device": "auto", "dtype": dtype, "attention": "auto", "decoder": decoder}
    return {"1": {"class_type": "StreamDiTModelLoader", "inputs": inputs}}


def failure(run) -> str:
    err = run.error() or {}
    return f"{err.get('node_type')}: {err.get('exception_message')}\n{''.join(err.get('traceback') or [])[-3000:]}"


def captured(host, client, g: dict, name: str) -> tuple[torch.Tensor, dict]:
    run = client.run(g, timeout=300)
    assert run.status == "success", failure(run)
    (info,) = run.outputs["7"]["capture"]
    return torch.load(host.output_dir / f"{name}.pt"), info


def test_core_model_and_lora_stream_as_the_merged_weights_do(host, client, core_files):
    core, info = captured(host, client, graph(core_source(), "core", "core"), "core")
    assert info["loaded_during_run"] and info["models"] == 2  # core's MODEL and VAE, loaded through core
    own, _ = captured(host, client, graph(own_source(core_files["vae"]), "own", "own"), "own")
    assert core.shape == own.shape == (13, 32, 48, 3)
    diff = float((core - own).abs().max())
    assert diff <= TOL, f"core MODEL + LoRA vs own loader on the merged weights: max |diff| {diff:.2e}"
    plain, _ = captured(host, client, graph(core_source(lora=False), "plain", "plain"), "plain")
    effect = float((core - plain).abs().max())
    assert effect >= 100 * TOL, f"the LoRA changes the frames by only {effect:.2e}"
    assert any("ComfyUI MODEL (WAN21)" in line for line in host.log_tail(400_000).splitlines())


def test_core_vae_decodes_as_the_packs_decoder_on_the_same_file(host, client, core_files):
    """The same core MODEL: decoded by the connected core VAE, or by the pack's loading of the same VAE file."""
    via_core, _ = captured(host, client, graph(core_source(), "vae-core", "vae-core"), "vae-core")
    via_file, _ = captured(host, client, graph(core_source(decoder=core_files["vae"]), "vae-file", "vae-file"),
                           "vae-file")
    diff = float((via_core - via_file).abs().max())
    assert diff <= TOL, f"core VAE vs the pack's loading of the same file: max |diff| {diff:.2e}"
    assert float(via_core.std()) > 1e-3  # not a flat image: the comparison means something


def test_fp8_weights_stay_fp8_and_stream(host, client, core_files):
    g = graph(core_source(weight_dtype="fp8_e4m3fn"), "fp8", "fp8")
    g["8"] = {"class_type": "StreamDiTTestWatch", "inputs": {"model": ["1", 0]}}
    run = client.run(g, timeout=300)
    assert run.status == "success", failure(run)
    (watch,) = run.outputs["8"]["watch"]
    assert "torch.float8_e4m3fn" in watch["dtypes"]  # the block weights, as core stores them
    fp8 = torch.load(host.output_dir / "fp8.pt")
    full = torch.load(host.output_dir / "core.pt") if (host.output_dir / "core.pt").exists() else None
    assert fp8.shape == (13, 32, 48, 3) and torch.isfinite(fp8).all() and float(fp8.std()) > 1e-3
    if full is not None:  # fp8 rounding moves the frames, but it is the same model
        assert float((fp8 - full).abs().mean()) < 0.1


def test_causal_family_and_wrong_models_are_refused_with_the_reason(host, client, core_files):
    g = graph(core_source(), "x", "causal")
    g["1"]["inputs"]["family"] = "self-forcing"
    err = client.run(g).error()
    assert err and err["node_type"] == "StreamDiTCoreModel"
    assert "KV cache" in err["exception_message"] and "StreamDiT Model Loader" in err["exception_message"]
    g = graph(core_source(), "x", "novae")
    del g["1"]["inputs"]["vae"]
    err = client.run(g).error()
    assert err and "no VAE is connected" in err["exception_message"]


def test_bundled_workflow_runs_with_tiny_stand_ins(host, client, core_files):
    """"Wan from your ComfyUI models" as bundled, with the tiny DiT, LoRA and VAE and the stand-in umT5 in place of
    the real files, at 48x32 for 13 frames; everything else as bundled."""
    from graphs import load_api, load_ui, nodes_of

    prompt, ui = load_api("wan2.1_from_comfyui_models"), load_ui("wan2.1_from_comfyui_models")
    (unet,), (lora,), (vae,), (clip,) = (nodes_of(prompt, k) for k in ("UNETLoader", "LoraLoaderModelOnly",
                                                                     "VAELoader", "CLIPLoader"))
    (core,), (settings,), (sampler,) = (nodes_of(prompt, k) for k in ("StreamDiTCoreModel", "StreamDiTBufferSettings",
                                                                     "StreamDiTSampler"))
    assert prompt[core]["inputs"]["model"] == [lora, 0] and prompt[core]["inputs"]["vae"] == [vae, 0]
    prompt[unet]["inputs"]["unet_name"] = DIT
    prompt[lora]["inputs"]["lora_name"] = LORA
    prompt[vae]["inputs"]["vae_name"] = VAE
    prompt[clip] = {"class_type": "StreamDiTTestStandInUMT5", "inputs": {"dim": CFG.text_dim}}
    prompt[settings]["inputs"].update(width=48, height=32)
    prompt[sampler]["inputs"].update(seconds=0.8125)
    run = client.run(prompt, extra_pnginfo={"workflow": ui}, timeout=300)
    assert run.status == "success", failure(run)
    (save,) = nodes_of(prompt, "StreamDiTSaveVideo")
    (video,) = run.outputs[save]["videos"]
    from streamdit.io.video import read_video
    frames, fps = read_video(host.output_dir / video["subfolder"] / video["filename"])
    assert frames.shape == (13, 32, 48, 3) and fps == 16 and frames.std() > 0


def edit_graph(source: dict, name: str) -> dict:
    """Video Edit of the bundled pig clip (its first second) at 48x32, strength 0.5, captured as floats."""
    g = graph(source, name, name)
    del g["4"]
    g["20"] = {"class_type": "StreamDiTVideoEdit",
               "inputs": {"model": ["1", 0], "prompt": ["3", 0], "settings": ["2", 0], "strength": 0.5,
                          "source_video": "example: a pig walking right on grass", "seed": 0, "fps": 16.0,
                          "seconds": 1.0}}
    g["7"]["inputs"]["frames"] = ["20", 0]
    return g


def test_core_model_and_vae_edit_video_as_the_merged_weights_do(host, client, core_files):
    """Video-to-video on core's MODEL + LoRA and core's VAE (its encoder too) against the own loader's merged file."""
    core, _ = captured(host, client, edit_graph(core_source(), "edit-core"), "edit-core")
    own, _ = captured(host, client, edit_graph(own_source(core_files["vae"]), "edit-own"), "edit-own")
    assert core.shape == own.shape == (16, 32, 48, 3)
    diff = float((core - own).abs().max())
    assert diff <= TOL, f"edit through core's MODEL and VAE vs the own loader: max |diff| {diff:.2e}"
