"""A quick judged sample of a model in training (OUT/<stage>/probe.jsonl): does it follow the prompt?"""
from __future__ import annotations

import time

import torch

from ...codecs.autoencoder import AutoencoderCodec
from .export import defaults_for, on_cpu
from .recipe import ToyRecipe


@torch.no_grad()
def probe_adherence(module, recipe: ToyRecipe, codec: AutoencoderCodec, micro_steps: int, cfg_scale: float,
                    clips: int = 4, frames: int = 32) -> dict:
    """A quick judged sample during training: held-out seeds, canonical prompts, animal/background/motion hits."""
    from ...io.checkpoint import Bundle
    from ...pipeline import Pipeline
    from ...toyworld import MOTION_OF_ACTION, all_scenes, canonical_caption, eval_seed, judge_clip

    module = on_cpu(module)  # a copy when the stage trains on a GPU: the probe's pipeline and codec are on the CPU
    was_training = module.training
    module.eval()
    bundle = Bundle(module.dit, module.dit.config, module.text_encoder, codec,
                    defaults_for(recipe, codec, micro_steps), {"probe": True})
    pipe = Pipeline(bundle, torch.device("cpu"), torch.float32)
    scenes = all_scenes()
    hits = {"animal": 0, "background": 0, "motion": 0}
    start = time.perf_counter()
    for i in range(clips):
        scene = scenes[(7 * i + 3) % len(scenes)]
        stream = pipe.stream(canonical_caption(scene), seed=eval_seed(900_000 + i), micro_steps=micro_steps,
                             cfg_scale=cfg_scale)
        verdict = judge_clip(torch.cat(list(stream.frames(frames))))
        hits["animal"] += verdict.animal == scene[0]
        hits["background"] += verdict.background == scene[2]
        hits["motion"] += verdict.motion == MOTION_OF_ACTION[scene[1]]
    module.train(was_training)
    return {**{k: v / clips for k, v in hits.items()}, "seconds": round(time.perf_counter() - start, 1)}
