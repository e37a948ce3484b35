"""StreamDiT Live Preview: frames reach the browser over the websocket while the run is still going.

Each chunk goes out as one JSON event, `streamdit.frames`:
    {"node": <preview node id>, "sampler": <sampler node id>, "prompt_id": ..., "stream_id": ...,
     "index": <stream index of the first frame>, "frames": [<base64 JPEG>, ...], "format": "jpeg",
     "fps": <video fps>, "gen_fps": <frames made per second so far>, "done": <frames of this run so far>,
     "total": <frames of this run>, "run": <run number>, "width", "height", "streams_alive"}
The pack's web/js/streamdit.js plays them at the stream's fps on the node's canvas.
"""
from __future__ import annotations

import base64
import io

import torch

from ..streamdit.io.video import to_uint8
from . import host, registry
from .run import FRAMES_TYPE, StreamRun

EVENT = "streamdit.frames"
JPEG_QUALITY = 85

try:
    from PIL import Image
except ImportError:  # ComfyUI always has Pillow; without it there are no live frames, nothing breaks
    Image = None


def encode_jpeg(frames: torch.Tensor, quality: int = JPEG_QUALITY) -> list[str]:
    if Image is None:
        return []
    out = []
    for frame in to_uint8(frames):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


class PreviewSink:
    """Sends each chunk to one Live Preview node in the browser."""

    def __init__(self, node_id: str):
        self.node_id = node_id
        self.sent = 0

    def write(self, frames: torch.Tensor, index: int, run: StreamRun) -> None:
        srv = host.server()
        if srv is None:
            return
        host.send_event(EVENT, {
            "node": self.node_id, "sampler": run.sampler_id, "prompt_id": getattr(srv, "last_prompt_id", None),
            "stream_id": run.stream_id, "run": run.run_index, "index": index, "frames": encode_jpeg(frames),
            "format": "jpeg", "fps": run.fps, "gen_fps": round(run.gen_fps, 2), "done": run.frames_done,
            "total": run.frames, "width": run.width, "height": run.height, "streams_alive": registry.alive()})
        self.sent += frames.shape[0]

    def close(self, ok: bool, run: StreamRun) -> dict:
        return {"sent": self.sent}


def open_sink(run: StreamRun, node_id: str, inputs: dict) -> PreviewSink:
    return PreviewSink(node_id)


class StreamDiTLivePreview:
    DESCRIPTION = ("Plays the stream in this node while it is being generated, at the video's frame rate, and "
                   "shows the stream's FPS (playback and generation) and how many streams are alive.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "preview"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": (FRAMES_TYPE, {"tooltip": "From a StreamDiT Stream Sampler."})},
                "hidden": {"unique_id": "UNIQUE_ID"}}

    def preview(self, frames: StreamRun, unique_id=None):
        frames.pull()  # generates the run if no other consumer has yet; our sink got every chunk
        return {"ui": {"streamdit": [frames.info()]}}
