"""StreamDiT Video Edit: a source video (a file, or any IMAGE batch) edited toward the prompt in the moving
buffer, its frames flowing to Live Preview / Save Video like the sampler's."""
from __future__ import annotations

import os
from pathlib import Path

from ..streamdit.sampling.edit import DEFAULT_STRENGTH
from ..streamdit.sampling.sources import FrameSource
from . import host, registry
from .consumers import SINKS
from .prompts import text_identity, text_pipeline
from .run import FRAMES_TYPE, StreamRun
from .sampler import apply_live_changes

PACK = Path(__file__).resolve().parents[1]
EXAMPLE = "example: a pig walking right on grass"
EXAMPLE_PATH = PACK / "workflows" / "media" / "pig_walking_right_on_grass.mp4"
IMAGES = "(the images input)"
VIDEO = "(the video input)"
FOLDER = "(the folder below)"


def source_choices() -> list[str]:
    return [EXAMPLE, IMAGES, VIDEO, FOLDER] + host.input_videos()


def folder_path(folder: str) -> str:
    """A folder of numbered frames: absolute, or inside ComfyUI's input folder."""
    folder = (folder or "").strip()
    if not folder:
        raise ValueError(f"source_video is {FOLDER!r} but the folder input is empty: give a folder of numbered "
                         "png/jpg frames (inside ComfyUI's input folder, or an absolute path)")
    path = folder if os.path.isabs(folder) else os.path.join(host.input_directory() or "", folder)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"folder {folder!r} does not exist (looked at {path}); create it, or give an "
                                "absolute path")
    return path


def source_path(choice: str) -> str:
    if choice == EXAMPLE:
        return str(EXAMPLE_PATH)
    folder = host.input_directory()
    path = os.path.join(folder, choice) if folder else choice
    if not os.path.isfile(path):
        raise FileNotFoundError(f"source video {choice!r} is not in ComfyUI's input folder ({folder}); upload it "
                                f"there or connect an IMAGE batch and choose {IMAGES!r}")
    return path


def video_frame_source(video) -> FrameSource:
    """A core VIDEO as a source: a file streams chunk by chunk, other videos give their frames at their rate."""
    if video is None:
        raise ValueError(f"source_video is {VIDEO!r} but nothing is connected to video: connect a VIDEO (e.g. core "
                         "Load Video) or choose a source video")
    path, components = host.video_source(video)
    if path is not None:
        return FrameSource.from_path(path)
    return FrameSource.from_frames(components.images, float(components.frame_rate), name="video input")


