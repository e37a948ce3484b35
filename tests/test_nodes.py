"""The node pack without a host: every node's declarations are consistent and documented, and every
bundled workflow's API twin is exactly what its UI file converts to."""
from __future__ import annotations

import inspect
import json
import re
import time

import pytest
from workflow_format import ROOT, graph_problems, pack_input_types, ui_to_api, workflow_pairs

input_types_of = pack_input_types()
import sys  # noqa: E402

PACK = sys.modules["ComfyUI_StreamDiT_pack"]
NODES = PACK.NODE_CLASS_MAPPINGS
EXPECTED = {"StreamDiTModelLoader", "StreamDiTBufferSettings", "StreamDiTPromptSchedule", "StreamDiTSampler",
            "StreamDiTLivePreview", "StreamDiTSaveVideo", "StreamDiTFramesToImage", "StreamDiTVideoEdit",
            "StreamDiTCoreModel"}


def test_pack_entry_point():
    assert set(NODES) == EXPECTED == set(PACK.NODE_DISPLAY_NAME_MAPPINGS)
    assert PACK.WEB_DIRECTORY == "./web" and (ROOT / "web" / "js" / "streamdit.js").is_file()


def test_entry_point_imports_as_a_lone_file():
    """pytest imports the root __init__.py on its own when the clone's folder name is no identifier
    (ComfyUI-StreamDiT): it must load there, registering nothing, rather than fail every test's setup."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("__init__", ROOT / "__init__.py")
    lone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lone)
    assert lone.NODE_CLASS_MAPPINGS == {} == lone.NODE_DISPLAY_NAME_MAPPINGS and lone.WEB_DIRECTORY == "./web"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_node_declarations_are_consistent(name):
    cls = NODES[name]
    types = cls.INPUT_TYPES()
    assert set(types) <= {"required", "optional", "hidden"}
    assert cls.CATEGORY == "StreamDiT" and len(cls.DESCRIPTION) > 60
    function = getattr(cls, cls.FUNCTION)
    params = inspect.signature(function).parameters
    declared = [n for section in types.values() for n in section]
    assert set(declared) <= set(params), f"{name}.{cls.FUNCTION} does not take {set(declared) - set(params)}"
    required = {n for n, p in params.items() if p.default is inspect.Parameter.empty and n != "self"}
    assert required <= set(types.get("required", {})), f"{name}.{cls.FUNCTION} needs {required}"
    for section in ("required", "optional"):
        for input_name, spec in types.get(section, {}).items():
            assert isinstance(spec, tuple) and spec, (name, input_name)
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
            if isinstance(spec[0], list):
                assert spec[1].get("default", spec[0][0]) in spec[0]
    assert isinstance(cls.RETURN_TYPES, tuple)
    if getattr(cls, "RETURN_NAMES", None) is not None:
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
    if cls.RETURN_TYPES:
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    else:
        assert cls.OUTPUT_NODE is True, f"{name} returns nothing, so it must be an output node"
    validate = getattr(cls, "VALIDATE_INPUTS", None)
    if validate is not None:
        args = inspect.getfullargspec(validate).args[1:]
        assert set(args) <= set(types["required"]), f"{name}.VALIDATE_INPUTS names unknown inputs"
    for hook in ("IS_CHANGED", "VALIDATE_INPUTS"):
        if hasattr(cls, hook):
            assert isinstance(inspect.getattr_static(cls, hook), classmethod), f"{name}.{hook} must be a classmethod"
    assert not inspect.iscoroutinefunction(function), "no async node functions (the March-2024 host)"


def test_custom_types_connect():
    produced = {t for cls in NODES.values() for t in cls.RETURN_TYPES}
    for cls in NODES.values():
        for spec in cls.INPUT_TYPES().get("required", {}).values():
            if isinstance(spec[0], str) and spec[0].startswith("STREAMDIT_"):
                assert spec[0] in produced


def test_validation_messages_name_the_problem():
    settings = NODES["StreamDiTBufferSettings"]
    ok = dict(width=64, height=64, chunk_frames=2, chunks=8, micro_steps=1, ref_frames=0)
    assert settings.VALIDATE_INPUTS(**ok) is True
    assert "width=60 is not a multiple of 16" in settings.VALIDATE_INPUTS(**{**ok, "width": 60})
    assert "latent frames" in settings.VALIDATE_INPUTS(**{**ok, "chunks": 256, "chunk_frames": 2})
    assert "no time" in NODES["StreamDiTPromptSchedule"].VALIDATE_INPUTS("0s: a pig\nthen a cat")
    assert "not found" in NODES["StreamDiTModelLoader"].VALIDATE_INPUTS("missing.safetensors")


@pytest.mark.parametrize("ui_path,api_path", workflow_pairs(), ids=lambda p: p.name)
def test_workflow_twins_are_in_sync(ui_path, api_path):
    assert api_path.is_file(), f"{ui_path.name} has no API twin; run python tests/workflow_format.py"
    ui = json.loads(ui_path.read_text())
    assert ui.get("version") and ui["nodes"] and "links" in ui, "UI format expected"
    assert ui_to_api(ui, input_types_of) == json.loads(api_path.read_text()), (
        f"{api_path.relative_to(ROOT)} is out of date; run python tests/workflow_format.py")


@pytest.mark.parametrize("ui_path,api_path", workflow_pairs(), ids=lambda p: p.name)
def test_bundled_workflow_graphs_validate_against_the_node_definitions(ui_path, api_path):
    """Every workflow, including the Wan 2.1 one that CI cannot run (no weights): inputs, links, values."""
    prompt = json.loads(api_path.read_text())
    assert graph_problems(prompt, input_types_of) == []
    for node in prompt.values():
        validate = getattr(NODES.get(node["class_type"]), "VALIDATE_INPUTS", None)
        if validate is not None and node["class_type"] != "StreamDiTModelLoader":  # files absent here
            args = inspect.getfullargspec(validate).args[1:]
            assert validate(**{a: node["inputs"][a] for a in args if a in node["inputs"]}) is True, node


def test_graph_validation_finds_what_the_host_would_reject():
    prompt = json.loads((ROOT / "workflows" / "api" / "wan2.1_1.3b_stream.json").read_text())
    bad = json.loads(json.dumps(prompt))
    loader = next(k for k, v in bad.items() if v["class_type"] == "StreamDiTModelLoader")
    schedule = next(k for k, v in bad.items() if v["class_type"] == "StreamDiTPromptSchedule")
    sampler = next(k for k, v in bad.items() if v["class_type"] == "StreamDiTSampler")
    del bad[loader]["inputs"]["decoder"]
    bad[schedule]["inputs"]["cfg"] = 50.0
    bad[sampler]["inputs"]["prompt"] = [loader, 0]
    found = graph_problems(bad, input_types_of)
    assert any("'decoder' is missing" in p for p in found)
    assert any("cfg: 50.0 is outside [1.0, 20.0]" in p for p in found)
    assert any("takes STREAMDIT_PROMPT, linked to a STREAMDIT_MODEL" in p for p in found)


def test_wan_workflow_uses_the_wan_path():
    prompt = json.loads((ROOT / "workflows" / "api" / "wan2.1_1.3b_stream.json").read_text())
    by_class = {v["class_type"]: v["inputs"] for v in prompt.values()}
    assert by_class["CLIPLoader"]["type"] == "wan" and "umt5" in by_class["CLIPLoader"]["clip_name"]
    assert by_class["StreamDiTModelLoader"]["decoder"] in ("vae_approx/taew2_1.safetensors",
                                                           "vae/wan_2.1_vae.safetensors")
    s = by_class["StreamDiTBufferSettings"]
    assert (s["width"], s["height"], s["chunk_frames"], s["chunks"], s["micro_steps"]) == (832, 480, 1, 16, 2)
    clip_link = by_class["StreamDiTPromptSchedule"]["clip"]
    assert prompt[clip_link[0]]["class_type"] == "CLIPLoader"


def test_bundled_workflows_exist_for_the_template_browser():
    names = {p.stem for p, _ in workflow_pairs()}
    assert {"text_to_stream", "interactive_prompt_schedule", "pig_to_cat_edit", "wan2.1_1.3b_stream"} <= names


def test_pyproject_is_a_valid_registry_entry():
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] and meta["project"]["version"]
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    # the ecosystem's registry ids; the folder users get (custom_nodes/<id>) never shadows the engine package
    assert re.fullmatch(r"comfyui-[a-z0-9-]+", meta["project"]["name"]) and meta["project"]["name"] != "streamdit"
    icon = re.fullmatch(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/main/(.+\.png)", comfy["Icon"])
    assert icon and (ROOT / icon.group(1)).is_file(), "the Icon URL must point at a PNG committed in this repository"
    assert re.fullmatch(r">=\d+\.\d+\.\d+", comfy["requires-comfyui"])
    names = [re.split(r"[<>=!~\[; ]", line.strip())[0].lower() for line in
             (ROOT / "requirements.txt").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert names and "torch" not in names and "torchvision" not in names, "requirements.txt must never pin torch"


def test_registry_evicts_idle_and_excess_streams(monkeypatch):
    registry = sys.modules["ComfyUI_StreamDiT_pack.nodes.registry"]
    monkeypatch.setattr(registry, "_streams", {})
    monkeypatch.setattr(registry, "_start_reaper", lambda: None)
    monkeypatch.setattr(registry, "MAX_STREAMS", 2)
    now = time.time()
    for i, used in enumerate([now - 5, now - 4, now - 3]):
        registry.put(registry.Entry(f"s{i}", stream=None, fingerprint=(), schedule="", last_used=used))
    assert sorted(registry._streams) == ["s1", "s2"], "the least recently used stream goes first"
    registry._streams["s1"].busy = True
    assert registry.evict_idle(now=now + registry.IDLE_SECONDS + 10) == 1, "a generating stream is never evicted"
    assert list(registry._streams) == ["s1"]
    registry._streams["s1"].busy = False
    assert registry.free_all() == 1 and registry.alive() == 0


@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_saved_videos_carry_prompt_and_workflow_as_core_writes_them(fmt, tmp_path, monkeypatch):
    """The frontend restores a graph from a video's "prompt"/"workflow" tags (core's Save Video writes those)."""
    from types import SimpleNamespace

    import torch

    from streamdit.io.video import read_metadata, read_video

    save, host = sys.modules["ComfyUI_StreamDiT_pack.nodes.save"], sys.modules["ComfyUI_StreamDiT_pack.nodes.host"]
    monkeypatch.setattr(host, "output_directory", lambda: str(tmp_path))
    prompt = {"4": {"class_type": "StreamDiTSampler", "inputs": {"seconds": 1.0}, "is_changed": [0.5]}}
    workflow = {"nodes": [{"id": 4, "type": "StreamDiTSampler"}], "links": [], "version": 0.4}
    run = SimpleNamespace(width=32, height=16, fps=8.0, graph=prompt, extra_pnginfo={"workflow": workflow},
                          stream_id="default", run_index=2, start_frame=40, audio_source=None)
    sink = save.VideoSink(run, "StreamDiT/meta", fmt, 0)
    frames = torch.rand(5, 16, 32, 3)
    sink.write(frames, 40, run)
    result = sink.close(True, run)
    path = tmp_path / result["subfolder"] / result["filename"]
    tags = read_metadata(path)  # through ffmpeg
    assert json.loads(tags["prompt"]) == {"4": {"class_type": "StreamDiTSampler", "inputs": {"seconds": 1.0}}}
    assert json.loads(tags["workflow"]) == workflow
    assert json.loads(tags["comment"]) == {"streamdit": {"stream_id": "default", "run": 2, "start_frame": 40}}
    assert read_video(path)[0].shape == (5, 16, 32, 3) and result["frames"] == 5


def test_buffer_settings_cold_steps_reach_the_stream_and_its_identity():
    node = NODES["StreamDiTBufferSettings"]()
    assert "cold_steps" in node.INPUT_TYPES()["optional"]  # optional: workflows saved before it still load
    (default,) = node.build(64, 64, 2, 8, 1, 0, 1, 16.0, 0.0, "uniform")
    (finer,) = node.build(64, 64, 2, 8, 1, 0, 1, 16.0, 0.0, "uniform", cold_steps=3)
    assert default.stream_kwargs()["cold_micro_steps"] is None  # the model's own default
    assert finer.stream_kwargs()["cold_micro_steps"] == 3
    assert default.fingerprint() != finer.fingerprint()  # a new start is a new stream
