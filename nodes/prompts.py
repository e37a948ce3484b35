"""StreamDiT Prompt Schedule: "time: prompt" lines, transitions, negative prompt, CFG, optional CLIP."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from ..streamdit.network.text import ExternalTextEncoder
from ..streamdit.sampling.prompts import parse_schedule

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


def clip_embeddings(clip, prompt: str) -> torch.Tensor:
    """One prompt through a ComfyUI CLIP: the cond tensor [tokens, dim] of its CONDITIONING.

    With umT5 ComfyUI pads to 512 tokens and zeroes the padded rows, which is how Wan pads its own T5 output.
    """
    tokens = clip.tokenize(prompt)
    if hasattr(clip, "encode_from_tokens_scheduled"):  # current hosts: [[cond [1, L, D], {...}], ...]
        cond = clip.encode_from_tokens_scheduled(tokens)[0][0]
    else:  # older hosts
        cond = clip.encode_from_tokens(tokens)
        cond = cond[0] if isinstance(cond, tuple) else cond
    return cond[0].float().cpu()


_clip_encoders: OrderedDict[int, tuple[Any, tuple[int, int], ExternalTextEncoder]] = OrderedDict()


def clip_text_encoder(clip, text_len: int, text_dim: int) -> ExternalTextEncoder:
    """A text encoder over a ComfyUI CLIP, with its embeddings cached per prompt (also across streams)."""
    key = id(clip)
    hit = _clip_encoders.get(key)
    if hit is not None and hit[0] is clip and hit[1] == (text_len, text_dim):
        _clip_encoders.move_to_end(key)
        return hit[2]
    cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def embed(prompt: str) -> torch.Tensor:
        if prompt not in cache:
            cache[prompt] = clip_embeddings(clip, prompt)
            while len(cache) > 64:
                cache.popitem(last=False)
        cache.move_to_end(prompt)
        return cache[prompt]

    name = f"ComfyUI CLIP {type(getattr(clip, 'cond_stage_model', clip)).__name__}"
    encoder = ExternalTextEncoder(embed, text_dim, text_len, name)
    _clip_encoders[key] = (clip, (text_len, text_dim), encoder)
    while len(_clip_encoders) > 4:
        _clip_encoders.popitem(last=False)
    return encoder


def text_pipeline(model, spec: PromptSpec):
    """The pipeline to stream with: the model's own text encoder, or the CLIP connected to the prompt node.

    Models with their own encoder (the toy model) read the prompt text themselves, so a CLIP is a mistake;
    models without one (Wan 2.1) need a umT5 CLIP.
    """
    if spec.clip is not None and model.has_own_text_encoder:
        raise TextSourceError(f"this model ({model.name}) has its own text encoder; disconnect the CLIP input of "
                              "the StreamDiT Prompt Schedule node")
    if model.has_own_text_encoder:
        return model.pipeline
    if spec.clip is None:
        raise TextSourceError(f"this model ({model.name}) has no text encoder of its own; load a umT5 text encoder "
                              "with Load CLIP (type 'wan') and connect it to the StreamDiT Prompt Schedule node")
    return model.pipeline.with_text_encoder(clip_text_encoder(spec.clip, *model.text_dims))


def text_identity(spec: PromptSpec) -> int | None:
    """Which text encoder a stream was made with (a different CLIP starts a new stream)."""
    return None if spec.clip is None else id(spec.clip)


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
                "clip": ("CLIP", {"tooltip": "For models whose text encoder comes from ComfyUI: Wan 2.1 needs umT5 "
                                  "(Load CLIP, type 'wan', umt5_xxl_fp8_e4m3fn_scaled.safetensors). Leave it "
                                  "unconnected for the embedded toy model."}),
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
