"""What the toy recipe trains on: clip specs (random, appearing), their rendered frames, captions, and single
frames for the autoencoder."""
from __future__ import annotations

import random

import torch

from ...toyworld.captions import random_caption
from ...toyworld.render import render_batch
from ...toyworld.world import TRAIN_SEED_RANGE, random_scene, random_switch
from ..toydata import ClipSpec
from .recipe import ToyRecipe


def random_specs(count: int, recipe: ToyRecipe, g: torch.Generator) -> list[ClipSpec]:
    """Random scenes, a share of them switching scene mid-clip (as a prompt change does)."""
    specs = []
    for _ in range(count):
        scene = random_scene(g, empty_prob=recipe.empty_share)
        after, switch = scene, 10**9
        if float(torch.rand(1, generator=g)) < recipe.transition_share:
            after = random_switch(scene, g)
            switch = int(torch.randint(1, recipe.clip_frames, (1,), generator=g))
        seed = int(torch.randint(TRAIN_SEED_RANGE.stop, (1,), generator=g))
        specs.append(ClipSpec(tuple(scene), tuple(after), switch, seed))
    return specs


def appear_specs(count: int, recipe: ToyRecipe, g: torch.Generator) -> list[ClipSpec]:
    """Clips that show an empty background and then an animal from a random frame on (same background).

    A crop is captioned with its newest frame's scene, so these are the only samples where the clean end
    of the buffer lacks the prompted animal and the model is asked to bring one in: the recovery a long
    stream needs once its sprite has faded."""
    specs = []
    for _ in range(count):
        scene = random_scene(g)
        switch = int(torch.randint(1, recipe.clip_frames, (1,), generator=g))
        seed = int(torch.randint(TRAIN_SEED_RANGE.stop, (1,), generator=g))
        specs.append(ClipSpec((None, None, scene.background), tuple(scene), switch, seed))
    return specs


def render_specs(specs: list[ClipSpec], frames: int, size: int, masks: bool = False):
    """The clips' frames [b, T, H, W, 3], with masks: (frames, sprite masks [b, T, H, W])."""
    out = render_batch([s.before for s in specs], frames, [s.seed for s in specs], size,
                       switch_to=[s.after if s.switch < frames else None for s in specs],
                       switch_at=[s.switch if s.switch < frames else None for s in specs], truth=masks)
    return (out.frames, torch.stack([t.masks for t in out.truth])) if masks else out.frames


def caption(scene, rng: random.Random) -> str:
    return random_caption(scene, rng)


def frame_source(recipe: ToyRecipe):
    """(count, generator) -> single frames from random clips and their sprite masks, for the autoencoder."""
    def frames(count: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        scenes = [random_scene(g, empty_prob=recipe.empty_share) for _ in range(count)]
        seeds = [int(torch.randint(TRAIN_SEED_RANGE.stop, (1,), generator=g)) for _ in range(count)]
        out = render_batch(scenes, 12, seeds, recipe.size, truth=True)
        pick = torch.randint(12, (count,), generator=g)
        masks = torch.stack([t.masks[p] for t, p in zip(out.truth, pick.tolist())])
        return out.frames[torch.arange(count), pick], masks
    return frames
