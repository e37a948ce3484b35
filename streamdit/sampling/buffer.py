"""The moving buffer: latents at rising noise levels, Euler micro steps, moves, cold start, save/restore.

Layout: latents [C, K + N c, h, w]; index 0 is the oldest frame. The first K frames are clean reference
frames (sigma 0, never updated), then chunk 1 (oldest, next to finish) ... chunk N (newest, noisiest).
A velocity function v(x, sigma) receives the whole buffer and one sigma per frame (float64, [K + N c])
and returns the velocity for every frame; reference frames are passed through untouched.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import torch

from .partition import Partition, Schedule

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[int], torch.Tensor]  # frames -> fresh Gaussian noise [C, frames, h, w]


def update(x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor,
           noise: NoiseFn | None = None) -> torch.Tensor:
    """One step of frames x [C, F, h, w] from sigma to sigma_next (float64, [F]): Euler, or x0 re-noised."""
    shape = (1, -1, 1, 1)
    if noise is None:
        return x + (sigma_next - sigma).to(x.device, x.dtype).view(shape) * v.to(x.dtype)
    # x0 in float64 as Self-Forcing's flow-to-x0 conversion; the re-noising in the latents' dtype
    x0 = (x.double() - sigma.view(shape).to(x.device) * v.double()).to(x.dtype)
    if bool((sigma_next == 0).all()):
        return x0
    s = sigma_next.to(x.dtype).view(shape).to(x.device)
    return (1 - s) * x0 + s * noise(x.shape[1]).to(x)


def cold_grid(top: Fraction, micro_steps: int, chunks: int, last: Fraction) -> list[Fraction]:
    """The u values a cold start visits: top, then every multiple of 1/(micro_steps N) below it, down to last."""
    step = Fraction(1, micro_steps * chunks)
    grid, m = [top], math.ceil(top / step) - 1
    while m * step >= last:
        grid.append(m * step)
        m -= 1
    return grid


class StreamBuffer:
    """Latents plus the micro-step counter; all band arithmetic lives in Partition and Schedule."""

    def __init__(self, partition: Partition, schedule: Schedule, latents: torch.Tensor | None = None,
                 micro: int = 0, first: Schedule | None = None):
        self.partition = partition
        self.schedule = schedule
        self.latents = latents  # [C, K + N c, h, w] or None before the start
        self.micro = micro  # j in 0..s-1: micro steps taken at the current buffer position
        # A step table of its own for the stream's first chunk (Causal Forcing++'s 1- and 2-step models
        # denoise their first frame in 4 steps); one chunk (N = 1) only.
        self.first = first
        self.first_pending = first is not None
        self.present = partition.chunks  # chunks in the buffer: fewer while a ramp start fills it
        if first is not None and (partition.chunks != 1 or partition.ref_frames or first.table is None):
            raise ValueError("a first-chunk step table needs a single-chunk buffer (N = 1, K = 0) and a table")

    @property
    def _now(self) -> tuple[Partition, Schedule]:
        """The partition and schedule of the chunk being denoised (the first chunk may have its own)."""
        if self.first_pending:
            p = self.partition
            return Partition(1, p.chunk_frames, len(self.first.table) - 1), self.first
        return self.partition, self.schedule

    @property
    def micro_steps(self) -> int:
        """Micro steps of the current period (s, or the first chunk's own count)."""
        return self._now[0].micro_steps

    # -- noise levels ----------------------------------------------------------------------------
    def sigmas(self, micro: int | None = None) -> torch.Tensor:
        """sigma per buffer frame (float64) at micro step j (default: now); while a ramp start fills the
        buffer, only its newest chunks are there, at their own levels."""
        partition, schedule = self._now
        sigma = schedule.sigmas(partition.frame_u(self.micro if micro is None else micro))
        missing = (partition.chunks - self.present) * partition.chunk_frames
        return sigma[missing:]

    @property
    def started(self) -> bool:
        return self.latents is not None

    def _check_started(self):
        if self.latents is None:
            raise RuntimeError("the buffer is empty: call cold_start() or noise_start() first")

    # -- one network call --------------------------------------------------------------------------
    def step(self, velocity: VelocityFn, noise: NoiseFn | None = None) -> None:
        """One micro step of every chunk by 1/(s N) in u.

        Euler (noise None): x += (sigma_next - sigma) v. With `noise` (the distilled causal families'
        sampler): x0 = x - sigma v is re-noised with fresh Gaussian noise, x = (1 - sigma_next) x0 +
        sigma_next eps. Both keep x0 alike; they differ only in the noise the next step sees.
        """
        self._check_started()
        k = self.partition.ref_frames
        sigma, sigma_next = self.sigmas(self.micro), self.sigmas(self.micro + 1)
        v = velocity(self.latents, sigma)
        new = self.latents.clone()
        new[:, k:] = update(self.latents[:, k:], v[:, k:], sigma[k:], sigma_next[k:], noise)
        self.latents = new  # assigned only when complete, so an interrupt leaves a valid state
        self.micro += 1

    @property
    def period_done(self) -> bool:
        return self.micro == self.micro_steps

    def move(self, new_chunk: torch.Tensor) -> torch.Tensor:
        """After s micro steps: pop the finished chunk 1, shift every chunk one position older, push
        new_chunk (at u = 1) at the new end; the last K finished frames become the reference frames.

        Returns the finished chunk [C, c, h, w].
        """
        self._check_started()
        p = self.partition
        if not self.period_done:
            raise RuntimeError(f"move() after {self.micro} of {p.micro_steps} micro steps; chunk 1 is not clean yet")
        k, c = p.ref_frames, p.chunk_frames
        if new_chunk.shape != (self.latents.shape[0], c, *self.latents.shape[2:]):
            raise ValueError(f"new chunk has shape {tuple(new_chunk.shape)}, expected "
                             f"{(self.latents.shape[0], c, *self.latents.shape[2:])}")
        if self.present < p.chunks:  # a ramp start: the new chunk joins, nothing is finished yet
            self.latents = torch.cat([self.latents, new_chunk.to(self.latents)], dim=1)
            self.present += 1
            self.micro = 0
            return self.latents[:, :0].clone()
        finished = self.latents[:, k:k + c].clone()
        history = torch.cat([self.latents[:, :k], finished], dim=1)[:, c:]  # the last K finished frames
        rest = self.latents[:, k + c:]
        self.latents = torch.cat([history, rest, new_chunk.to(self.latents)], dim=1)
        self.micro = 0
        self.first_pending = False
        return finished

    # -- starting --------------------------------------------------------------------------------
    def cold_start(self, x: torch.Tensor, velocity: VelocityFn,
                   callback: Callable[[int, int], None] | None = None,
                   fresh: NoiseFn | None = None, level: int | None = None, micro_steps: int = 0) -> torch.Tensor:
        """Coherent start: one uniform pass of the whole buffer; chunk k takes its frames from the state at u = k/N.

        x: every buffer frame at grid level `level` (u = level / (s N); default s N: x is pure noise). An
        edit starts lower, from its source noised to the edit level; chunks above the start keep x.
        micro_steps: steps per band of the pass (0: the partition's s); a finer pass than the streaming one
        costs calls once, at the start, and a distilled student's one-step bands lose the sprite at the top.
        With K > 0 reference frames the pass runs to u = 0 for them; they are the first finished
        frames and are returned ([C, K, h, w], empty when K = 0) so the caller can emit them.
        """
        p = self.partition
        k, c, n, s = p.ref_frames, p.chunk_frames, p.chunks, p.micro_steps
        if x.shape[1] != p.buffer_frames:
            raise ValueError(f"cold start latents have {x.shape[1]} frames, the buffer holds {p.buffer_frames}")
        if micro_steps < 0:
            raise ValueError(f"cold start micro_steps={micro_steps} must be >= 0 (0: the partition's s={s})")
        grid = cold_grid(Fraction(s * n if level is None else level, s * n), micro_steps or s, n,
                         Fraction(0) if k > 0 else Fraction(1, n))  # stop at u = 1/N unless refs need u = 0
        filled = x.clone()  # chunks at or above the start level (chunk N of a noise start: the noise itself)
        total = len(grid) - 1
        for i, (u, u_next) in enumerate(zip(grid, grid[1:])):
            sigma = torch.full((p.buffer_frames,), self.schedule.sigma(float(u)), dtype=torch.float64)
            sigma_next = torch.full_like(sigma, self.schedule.sigma(float(u_next)))
            x = update(x, velocity(x, sigma), sigma, sigma_next, fresh)
            chunk = u_next * n
            if chunk.denominator == 1 and chunk >= 1:  # reached the band edge u = chunk/N
                lo = k + (int(chunk) - 1) * c
                filled[:, lo:lo + c] = x[:, lo:lo + c]
            if callback is not None:
                callback(i + 1, total)
        if k > 0:
            filled[:, :k] = x[:, :k]
        self.latents = filled
        self.micro = 0
        self.present = n
        self.first_pending = self.first is not None
        return filled[:, :k].clone()

    def ramp_start(self, noise: torch.Tensor) -> torch.Tensor:
        """Rolling Forcing's start: the buffer begins with one chunk of noise at the top level; each move
        adds a chunk until the buffer is full, so the first chunk takes every level (N s calls) before it
        finishes. Nothing is guessed, and no call runs before the first one of the stream."""
        p = self.partition
        if p.ref_frames or noise.shape[1] != p.chunk_frames:
            raise ValueError(f"a ramp start takes one chunk of {p.chunk_frames} noise frames and no reference frames")
        self.present = 1
        self.latents = noise.clone()
        self.micro = 0
        self.first_pending = self.first is not None
        return noise[:, :0].clone()

    def noise_start(self, noise: torch.Tensor) -> torch.Tensor:
        """Naive warm-up: every position holds pure noise scaled to its band level (x0 guessed as 0);
        reference frames start as zeros. Emission starts at once, with poor first chunks."""
        p = self.partition
        if noise.shape[1] != p.buffer_frames:
            raise ValueError(f"warm-up noise has {noise.shape[1]} frames, the buffer holds {p.buffer_frames}")
        self.first_pending = self.first is not None
        self.present = p.chunks
        sigma = self.sigmas(0).to(noise.device, noise.dtype).view(1, -1, 1, 1)
        self.latents = noise * sigma
        self.micro = 0
        return noise[:, :0].clone()

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"latents": None if self.latents is None else self.latents.detach().cpu().clone(),
                "micro": self.micro, "partition": self.partition.to_dict(), "shift": self.schedule.shift,
                "schedule": self.schedule.to_dict(), "first_pending": self.first_pending, "present": self.present}

    def load_state_dict(self, state: dict, device: torch.device | str | None = None) -> None:
        saved = Partition(**state["partition"])
        schedule = Schedule.from_dict(state.get("schedule", {"shift": state["shift"]}))
        if saved != self.partition or schedule != self.schedule:
            raise ValueError(f"saved stream state uses {saved.describe()} with shift {state['shift']}, but this "
                             f"stream uses {self.partition.describe()} with shift {self.schedule.shift}; "
                             "restore it into a stream with the same settings or start a new stream")
        lat = state["latents"]
        self.latents = None if lat is None else lat.to(device or lat.device).clone()
        self.micro = int(state["micro"])
        self.first_pending = bool(state.get("first_pending", False))
        self.present = int(state.get("present", self.partition.chunks))

