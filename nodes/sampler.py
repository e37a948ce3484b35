"""StreamDiT Stream Sampler: prepares the next run of a live stream (new, or continued from the registry);
the frames are made when a consumer pulls the StreamRun it returns (nodes/run.py)."""
from __future__ import annotations

from . import host, registry
from .consumers import SINKS
from .prompts import text_identity, text_pipeline
from .run import FRAMES_TYPE, StreamRun
from .settings import check_size_for_model


class StreamDiTSampler:
    DESCRIPTION = ("Generates the next few seconds of a live video stream. Queue again to continue the same "
                   "stream seamlessly (with auto-queue it runs endlessly); edit the prompt schedule between runs to "
                   "change the video live. Connect its frames to Live Preview and/or Save Video: they receive the "
                   "frames while they are being made.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = (FRAMES_TYPE,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("This run's frames, made while the connected Live Preview / Save Video nodes run.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("STREAMDIT_MODEL", {"tooltip": "From StreamDiT Model Loader."}),
                "settings": ("STREAMDIT_SETTINGS", {"tooltip": "From StreamDiT Buffer Settings."}),
                "prompt": ("STREAMDIT_PROMPT", {"tooltip": "From StreamDiT Prompt Schedule."}),
                "seconds": ("FLOAT", {"default": 5.0, "min": 0.0625, "max": 3600.0, "step": 0.5, "tooltip":
                            "Seconds of video made per queued run. Short runs with auto-queue give a live, "
                            "steerable stream; each run continues where the last one stopped."}),
                "stream_id": ("STRING", {"default": "default", "tooltip": "Name of the stream to continue. Two "
                              "samplers, or two ids, keep separate streams."}),
                "reset": ("BOOLEAN", {"default": False, "label_on": "start over", "label_off": "continue",
                          "tooltip": "Start the stream over on the next run (and every run while it is on)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "graph": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # every queue is a new run of the stream

    def sample(self, model, settings, prompt, seconds, stream_id, reset, unique_id=None, graph=None,
               extra_pnginfo=None):
        pipe = text_pipeline(model, prompt)
        frames = max(1, round(float(seconds) * settings.fps))
        key = registry.stream_key(stream_id, unique_id)
        fingerprint = (model.identity, settings.fingerprint(), text_identity(prompt))
        entry = registry.get(key)
        new = bool(reset) or entry is None or entry.fingerprint != fingerprint
        if new:
            bundle = model.pipeline.bundle
            check_size_for_model(settings, bundle.codec.spatial_factor, tuple(bundle.config.patch_size))
            kwargs = settings.stream_kwargs()
            if pipe.family.causal:  # the family's own sampler: only the size, frame rate and seed apply
                kwargs = {k: kwargs[k] for k in ("seed", "width", "height", "fps")}
                host.log.info("streamdit: %s", pipe.family.describe())
            stream = pipe.stream(prompt.schedule, cfg_scale=prompt.cfg, negative_prompt=prompt.negative_prompt,
                                 transition_seconds=prompt.transition_seconds, **kwargs)
            entry = registry.Entry(key, stream, fingerprint, prompt.schedule)
            registry.put(entry)
        else:
            apply_live_changes(entry, prompt)
            entry.stream.set_runtime(model.pipeline.attention, model.pipeline.compile)
            entry.cleanup()  # spools of earlier runs
        entry.models = model.patchers
        entry.runs += 1
        entry.touch()
        return (StreamRun(entry, frames, unique_id, stream_id.strip() or "default", graph, extra_pnginfo, new, SINKS),)


def apply_live_changes(entry: registry.Entry, prompt) -> None:
    """Prompt edits between runs change the running stream instead of starting a new one."""
    stream = entry.stream
    if prompt.schedule != entry.schedule:
        stream.set_schedule(prompt.schedule)
        entry.schedule = prompt.schedule
    stream.set_guidance(prompt.cfg, prompt.negative_prompt)
    stream.set_transition(prompt.transition_seconds)
