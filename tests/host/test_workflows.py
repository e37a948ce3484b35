"""The bundled workflows run on a real host and their files decode with the right frames, size and FPS."""
from __future__ import annotations

import json

import pytest
from comfyhost import PACK_NAME
from graphs import ROOT, load_api, load_ui, nodes_of

from streamdit.io.video import probe_video, read_metadata, read_video

WORKFLOWS = ["text_to_stream", "interactive_prompt_schedule"]
# wan2.1_1.3b_stream, wan2.1_video_to_video and realtime_causal_stream name real weights: test_wan.py runs the
# causal one and a Wan edit with tiny stand-ins


def saved_videos(host, run, prompt) -> list:
    files = []
    for node in nodes_of(prompt, "StreamDiTSaveVideo"):
        (video,) = run.outputs[node]["videos"]
        files.append((host.output_dir / video["subfolder"] / video["filename"], video))
    return files


@pytest.mark.parametrize("name", WORKFLOWS)
def test_bundled_workflow_runs_and_its_videos_decode(host, client, name):
    prompt, ui = load_api(name), load_ui(name)
    sampler = prompt[nodes_of(prompt, "StreamDiTSampler")[0]]["inputs"]
    settings = prompt[nodes_of(prompt, "StreamDiTBufferSettings")[0]]["inputs"]
    expected = round(sampler["seconds"] * settings["fps"])
    host.post("/streamdit/free")  # start from a fresh stream whatever ran before in this session
    runs = 3 if name == "interactive_prompt_schedule" else 1  # the schedule plays across queued runs
    for i in range(runs):
        run = client.run(prompt, extra_pnginfo={"workflow": ui})
        assert run.status == "success", run.error()
        for path, video in saved_videos(host, run, prompt):
            assert path.is_file(), path
            info = probe_video(path)
            assert (info["width"], info["height"]) == (settings["width"], settings["height"])
            assert info["fps"] == pytest.approx(settings["fps"])
            frames, fps = read_video(path)
            assert frames.shape == (expected, settings["height"], settings["width"], 3)
            assert video["frames"] == expected
            tags = read_metadata(path)
            assert json.loads(tags["workflow"]) == ui and json.loads(tags["prompt"]) == prompt  # as core writes them
            assert json.loads(tags["comment"])["streamdit"]["run"] == i + 1
        for node in nodes_of(prompt, "StreamDiTLivePreview"):
            (info,) = run.outputs[node]["streamdit"]
            assert info["frames"] == expected and info["fps"] == settings["fps"]
            assert info["start_frame"] == i * expected  # each queue continues the stream
            assert info["streams_alive"] >= 1


@pytest.mark.newest_host("the March-2024 host has no template browser (ComfyUI added it in 2024-12)")
def test_template_browser_lists_the_bundled_workflows(host):
    """The new host's template browser (absent before 2024-12) lists workflows/*.json, not the API twins."""
    import urllib.error

    try:
        templates = host.get("/workflow_templates")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        pytest.skip("this host has no template browser (ComfyUI before 2024-12)")
    bundled = WORKFLOWS + ["pig_to_cat_edit", "wan2.1_1.3b_stream", "realtime_causal_stream", "wan2.1_video_to_video",
                           "wan2.1_from_comfyui_models"]
    assert sorted(templates.get(PACK_NAME, [])) == sorted(bundled)  # workflows/ only, one folder for both hosts
    assert host.get(f"/api/workflow_templates/{PACK_NAME}/text_to_stream.json") == load_ui("text_to_stream")


def test_bundled_pig_to_cat_workflow_edits_the_example_video(host, client):
    prompt, ui = load_api("pig_to_cat_edit"), load_ui("pig_to_cat_edit")
    run = client.run(prompt, extra_pnginfo={"workflow": ui})
    assert run.status == "success", run.error()
    source, src_fps = read_video(ROOT / "workflows" / "media" / "pig_walking_right_on_grass.mp4")
    (path, video), = saved_videos(host, run, prompt)
    frames, fps = read_video(path)
    assert frames.shape == source.shape and fps == src_fps == 16.0  # same length, size and frame rate
    assert video["frames"] == source.shape[0]
    assert json.loads(read_metadata(path)["prompt"])["3"]["class_type"] == "StreamDiTVideoEdit"


def test_pig_to_cat_workflow_runs_compiled_inside_the_host(host, client):
    """The Load Model node's compile toggle: torch.compile inside the host's worker thread, same frames."""
    prompt, ui = load_api("pig_to_cat_edit"), load_ui("pig_to_cat_edit")
    eager = client.run(prompt, extra_pnginfo={"workflow": ui})
    assert eager.status == "success", eager.error()
    (eager_path, _), = saved_videos(host, eager, prompt)
    for node in nodes_of(prompt, "StreamDiTModelLoader"):
        prompt[node]["inputs"]["compile"] = True
    try:
        run = client.run(prompt, timeout=600, extra_pnginfo={"workflow": ui})  # compiling takes a minute on 2 cores
        assert run.status == "success", run.error()
    finally:
        for node in nodes_of(prompt, "StreamDiTModelLoader"):  # later tests share the cached model: back to eager
            prompt[node]["inputs"]["compile"] = False
        client.run(prompt, extra_pnginfo={"workflow": ui})
    log = host.log_tail(200_000)
    assert "network torch.compiled" in log and "torch.compile failed" not in log
    (path, _), = saved_videos(host, run, prompt)
    compiled, _ = read_video(path)
    reference, _ = read_video(eager_path)
    assert compiled.shape == reference.shape
    # fused kernels may round differently; after the codec and H.264 a level of 255 or two at most
    assert float((compiled - reference).abs().mean()) < 2 / 255


def test_video_edit_reads_a_growing_folder_run_by_run(host, client):
    """A live source in ComfyUI: numbered frames written into a folder of the input directory between two queued
    runs of 1 s each; the second run continues the same edit with the new frames."""
    from streamdit.io.png import write_png

    folder = host.comfy_dir / "input" / "live_frames"
    folder.mkdir(parents=True, exist_ok=True)
    source, _ = read_video(ROOT / "workflows" / "media" / "pig_walking_right_on_grass.mp4")
    prompt = load_api("pig_to_cat_edit")
    (edit,) = nodes_of(prompt, "StreamDiTVideoEdit")
    prompt[edit]["inputs"].update(source_video="(the folder below)", folder="live_frames", seconds=1.0, fps=16.0)
    starts = []
    for part in range(2):
        for i in range(*((0, 40), (40, 64))[part]):  # a run reads ahead by the edit's latency (14 frames here)
            write_png(folder / f"frame_{i}.png", source[i])
        run = client.run(prompt)
        assert run.status == "success", run.error()
        (path, video), = saved_videos(host, run, prompt)
        frames, fps = read_video(path)
        assert frames.shape == (16, 64, 64, 3) and fps == 16.0
        (info,) = run.outputs[nodes_of(prompt, "StreamDiTLivePreview")[0]]["streamdit"]
        starts.append((info["start_frame"], info["new_stream"]))
    assert starts == [(0, True), (16, False)]
