"""StreamDiT Frames to Image: a run's frames as an ordinary IMAGE batch, for any other node."""
from __future__ import annotations

from .run import FRAMES_TYPE, StreamRun


class StreamDiTFramesToImage:
    DESCRIPTION = ("Turns a run of the stream into an ordinary IMAGE batch (all frames of this run in memory), so "
                   "any ComfyUI node can use them: Save Image, upscalers, other video nodes. Meant for short runs; "
                   "use Save Video for long ones.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    OUTPUT_TOOLTIPS = ("The frames of this run, [frames, height, width, 3] in 0..1 (8-bit precision).",
                       "The stream's frame rate, e.g. for Create Video or a video combine node.")
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": (FRAMES_TYPE, {"tooltip": "From a StreamDiT Stream Sampler."})}}

    def convert(self, frames: StreamRun):
        return (frames.read_frames(), float(frames.fps))
