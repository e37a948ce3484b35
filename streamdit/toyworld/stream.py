"""An endless toy-world video: frame after frame in constant memory, the scene changeable between frames."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch import Tensor

from .motion import action_code, sample_params
from .render import ClipTruth, draw, simulate, truth_of
from .textures import background_texture
from .world import ANIMALS, BACKGROUNDS, Scene, check_scene, frame_size


class ToyStream:
    """Deterministic given (scene changes, seed, size): ToyStream(s, seed).read(T) equals render_clip(s, T, seed).

    Only the sprite's motion state and up to four background textures are kept, so it can run for hours.
    """

    def __init__(self, scene: Scene | tuple, seed: int = 0, size: int | tuple[int, int] = 64):
        self.height, self.width = frame_size(size)
        self.seed = int(seed)
        self.scene = check_scene(scene)
        self._params = sample_params([self.seed], self.height, self.width)
        self._state = None  # motion state of the last frame read
        self._next = 0  # index of the next frame
        self._textures: dict[int, tuple[Tensor, int]] = {}

    @property
    def frame_index(self) -> int:
        """Index of the next frame to be read."""
        return self._next

    def set_scene(self, scene: Scene | tuple) -> None:
        """Frames read from now on show `scene`; the sprite keeps its position and motion."""
        self.scene = check_scene(scene)

    def _texture(self, _clip: int, bg: int) -> tuple[Tensor, int]:
        if bg not in self._textures:
            self._textures[bg] = background_texture(self.seed, BACKGROUNDS[bg], self.height, self.width)
        return self._textures[bg]

    def read(self, n: int, truth: bool = False) -> Tensor | tuple[Tensor, ClipTruth]:
        """The next n frames [n, H, W, 3] (and their ground truth if truth=True)."""
        if n < 1:
            raise ValueError(f"read needs n >= 1 frames, got {n}")
        scene = self.scene
        codes = np.full((1, n), action_code(scene.action))
        animal = -1 if scene.animal is None else ANIMALS.index(scene.animal)
        poses, self._state = simulate(self._params, codes, self._state)
        times = np.arange(self._next, self._next + n)[None]
        frames, alpha = draw(self._params, poses, np.full((1, n), animal), np.full((1, n), BACKGROUNDS.index(
            scene.background)), times, self._texture, want_alpha=truth)
        self._next += n
        if truth:
            return frames[0], truth_of([scene] * n, alpha[0])
        return frames[0]

    def __iter__(self) -> Iterator[Tensor]:
        return self

    def __next__(self) -> Tensor:
        """One frame [H, W, 3]."""
        return self.read(1)[0]

    def frames(self, n: int | None = None, chunk: int = 16) -> Iterator[Tensor]:
        """Yield n frames (forever if None) in chunks [<=chunk, H, W, 3]; set_scene applies from the next chunk."""
        left = n
        while left is None or left > 0:
            k = chunk if left is None else min(chunk, left)
            yield self.read(k)
            if left is not None:
                left -= k

