"""Core's VIDEO type on the newest host: our saved run feeds core Save Video, Frames to Image's fps feeds Create
Video, and core Load Video feeds Video Edit (the March-2024 host has no VIDEO type)."""
from __future__ import annotations

import json
import shutil

import pytest
from graphs import ROOT, stream_graph

from streamdit.io.video import probe_video, read_metadata, read_video

EXAMPLE = ROOT / "workflows" / "media" / "pig_walking_right_on_grass.mp4"
pytestmark = pytest.mark.newest_host("core's VIDEO type (Load Video, Save Video, Create Video) exists from 2025")


def output_file(host, item: dict):
    return host.output_dir / item["subfolder"] / item["filename"]


def test_our_video_output_feeds_core_save_video(host, client):
    graph = stream_graph(seconds=1.0, stream_id="video-out", save="mp4", preview=False)
    graph["9"] = {"class_type": "SaveVideo", "inputs": {"video": ["6", 0], "filename_prefix": "tests/core-save",
                                                        "format": "auto", "codec": "auto"}}
    run = client.run(graph, extra_pnginfo={"workflow": {"nodes": [], "note": "video interop"}})
    assert run.status == "success", run.error()
    (ours,) = run.outputs["6"]["videos"]
    (core,) = run.outputs["9"]["images"]  # core's PreviewVideo result
    mine, fps = read_video(output_file(host, ours))
    theirs, core_fps = read_video(output_file(host, core))
    assert mine.shape == (16, 64, 64, 3) and fps == core_fps == 16.0
    assert (mine == theirs).all(), "core's Save Video got other frames than the ones we saved"
    tags = read_metadata(output_file(host, core))  # core writes the graph it ran in
    assert json.loads(tags["prompt"])["9"]["class_type"] == "SaveVideo"


def test_frames_to_image_fps_feeds_core_create_video(host, client):
    graph = stream_graph(seconds=0.5, stream_id="fps-out", preview=False, fps=12.0)
    graph["7"] = {"class_type": "StreamDiTFramesToImage", "inputs": {"frames": ["4", 0]}}
    graph["8"] = {"class_type": "CreateVideo", "inputs": {"images": ["7", 0], "fps": ["7", 1]}}
    graph["9"] = {"class_type": "SaveVideo", "inputs": {"video": ["8", 0], "filename_prefix": "tests/create",
                                                        "format": "mp4", "codec": "h264"}}
    run = client.run(graph)
    assert run.status == "success", run.error()
    (core,) = run.outputs["9"]["images"]
    info = probe_video(output_file(host, core))
    assert info["fps"] == pytest.approx(12.0) and info["frames"] == 6 and (info["width"], info["height"]) == (64, 64)


def test_core_load_video_feeds_video_edit(host, client):
    inputs = host.comfy_dir / "input"
    inputs.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, inputs / "pig-for-edit.mp4")
    graph = stream_graph(schedule="a cat walking right on grass", preview=False, cfg=2.0, negative="a pig")
    for node in ("2", "4"):
        del graph[node]
    graph["10"] = {"class_type": "LoadVideo", "inputs": {"file": "pig-for-edit.mp4"}}
    graph["11"] = {"class_type": "StreamDiTVideoEdit",
                   "inputs": {"model": ["1", 0], "prompt": ["3", 0], "source_video": "(the video input)",
                              "strength": 0.75, "seed": 0, "fps": 16.0, "video": ["10", 0]}}
    graph["12"] = {"class_type": "StreamDiTSaveVideo", "inputs": {"frames": ["11", 0], "filename_prefix": "tests/edit",
                                                                  "format": "mp4", "crf": 0}}
    run = client.run(graph)
    assert run.status == "success", run.error()
    source, src_fps = read_video(EXAMPLE)
    (video,) = run.outputs["12"]["videos"]
    frames, fps = read_video(output_file(host, video))
    assert frames.shape == source.shape and fps == src_fps  # every source frame edited, at the source's rate
    assert (frames - source).abs().mean() > 0.01  # edited, not copied
