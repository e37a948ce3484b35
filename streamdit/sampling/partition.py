"""The buffer partition (K, N, c, s), its noise bands, and the sigma schedule gamma(u).

Conventions (see STREAMDIT.md): progress time u in [0, 1] (0 clean, 1 noise), sigma = gamma(u),
x_sigma = (1 - sigma) x0 + sigma eps. Buffer index 0 is the oldest frame. Chunk k (1-based, k = 1 is
the oldest, next to leave) lives in the band u in [(k-1)/N, k/N]; at micro step j of a period it
sits at u = k/N - j/(s N).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class Schedule:
    """Monotone map gamma from progress time u to sigma: Wan's shift, gamma(u) = s u / (1 + (s-1) u).

    A distilled model's literal step list replaces the formula by a table: `table` holds sigma at
    u = m / M for m = 0..M (so sigma(0) = 0 and sigma(1) = table[M]), and `times` the timestep the network
    is given at each of those points (default 1000 sigma; CausVid's list feeds the listed t while its
    sampler uses the scheduler's nearest sigma). The partition's u grid must land on the table's points.
    """

    shift: float = 1.0
    table: tuple[float, ...] | None = None
    times: tuple[float, ...] | None = None

    def __post_init__(self):
        if not self.shift > 0:
            raise ValueError(f"schedule shift={self.shift} must be > 0 (1.0 = no shift, Wan uses 3 to 5)")
        if self.table is not None:
            table = tuple(float(x) for x in self.table)
            if len(table) < 2 or table[0] != 0.0 or any(b <= a for a, b in zip(table, table[1:])):
                raise ValueError(f"step table {table} must rise strictly from sigma 0 (clean) to the first "
                                 "step's sigma")
            object.__setattr__(self, "table", table)
        if self.times is not None:
            if self.table is None or len(self.times) != len(self.table):
                raise ValueError("times need a table of the same length")
            object.__setattr__(self, "times", tuple(float(x) for x in self.times))

    def _index(self, u: torch.Tensor) -> torch.Tensor:
        m = len(self.table) - 1
        idx = torch.round(u * m)
        if (u * m - idx).abs().max() > 1e-9:
            raise ValueError(f"progress times {sorted(set(u.tolist()))} fall between the {m} steps of the step list "
                             f"{self.table[::-1]}: the partition must have {m} steps per frame")
        return idx.long()

    def sigma(self, u: float) -> float:
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"progress time u={u} is outside [0, 1]")
        if self.table is not None:
            return self.table[int(self._index(torch.tensor([u], dtype=torch.float64))[0])]
        return self.shift * u / (1.0 + (self.shift - 1.0) * u)

    def sigmas(self, u: torch.Tensor) -> torch.Tensor:
        u = u.to(torch.float64)
        if self.table is not None:
            return torch.tensor(self.table, dtype=torch.float64)[self._index(u)]
        return self.shift * u / (1.0 + (self.shift - 1.0) * u)

    def timesteps(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's time input (float32) for sigmas from this schedule."""
        sigma = sigma.to(torch.float64)
        if self.times is None:
            return (sigma * 1000).to(torch.float32)
        table = torch.tensor(self.table, dtype=torch.float64)
        hit = sigma.reshape(-1, 1) == table.reshape(1, -1)
        if not bool(hit.any(1).all()):
            raise ValueError(f"sigmas {sigma.tolist()} are not points of the step table {self.table}")
        return torch.tensor(self.times, dtype=torch.float32)[hit.float().argmax(1)].reshape(sigma.shape)

    def to_dict(self) -> dict:
        return {"shift": self.shift, "table": None if self.table is None else list(self.table),
                "times": None if self.times is None else list(self.times)}

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        return cls(float(d["shift"]), d.get("table") and tuple(d["table"]), d.get("times") and tuple(d["times"]))


@dataclass(frozen=True)
class Partition:
    """K reference frames, N chunks of c frames, s micro steps per buffer move.

    The buffer holds K + N*c latent frames; each frame gets T = s*N denoising steps in its life;
    one network call advances every chunk by 1/(s N) in u; after s calls the oldest chunk is clean.
    """

    chunks: int  # N
    chunk_frames: int  # c
    micro_steps: int = 1  # s
    ref_frames: int = 0  # K

    def __post_init__(self):
        for name in ("chunks", "chunk_frames", "micro_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if not isinstance(self.ref_frames, int) or self.ref_frames < 0:
            raise ValueError(f"ref_frames={self.ref_frames!r} must be an integer >= 0")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_buffer(cls, buffer_frames: int, chunk_frames: int, *, micro_steps: int | None = None,
                    steps_per_frame: int | None = None, ref_frames: int = 0) -> Partition:
        """Build from the denoised buffer length B' = N*c (reference frames excluded).

        Give either micro_steps s or steps_per_frame T (then s = T/N). Errors name the valid choices.
        """
        if not isinstance(buffer_frames, int) or buffer_frames < 1:
            raise ValueError(f"buffer_frames={buffer_frames!r} must be a positive integer")
        if not isinstance(chunk_frames, int) or chunk_frames < 1 or buffer_frames % chunk_frames:
            raise ValueError(
                f"chunk_frames={chunk_frames} does not divide buffer_frames={buffer_frames}; "
                f"choose one of {', '.join(map(str, _divisors(buffer_frames)))}")
        chunks = buffer_frames // chunk_frames
        if (micro_steps is None) == (steps_per_frame is None):
            raise ValueError("give exactly one of micro_steps (s) or steps_per_frame (T = s*N)")
        if steps_per_frame is not None:
            if not isinstance(steps_per_frame, int) or steps_per_frame < 1 or steps_per_frame % chunks:
                choices = [chunks * m for m in range(1, 9)]
                raise ValueError(
                    f"steps_per_frame={steps_per_frame} is not a multiple of the number of chunks "
                    f"N={chunks} (buffer_frames={buffer_frames} / chunk_frames={chunk_frames}); "
                    f"choose one of {', '.join(map(str, choices))}, ...")
            micro_steps = steps_per_frame // chunks
        return cls(chunks=chunks, chunk_frames=chunk_frames, micro_steps=micro_steps, ref_frames=ref_frames)

    @classmethod
    def uniform(cls, frames: int, steps: int, ref_frames: int = 0) -> Partition:
        """Ordinary flow matching: one chunk holding every frame, all steps in place (N = 1, c = B)."""
        return cls(chunks=1, chunk_frames=frames, micro_steps=steps, ref_frames=ref_frames)

    @classmethod
    def diagonal(cls, frames: int, ref_frames: int = 0) -> Partition:
        """FIFO-style: one frame per chunk, one step per move (c = 1, s = 1)."""
        return cls(chunks=frames, chunk_frames=1, micro_steps=1, ref_frames=ref_frames)

    # -- sizes --------------------------------------------------------------------------------
    @property
    def stream_frames(self) -> int:
        """Frames being denoised: N*c."""
        return self.chunks * self.chunk_frames

    @property
    def buffer_frames(self) -> int:
        """All frames in the buffer: K + N*c."""
        return self.ref_frames + self.stream_frames

    @property
    def steps_per_frame(self) -> int:
        return self.micro_steps * self.chunks

    @property
    def is_uniform(self) -> bool:
        return self.chunks == 1

    # -- times --------------------------------------------------------------------------------
    def chunk_u(self, chunk: int, micro: int) -> float:
        """u of chunk k (1-based, 1 = oldest) at micro step j: k/N - j/(s N), from integers."""
        if not 1 <= chunk <= self.chunks:
            raise ValueError(f"chunk={chunk} outside 1..{self.chunks}")
        if not 0 <= micro <= self.micro_steps:
            raise ValueError(f"micro={micro} outside 0..{self.micro_steps}")
        return (chunk * self.micro_steps - micro) / (self.micro_steps * self.chunks)

    def frame_u(self, micro: int) -> torch.Tensor:
        """u per buffer frame (float64, [K + N c]) at micro step j; reference frames are at 0."""
        s, n, c = self.micro_steps, self.chunks, self.chunk_frames
        k = torch.arange(1, n + 1, dtype=torch.float64).repeat_interleave(c)
        u = (k * s - micro) / (s * n)
        return torch.cat([torch.zeros(self.ref_frames, dtype=torch.float64), u])

    def describe(self) -> str:
        kind = ("uniform" if self.is_uniform else "diagonal" if self.chunk_frames == 1 and self.micro_steps == 1
                else "streaming")
        return (f"{kind}: K={self.ref_frames} reference + N={self.chunks} chunks x c={self.chunk_frames} frames, "
                f"s={self.micro_steps} micro steps (T={self.steps_per_frame} steps per frame)")

    def to_dict(self) -> dict:
        return {"chunks": self.chunks, "chunk_frames": self.chunk_frames, "micro_steps": self.micro_steps,
                "ref_frames": self.ref_frames}