class StreamDiTVideoEdit:
    DESCRIPTION = ("Edits a video toward the prompt while it plays (the StreamDiT pig-to-cat demo): source frames "
                   "enter the moving buffer already noised to the edit strength and are denoised under the prompt. "
                   "Same length and frame rate as the source; other sizes are resized to the model's, not cropped.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = (FRAMES_TYPE,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The edited frames, made while the connected Live Preview / Save Video nodes run.",)
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("STREAMDIT_MODEL", {"tooltip": "From StreamDiT Model Loader."}),
                "prompt": ("STREAMDIT_PROMPT", {"tooltip": "What the video should show, e.g. 'a cat walking right "
                           "on grass'. A schedule works too (a cat first, a dog later)."}),
                "source_video": (source_choices(), {"default": EXAMPLE, "video_upload": True, "tooltip": "A video "
                                 "from ComfyUI's input folder (upload one with the button), the bundled example, or "
                                 "the video or images input (e.g. from Load Video or a video loader)."}),
                "strength": ("FLOAT", {"default": DEFAULT_STRENGTH, "min": 0.05, "max": 1.0, "step": 0.025,
                             "tooltip": "How much may change: low keeps more of the source, 1 ignores it. Rounded "
                             "onto the model's noise grid (steps of 1/8 for the embedded model; halfway, the lower "
                             "level). 0.875 changes the animal (a pig into a cat) and keeps the background and the "
                             "motion with no negative prompt; naming the source in the prompt node's negative prompt "
                             "with cfg 2 there changes it more surely at 0.75, at two network passes per frame."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "control_after_generate": True,
                         "tooltip": "The noise added to the source; the same seed gives the same edit."}),
                "fps": ("FLOAT", {"default": 16.0, "min": 1.0, "max": 120.0, "step": 1.0, "tooltip":
                        "Frame rate of an images input (a video file keeps its own)."}),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "Source frames, when source_video is '(the images input)'."}),
                "video": ("VIDEO", {"tooltip": "A source video (core Load Video), when source_video is "
                                   "'(the video input)'; a file is read as it plays, chunk by chunk."}),
                # after the links: saved workflows list widget values by position
                "seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0, "step": 0.5, "tooltip":
                            "Seconds of the source edited per queued run; queue again to continue the same edit "
                            "where it stopped (auto-queue edits a long video run by run). 0 = the whole source "
                            "in one run."}),
                "folder": ("STRING", {"default": "", "tooltip": "With source_video '(the folder below)': a folder "
                           "of numbered png/jpg frames (in ComfyUI's input folder, or absolute), read in numeric "
                           "order while it grows (a live source: frames written there by a camera or another "
                           "program); the edit ends 10 s after the last frame. fps sets its frame rate."}),
                "settings": ("STREAMDIT_SETTINGS", {"tooltip": "Optional: size and partition (K must be 0); the "
                             "model's defaults otherwise."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "graph": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # every queue is a new edit

    def edit(self, model, prompt, source_video, strength, seed, fps, images=None, settings=None, video=None,
             seconds=0.0, folder="", unique_id=None, graph=None, extra_pnginfo=None):
        pipe = text_pipeline(model, prompt)
        key = registry.stream_key(f"edit-{unique_id}", unique_id)
        fingerprint = (model.identity, "edit", source_video, source_identity(source_video, images, video, folder),
                       strength,
                       seed, text_identity(prompt), None if settings is None else settings.fingerprint())
        entry = registry.get(key)
        if float(seconds) > 0 and entry is not None and entry.fingerprint == fingerprint and not entry.stream.ended:
            apply_live_changes(entry, prompt)  # a later run of the same edit: prompt edits apply from here on
            entry.stream.set_runtime(model.pipeline.attention, model.pipeline.compile)
            entry.cleanup()
            new, stream = False, entry.stream
        else:
            stream = self._open(pipe, prompt, source_video, strength, seed, fps, images, settings, video, folder)
            entry = registry.Entry(key, stream, fingerprint, prompt.schedule)
            registry.put(entry)
            new = True
            host.log.info("streamdit: editing %s at strength %g (asked %g), latency %d frames", stream.source.name,
                          stream.strength, strength, stream.latency_frames)
        entry.models = model.patchers
        entry.runs += 1
        entry.touch()
        source = stream.source
        if float(seconds) > 0:  # the unit of a run: frames of the source (at the source's frame rate)
            frames = max(1, round(float(seconds) * source.fps))
        else:
            frames = source.length or 10**9  # an unknown length ends with the source
        run = StreamRun(entry, frames, unique_id, f"edit-{unique_id}", graph, extra_pnginfo, new, SINKS)
        run.audio_source = source.path  # Save Video keeps the source's audio (files only)
        return (run,)

    @staticmethod
    def _open(pipe, prompt, source_video, strength, seed, fps, images, settings, video, folder):
        if source_video == IMAGES:
            if images is None:
                raise ValueError(f"source_video is {IMAGES!r} but nothing is connected to images: connect an IMAGE "
                                 "batch (e.g. from Load Video) or choose a source video")
            source = FrameSource.from_frames(images, float(fps), name="images input")
        elif source_video == VIDEO:
            source = video_frame_source(video)
        elif source_video == FOLDER:
            source = FrameSource.from_folder(folder_path(folder), float(fps))
        else:
            source = FrameSource.from_path(source_path(source_video))
        kw = {}
        if settings is not None:
            kw = {k: v for k, v in settings.stream_kwargs().items() if k not in ("seed", "fps", "cold_start")}
        return pipe.edit(source, prompt.schedule, strength=float(strength), seed=int(seed), cfg_scale=prompt.cfg,
                         negative_prompt=prompt.negative_prompt, transition_seconds=prompt.transition_seconds, **kw)


def source_identity(source_video: str, images, video, folder: str = ""):
    """What makes two queued runs edit the same source: the file (and its modification time), or the connected
    frames (shape and a checksum) or VIDEO (its file, or the object)."""
    if source_video == IMAGES:
        return None if images is None else (tuple(images.shape), float(images.double().sum()))
    if source_video == FOLDER:
        return ("folder", folder)  # a growing folder: later runs continue with its new frames
    if source_video == VIDEO:
        path = None if video is None else host.video_source_path(video)
        return host.file_identity(path) if path else id(video)
    path = str(EXAMPLE_PATH) if source_video == EXAMPLE else os.path.join(host.input_directory() or "", source_video)
    return host.file_identity(path)
