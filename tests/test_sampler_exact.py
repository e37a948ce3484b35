"""Sampler arithmetic checked independently of any network.

With a single-point data distribution x0*, the exact velocity is v = (x - x0*) / sigma, and every
frame after every step must lie on (1 - sigma) x0* + sigma eps. Each frame's x0* depends on its
absolute index in the video, so the check also catches frames that move to the wrong place.
"""
import functools
import itertools

import pytest
import torch

from streamdit.codecs import PatchCodec
from streamdit.sampling.partition import Partition, Schedule
from streamdit.sampling.stream import Stream, StreamConfig

C, H, W = 3, 2, 2  # latent channels and grid (patch codec, p = 1)


@functools.cache
def x0_star(index: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + index)
    return torch.randn(C, H, W, generator=g, dtype=torch.float64)


def noise_sequence(seed: int, partition: Partition, frames: int) -> torch.Tensor:
    """The stream's noise, reproduced: one tensor for the first buffer, then one per entering chunk."""
    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn((C, partition.buffer_frames, H, W), generator=g)]
    while sum(p.shape[1] for p in parts) < frames:
        parts.append(torch.randn((C, partition.chunk_frames, H, W), generator=g))
    return torch.cat(parts, dim=1).to(torch.float64)


def expected_u(partition: Partition, call: int, cold_steps: int = 0) -> torch.Tensor:
    """u per buffer frame at network call number `call`, from the design doc's formulas (the uniform start
    takes cold_steps calls per band, 0: s)."""
    k, n, c, s = partition.ref_frames, partition.chunks, partition.chunk_frames, partition.micro_steps
    g = cold_steps or s
    cold = g * n - (0 if k > 0 else g)  # uniform pass: from u = 1 down to 1/N (or 0 with references)
    if call < cold:
        return torch.full((k + n * c,), (g * n - call) / (g * n), dtype=torch.float64)
    j = (call - cold) % s
    u = [0.0] * k + [((i // c + 1) * s - j) / (s * n) for i in range(n * c)]
    return torch.tensor(u, dtype=torch.float64)


class PointMass:
    """Exact velocity for x0*, checking every input against the exact trajectory as it goes."""

    def __init__(self, partition: Partition, schedule: Schedule, seed: int, cold_steps: int = 0):
        self.partition, self.schedule, self.cold_steps = partition, schedule, cold_steps
        self.eps = noise_sequence(seed, partition, 4000)
        self.stream = None
        self.calls = 0
        self.checked_frames = 0

    def offset(self) -> int:
        st = self.stream
        return st.latents_emitted - self.partition.ref_frames if st.buffer.started else 0

    def __call__(self, x, sigma, weights):
        torch.testing.assert_close(sigma, self.schedule.sigmas(expected_u(self.partition, self.calls, self.cold_steps)),
                                   rtol=0, atol=1e-15)
        off = self.offset()
        x0 = torch.stack([x0_star(off + i) for i in range(x.shape[1])], dim=1)
        eps = self.eps[:, off:off + x.shape[1]]
        sig = sigma.view(1, -1, 1, 1)
        torch.testing.assert_close(x, (1 - sig) * x0 + sig * eps, rtol=0, atol=1e-12)
        self.checked_frames += x.shape[1]
        self.calls += 1
        v = (x - x0) / torch.where(sig > 0, sig, torch.ones_like(sig))
        return torch.where(sig > 0, v, torch.zeros_like(v))


def make_stream(partition, shift, seed, denoise, cold_steps=0):
    cfg = StreamConfig(partition=partition, height=H, width=W, shift=shift, seed=seed, cold_micro_steps=cold_steps)
    return Stream(denoise, PatchCodec(1), cfg, "point mass", dtype=torch.float64)


GRID = [Partition(chunks=n, chunk_frames=c, micro_steps=s, ref_frames=k)
        for k, n, c, s in itertools.product([0, 1, 3], [1, 2, 4], [1, 2], [1, 3])]


def _id(p):
    return f"K{p.ref_frames}N{p.chunks}c{p.chunk_frames}s{p.micro_steps}"


@pytest.mark.parametrize("partition", GRID, ids=_id)
@pytest.mark.parametrize("shift", [1.0, 5.0])
def test_exact_trajectory_through_cold_start_moves_and_restore(partition, shift, tmp_path):
    schedule, seed = Schedule(shift), 7
    vel = PointMass(partition, schedule, seed)
    stream = make_stream(partition, shift, seed, vel)
    vel.stream = stream
    finished = []
    target = 3 * partition.buffer_frames + 5
    while stream.latents_emitted < target // 2:
        finished.append(stream.next_latent_chunk())
    # half a period in, save, and continue in a brand-new stream object
    if partition.micro_steps > 1:
        stream.buffer.step(stream._velocity)
    stream.save(tmp_path / "state.pt")
    restored = make_stream(partition, shift, seed, vel)
    restored.load(tmp_path / "state.pt")
    vel.stream = restored
    while restored.latents_emitted < target:
        finished.append(restored.next_latent_chunk())
    video = torch.cat(finished, dim=1)
    # every finished frame is exactly its own x0*, in order: the buffer moved frames correctly
    expect = torch.stack([x0_star(i) for i in range(video.shape[1])], dim=1)
    torch.testing.assert_close(video, expect, rtol=0, atol=1e-12)
    # and the reference frames are the last K finished frames
    k = partition.ref_frames
    if k:
        torch.testing.assert_close(restored.buffer.latents[:, :k], video[:, -k:], rtol=0, atol=0)
    assert vel.calls == restored.calls
    # network calls: the uniform cold start, then s per emitted chunk (the mid-period step is absorbed)
    cold = partition.micro_steps * partition.chunks - (0 if k else partition.micro_steps)
    moves = (video.shape[1] - k) // partition.chunk_frames
    assert vel.calls == cold + moves * partition.micro_steps


@pytest.mark.parametrize("partition", [p for p in GRID if p.chunks > 1 and p.chunk_frames == 2], ids=_id)
@pytest.mark.parametrize("cold_steps", [2, 4])
def test_exact_trajectory_with_a_finer_cold_start(partition, cold_steps):
    """The uniform start on its own grid of 1/(g N): every call on the exact trajectory, chunk k taken at u = k/N,
    then streaming with s calls per chunk as before."""
    schedule, seed, shift = Schedule(5.0), 3, 5.0
    vel = PointMass(partition, schedule, seed, cold_steps)
    stream = make_stream(partition, shift, seed, vel, cold_steps)
    vel.stream = stream
    finished = []
    while stream.latents_emitted < 2 * partition.buffer_frames:
        finished.append(stream.next_latent_chunk())
    video = torch.cat(finished, dim=1)
    torch.testing.assert_close(video, torch.stack([x0_star(i) for i in range(video.shape[1])], dim=1),
                               rtol=0, atol=1e-12)
    k, n = partition.ref_frames, partition.chunks
    moves = (video.shape[1] - k) // partition.chunk_frames
    assert vel.calls == cold_steps * n - (0 if k else cold_steps) + moves * partition.micro_steps


def test_steps_per_frame_is_s_times_n():
    p = Partition(chunks=8, chunk_frames=2, micro_steps=1)
    assert p.steps_per_frame == 8 and p.buffer_frames == 16
    # a frame's life: it enters at u = 1 and leaves at u = 0 after s*N calls of 1/(sN) each
    u = [p.chunk_u(k, 0) for k in range(8, 0, -1)] + [p.chunk_u(1, 1)]
    assert u == [k / 8 for k in range(8, -1, -1)]
