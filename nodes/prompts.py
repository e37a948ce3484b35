"""StreamDiT Prompt Schedule: "time: prompt" lines, transitions, negative prompt, CFG, optional CLIP."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..streamdit.prompts import parse_schedule

EXAMPLE = "0s: a pig walking right on grass\n4s: a cat walking right on grass"


@dataclass(frozen=True)
class PromptSpec:
    """What flows on a STREAMDIT_PROMPT link. Edits take effect live on a running stream."""

    schedule: str
    transition_seconds: float
    negative_prompt: str
    cfg: float
    clip: Any = None  # a ComfyUI CLIP, for models without their own text encoder (the Wan path)


class TextSourceError(ValueError):
    pass


def check_text_source(model, spec: PromptSpec) -> None:
    """Where the model's text embeddings come from; the hook for ComfyUI-encoded conditioning.

    Models with their own encoder (the toy model) read the prompt text themselves, so a CLIP is a mistake.
    Models without one (Wan 2.1) will take it from the CLIP input in a later release.
    """
    if spec.clip is not None and model.has_own_text_encoder:
        raise TextSourceError(f"this model ({model.name}) has its own text encoder; disconnect the CLIP input of "
                              "the StreamDiT Prompt Schedule node")
    if spec.clip is not None:
        raise NotImplementedError("conditioning from a ComfyUI CLIP comes with the Wan 2.1 models; this release "
                                  "streams with models that have their own text encoder")
    if not model.has_own_text_encoder:
        raise TextSourceError(f"this model ({model.name}) has no text encoder of its own; connect a CLIP to the "
                              "StreamDiT Prompt Schedule node")


class StreamDiTPromptSchedule:
    DESCRIPTION = ("What the stream shows, over time. One prompt per line as 'seconds: prompt' (seconds of the "
                   "stream's clock), or a single prompt. Edit it between queued runs to steer the running video "
                   "live: the new prompt blends in over the transition time.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = ("STREAMDIT_PROMPT",)
    RETURN_NAMES = ("prompt",)
    OUTPUT_TOOLTIPS = ("The prompt schedule for a StreamDiT Stream Sampler.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "schedule": ("STRING", {"default": EXAMPLE, "multiline": True, "tooltip":
                             "One line per prompt: '<seconds>s: <prompt>', e.g. '0s: a pig walking right on grass' "
                             "then '4s: a cat walking right on grass'. Lines starting with # are ignored."}),
                "transition_seconds": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 60.0, "step": 0.1, "tooltip":
                                       "How long a prompt change blends from the old prompt to the new one."}),
                "negative_prompt": ("STRING", {"default": "", "multiline": False, "tooltip":
                                    "What to steer away from (used only when cfg is above 1)."}),
                "cfg": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 20.0, "step": 0.1, "tooltip":
                        "Classifier-free guidance. 1 = off (fastest, one network pass per step); above 1 follows "
                        "the prompt more closely at twice the cost."}),
            },
            "optional": {
                "clip": ("CLIP", {"tooltip": "Only for models whose text encoder comes from ComfyUI (Wan 2.1, in a "
                                  "later release). Leave it unconnected for the embedded toy model."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, schedule):
        if schedule is None:
            return True
        try:
            parse_schedule(schedule)
        except ValueError as exc:
            return str(exc)
        return True

    def build(self, schedule, transition_seconds, negative_prompt, cfg, clip=None):
        parse_schedule(schedule)
        return (PromptSpec(schedule, float(transition_seconds), negative_prompt, float(cfg), clip),)
