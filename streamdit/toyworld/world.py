"""The toy world's vocabulary of things: animals, actions, backgrounds, their colours, scenes and seeds."""
from __future__ import annotations

import random
from typing import NamedTuple

import numpy as np
import torch

FPS = 16.0
DEFAULT_SIZE = 64

ANIMALS = ("pig", "cat", "dog", "duck")
ACTIONS = ("walking left", "walking right", "jumping")
BACKGROUNDS = ("grass", "snow", "sea", "night")
MOTIONS = ("left", "right", "jump")  # what the judge reports; MOTION_OF_ACTION maps actions onto them
MOTION_OF_ACTION = {"walking left": "left", "walking right": "right", "jumping": "jump"}

# Nominal colours (RGB 0-255). Sprites and backgrounds are mostly these; the judge uses nearest colour.
ANIMAL_COLORS = {"pig": (240, 150, 180), "cat": (240, 140, 40), "dog": (140, 90, 50), "duck": (250, 215, 40)}
BACKGROUND_COLORS = {"grass": (70, 160, 70), "snow": (235, 240, 245), "sea": (60, 110, 200), "night": (20, 25, 60)}

# Seed convention: training draws clip seeds from TRAIN_SEED_RANGE; evaluation uses held-out seeds
# EVAL_SEED_OFFSET + i, which no training clip ever sees.
TRAIN_SEED_RANGE = range(0, 10**9)
EVAL_SEED_OFFSET = 10**9


def eval_seed(i: int) -> int:
    """The i-th held-out evaluation seed."""
    return EVAL_SEED_OFFSET + int(i)


def is_eval_seed(seed: int) -> bool:
    return int(seed) >= EVAL_SEED_OFFSET


class Scene(NamedTuple):
    """What a frame shows: an animal (or None: background only) doing an action on a background."""

    animal: str | None
    action: str | None
    background: str


def check_scene(scene: Scene | tuple) -> Scene:
    """Validate a scene (a plain (animal, action, background) tuple is accepted)."""
    animal, action, background = scene
    if animal is not None and animal not in ANIMALS:
        raise ValueError(f"unknown animal {animal!r}; expected one of {ANIMALS} or None")
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; expected one of {BACKGROUNDS}")
    if animal is None:
        if action is not None and action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    elif action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    return Scene(animal, action, background)


def all_scenes(include_empty: bool = False) -> list[Scene]:
    """Every animal x action x background combination (48), optionally plus the 4 empty backgrounds."""
    out = [Scene(a, act, b) for a in ANIMALS for act in ACTIONS for b in BACKGROUNDS]
    if include_empty:
        out += [Scene(None, None, b) for b in BACKGROUNDS]
    return out


Rng = random.Random | np.random.Generator | torch.Generator


def randint(rng: Rng, n: int) -> int:
    """A uniform integer in [0, n) from any of the explicit generators the toy world accepts."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(n))
    if isinstance(rng, torch.Generator):
        return int(torch.randint(n, (1,), generator=rng))
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    raise TypeError(f"expected random.Random, numpy Generator or torch.Generator, got {type(rng).__name__}")


def choice(rng: Rng, seq):
    return seq[randint(rng, len(seq))]


def random_scene(rng: Rng, empty_prob: float = 0.0) -> Scene:
    """A uniformly random scene; with probability empty_prob a background without an animal."""
    if empty_prob > 0 and randint(rng, 10**6) < empty_prob * 10**6:
        return Scene(None, None, choice(rng, BACKGROUNDS))
    return Scene(choice(rng, ANIMALS), choice(rng, ACTIONS), choice(rng, BACKGROUNDS))


def random_switch(scene: Scene, rng: Rng) -> Scene:
    """A prompt change: the animal, the background or both change (the action is kept)."""
    scene = check_scene(scene)
    kind = randint(rng, 3)
    animal, background = scene.animal, scene.background
    if kind in (0, 2) and animal is not None:
        animal = choice(rng, [a for a in ANIMALS if a != animal])
    if kind in (1, 2) or scene.animal is None:
        background = choice(rng, [b for b in BACKGROUNDS if b != background])
    return Scene(animal, scene.action, background)


def frame_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) of a frame size given as an int (square) or a pair; both must be >= 32."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 32 or w < 32:
        raise ValueError(f"frame size must be at least 32x32, got {h}x{w}")
    return h, w
