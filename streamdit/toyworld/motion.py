"""Per-clip random variations and the frame-by-frame motion of the sprite (shared by clips and streams).

Motion is a tiny state machine advanced one frame at a time, vectorised over clips, with every
quantity kept bounded (x modulo the width, phases modulo their periods) so a stream runs forever.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .sprites import FOOT_V
from .world import ACTIONS

LEFT, RIGHT, JUMP, STILL = 0, 1, 2, -1  # action codes; STILL: no animal (nothing moves)


def action_code(action: str | None) -> int:
    return STILL if action is None else ACTIONS.index(action)


@dataclass
class ClipParams:
    """Random variations of B clips (arrays [B]); lengths in pixels, periods in frames."""

    height: int
    width: int
    x0: np.ndarray
    feet_y: np.ndarray
    px: np.ndarray  # sprite size: pixels per sprite unit
    speed: np.ndarray
    jump_h: np.ndarray
    period: np.ndarray  # int: frames per hop
    phase: np.ndarray  # int: hop clock at frame 0
    facing0: np.ndarray  # +1 right, -1 left (kept by a jumping sprite)
    gait0: np.ndarray
    texture: np.ndarray  # [B, 5] fur pattern: amplitude, u/v frequency, u/v phase
    body_jitter: np.ndarray  # [B, 4, 3] per animal, added to the nominal colour (0-1 units)
    bg_jitter: np.ndarray  # [B, 4, 3] per background

    def take(self, i: int) -> ClipParams:
        return ClipParams(self.height, self.width, *(getattr(self, f)[i:i + 1] for f in _ARRAYS))


_ARRAYS = ("x0", "feet_y", "px", "speed", "jump_h", "period", "phase", "facing0", "gait0", "texture",
           "body_jitter", "bg_jitter")


def sample_params(seeds: list[int], height: int, width: int) -> ClipParams:
    """Each clip's variations depend on its seed (and the frame size) only."""
    k = min(height, width) / 64
    rows = []
    for seed in seeds:
        if int(seed) < 0:
            raise ValueError(f"seeds must be >= 0, got {seed}")
        rng = np.random.default_rng([int(seed), 1])
        r = rng.random(14)
        period = 8 + int(r[5] * 9)
        rows.append(dict(
            x0=r[0] * width, feet_y=(0.72 + 0.18 * r[1]) * height, px=(15 + 6 * r[2]) * k,
            speed=(0.5 + 0.75 * r[3]) * k, jump_h=(5 + 6 * r[4]) * k, period=period, phase=int(r[6] * period),
            facing0=1.0 if r[7] < 0.5 else -1.0, gait0=2 * math.pi * r[8],
            texture=np.array([0.015 + 0.025 * r[9], 8 + 10 * r[10], 8 + 10 * r[11], 6.3 * r[12], 6.3 * r[13]]),
            body_jitter=rng.normal(0, 5 / 255, (4, 3)), bg_jitter=rng.normal(0, 4 / 255, (4, 3))))
    cols = {f: np.stack([np.asarray(r[f]) for r in rows]) for f in _ARRAYS}
    return ClipParams(height, width, **cols)


@dataclass
class MotionState:
    """Where B sprites are at the current frame."""

    x: np.ndarray
    facing: np.ndarray
    gait: np.ndarray
    hop: np.ndarray  # int hop clock; 0 = on the ground
    t: int  # frame index


def start(p: ClipParams, action: np.ndarray) -> MotionState:
    """The state at frame 0 given each clip's first action code."""
    facing = np.where(action == LEFT, -1.0, np.where(action == RIGHT, 1.0, p.facing0))
    hop = np.where(action == JUMP, p.phase, 0)
    return MotionState(p.x0.astype(np.float64), facing, p.gait0.astype(np.float64), hop.astype(np.int64), 0)


def advance(s: MotionState, p: ClipParams, action: np.ndarray) -> MotionState:
    """The next frame's state given its action codes (in place; returns s)."""
    walking = (action == LEFT) | (action == RIGHT)
    direction = np.where(action == LEFT, -1.0, 1.0)
    s.x = np.where(walking, (s.x + direction * p.speed) % p.width, s.x)
    s.facing = np.where(walking, direction, s.facing)
    s.gait = np.where(walking, (s.gait + p.speed / (0.55 * p.px) * 2 * math.pi) % (2 * math.pi), s.gait)
    # a hop in progress finishes (lands) even if the animal starts walking; a jumping one keeps hopping
    airborne = (s.hop % p.period) != 0
    s.hop = np.where((action == JUMP) | airborne, (s.hop + 1) % p.period, 0)
    s.t += 1
    return s


def pose(s: MotionState, p: ClipParams) -> dict:
    """The sprite's anchor (cx, cy) in pixels, facing and leg phase at the current frame (arrays [B])."""
    lift = p.jump_h * np.abs(np.sin(math.pi * s.hop / p.period))
    bob = 0.025 * p.px * np.abs(np.sin(s.gait))
    cy = p.feet_y - FOOT_V * p.px - lift - bob
    return dict(cx=s.x.copy(), cy=cy, facing=s.facing.copy(), gait=s.gait.copy())
