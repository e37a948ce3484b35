"""StreamDiT Save Video: mp4 (h264) or webm (vp9) in ComfyUI's output folder, written while frames arrive.

One file per queued run, named like the core Save nodes (<prefix>_00001_.mp4); consecutive files of
one stream join seamlessly, since each run continues the last. The writer is streamdit.io.video's
VideoWriter: fragmented mp4 / clustered webm, so a cancelled run leaves a playable file. The API
prompt and the workflow are written as the "prompt" and "workflow" tags (JSON), as core's Save Video does,
so dropping the file onto ComfyUI restores the graph; "comment" holds the stream position ({"streamdit": ...}).
"""
from __future__ import annotations

import json
import os

from ..streamdit.io.video import VideoWriter
from . import host, registry
from .run import FRAMES_TYPE, StreamRun

FORMATS = {"mp4": ("mp4", "video/mp4"), "webm": ("webm", "video/webm")}


def clean_prompt(graph: dict | None) -> dict | None:
    """The API prompt as queued: the March-2024 host adds its own bookkeeping ('is_changed': [nan]) to it."""
    if not graph:
        return graph
    keep = ("class_type", "inputs", "_meta")
    return {nid: {k: v for k, v in node.items() if k in keep} for nid, node in graph.items()}


def video_metadata(run: StreamRun) -> dict[str, str]:
    """The tags of a saved run: "prompt" and "workflow" as core ComfyUI writes them (JSON each; dropping the file
    onto the frontend restores the graph), and our stream position in "comment"."""
    position = {"stream_id": run.stream_id, "run": run.run_index, "start_frame": run.start_frame}
    meta = {"prompt": clean_prompt(run.graph), "workflow": (run.extra_pnginfo or {}).get("workflow"),
            "comment": {"streamdit": position}}
    return {k: json.dumps(v, allow_nan=False) for k, v in meta.items() if v is not None}


class VideoSink:
    """Appends each chunk to one video file."""

    def __init__(self, run: StreamRun, prefix: str, fmt: str, crf: int):
        ext, self.mime = FORMATS[fmt]
        folder, stem, counter, self.subfolder = host.save_path(prefix, run.width, run.height)
        self.filename = f"{stem}_{counter:05}_.{ext}"
        # an edit's file keeps its source's audio, from where this run starts in the source
        self.writer = VideoWriter(os.path.join(folder, self.filename), run.fps, crf=crf or None,
                                  metadata=video_metadata(run), audio_from=run.audio_source,
                                  audio_start=run.start_frame / run.fps if run.audio_source else 0.0)

    def write(self, frames, index: int, run: StreamRun) -> None:
        self.writer.write(frames)

    def close(self, ok: bool, run: StreamRun) -> dict:
        self.writer.close(check=ok)
        return {"filename": self.filename, "subfolder": self.subfolder, "type": "output", "format": self.mime,
                "frame_rate": run.fps, "frames": self.writer.frames_written}


def _literal(inputs: dict, name: str, default):
    value = inputs.get(name, default)
    return None if isinstance(value, list) else value  # a link: known only when the node runs


def open_sink(run: StreamRun, node_id: str, inputs: dict) -> VideoSink | None:
    prefix, fmt, crf = (_literal(inputs, "filename_prefix", "StreamDiT/stream"), _literal(inputs, "format", "mp4"),
                        _literal(inputs, "crf", 0))
    if prefix is None or fmt not in FORMATS or crf is None:
        return None  # the node writes its file from the run's spool when it executes
    return VideoSink(run, str(prefix), fmt, int(crf))


class StreamDiTSaveVideo:
    DESCRIPTION = ("Saves each run of the stream as a video file in ComfyUI's output folder, writing frames as "
                   "they are made (long streams never pile up in memory; a cancelled run still leaves a playable "
                   "file). The workflow is embedded in the file's metadata: drop the file onto ComfyUI to get it "
                   "back. Where ComfyUI has the VIDEO type, the saved file is also its video output.")
    CATEGORY = "StreamDiT"
    # the VIDEO output exists only where the host has the type (a March-2024 host would reject the link)
    RETURN_TYPES = ("VIDEO",) if host.has_video_type() else ()
    RETURN_NAMES = ("video",) if host.has_video_type() else ()
    OUTPUT_TOOLTIPS = ("The saved file as a video, for core Save Video, Get Video Components and video nodes.",) \
        if host.has_video_type() else ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": (FRAMES_TYPE, {"tooltip": "From a StreamDiT Stream Sampler."}),
                "filename_prefix": ("STRING", {"default": "StreamDiT/stream", "tooltip": "File name start, "
                                    "optionally with sub-folders of the output folder; a counter is appended."}),
                "format": (list(FORMATS), {"default": "mp4", "tooltip": "mp4 (h264, plays everywhere) or webm "
                           "(vp9)."}),
                "crf": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip": "Quality: lower is better and larger. "
                        "0 = the format's default (19 for h264, 30 for vp9)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def save(self, frames: StreamRun, filename_prefix: str, format: str, crf: int, unique_id=None):
        frames.pull()
        result = frames.results.get(str(unique_id))
        if result is None:  # no sink was opened for this node during the run: write from the spool now
            sink = VideoSink(frames, filename_prefix, format, crf)
            try:
                sink.write(frames.read_frames(), frames.start_frame, frames)
            finally:
                result = sink.close(True, frames)
        info = {**frames.info(), "streams_alive": registry.alive()}
        out = {"ui": {"videos": [result], "streamdit": [info]}}
        if self.RETURN_TYPES:
            folder = host.output_directory()
            out["result"] = (host.video_from_file(os.path.join(folder, result["subfolder"], result["filename"])),)
        return out
