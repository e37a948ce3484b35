"""The bundled real-time causal workflow (workflows/realtime_causal_stream.json) is wired for Self-Forcing."""
from __future__ import annotations

import json

from workflow_format import ROOT, pack_input_types

from streamdit.sampling.families import FAMILIES

pack_input_types()  # imports the pack as ComfyUI does


def test_realtime_causal_workflow_uses_a_causal_family_as_trained():
    prompt = json.loads((ROOT / "workflows" / "api" / "realtime_causal_stream.json").read_text())
    by_class = {v["class_type"]: v["inputs"] for v in prompt.values()}
    assert by_class["CLIPLoader"]["type"] == "wan" and "umt5" in by_class["CLIPLoader"]["clip_name"]
    loader = by_class["StreamDiTModelLoader"]
    assert loader["model"] == "self_forcing_dmd.pt" and loader["family"] == "self-forcing"
    assert FAMILIES[loader["family"]].causal and FAMILIES[loader["family"]].state_key == "generator_ema"
    assert loader["decoder"] == "vae_approx/taew2_1.safetensors"
    assert (loader["dtype"], loader["device"]) == ("auto", "auto")
    s = by_class["StreamDiTBufferSettings"]
    assert (s["width"], s["height"], s["fps"]) == (832, 480, 16.0)  # Self-Forcing's size and frame rate
    schedule = by_class["StreamDiTPromptSchedule"]
    assert schedule["cfg"] == 1.0 and prompt[schedule["clip"][0]]["class_type"] == "CLIPLoader"  # guidance distilled
    assert len(schedule["schedule"].splitlines()) >= 2
    (sampler_id,) = [k for k, v in prompt.items() if v["class_type"] == "StreamDiTSampler"]
    sampler = prompt[sampler_id]["inputs"]
    assert sampler["seconds"] == 5.0
    assert [prompt[sampler[k][0]]["class_type"] for k in ("model", "settings", "prompt")] == [
        "StreamDiTModelLoader", "StreamDiTBufferSettings", "StreamDiTPromptSchedule"]
    consumers = {v["class_type"] for v in prompt.values() if v["inputs"].get("frames") == [sampler_id, 0]}
    assert consumers == {"StreamDiTLivePreview", "StreamDiTSaveVideo"}
