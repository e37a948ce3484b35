"""The streaming sampler against independent, plainly written samplers (float64)."""
import torch

from streamdit.codecs import PatchCodec
from streamdit.sampling.partition import Partition, Schedule
from streamdit.sampling.stream import Stream, StreamConfig

C, H, W = 3, 3, 3


class MixingVelocity:
    """A deterministic nonlinear 'network': each frame's velocity depends on its neighbours and sigma."""

    def __init__(self):
        g = torch.Generator().manual_seed(3)
        self.a = torch.randn(C, C, generator=g, dtype=torch.float64) * 0.3

    def __call__(self, x, sigma, weights=None):
        sig = sigma.view(1, -1, 1, 1).to(x.dtype)
        mix = torch.einsum("dc,cfhw->dfhw", self.a, torch.tanh(x))
        context = x.mean(dim=1, keepdim=True)  # every frame sees the whole buffer
        left = torch.roll(x, 1, dims=1)
        return mix + 0.5 * x * sig - 0.2 * context + 0.1 * left * (1 - sig)


def make(partition, shift=1.0, seed=11):
    cfg = StreamConfig(partition=partition, height=H, width=W, shift=shift, seed=seed)
    return Stream(MixingVelocity(), PatchCodec(1), cfg, "test", dtype=torch.float64)


def gamma(u, shift):
    return shift * u / (1 + (shift - 1) * u)


def test_uniform_partition_equals_plain_euler_sampler():
    frames, steps, shift = 6, 10, 3.0
    stream = make(Partition.uniform(frames, steps), shift)
    out = stream.next_latent_chunk()
    # plain flow-matching Euler: all frames share one sigma, from 1 to 0 in `steps` equal steps of u
    g = torch.Generator().manual_seed(11)
    x = torch.randn((C, frames, H, W), generator=g).to(torch.float64)
    v = MixingVelocity()
    for i in range(steps):
        s_now, s_next = gamma(1 - i / steps, shift), gamma(1 - (i + 1) / steps, shift)
        x = x + (s_next - s_now) * v(x, torch.full((frames,), s_now, dtype=torch.float64))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
    assert stream.calls == steps


def fifo_reference(frames_in_queue, total, seed, shift, v):
    """FIFO-Diffusion style diagonal denoising written from scratch: a queue of frames at noise levels
    1/n, 2/n, ..., 1 (oldest first), initialised by one full-video pass keeping the diagonal states."""
    n = frames_in_queue
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((C, n, H, W), generator=g).to(torch.float64)
    # initialisation: denoise all n frames together; frame i keeps its state when u reaches (i+1)/n
    x, queue = noise.clone(), noise.clone()
    for step in range(n - 1):  # u from 1 down to 1/n
        u, u_next = (n - step) / n, (n - step - 1) / n
        x = x + (gamma(u_next, shift) - gamma(u, shift)) * v(x, torch.full((n,), gamma(u, shift), dtype=torch.float64))
        i = n - step - 2  # the frame whose level is u_next = (i+1)/n
        queue[:, i] = x[:, i]
    out = []
    while len(out) < total:
        levels = torch.tensor([gamma((i + 1) / n, shift) for i in range(n)], dtype=torch.float64)
        nxt = torch.tensor([gamma(i / n, shift) for i in range(n)], dtype=torch.float64)
        queue = queue + (nxt - levels).view(1, -1, 1, 1) * v(queue, levels)
        out.append(queue[:, :1].clone())  # dequeue the clean head, enqueue fresh noise
        queue = torch.cat([queue[:, 1:], torch.randn((C, 1, H, W), generator=g).to(torch.float64)], dim=1)
    return torch.cat(out, dim=1)


def test_diagonal_partition_matches_fifo_reference_loop():
    n, shift = 5, 2.0
    stream = make(Partition.diagonal(n), shift)
    got = torch.cat([stream.next_latent_chunk() for _ in range(17)], dim=1)
    want = fifo_reference(n, 17, 11, shift, MixingVelocity())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_schedule_is_monotone_and_hits_ends():
    for shift in (0.5, 1.0, 3.0, 5.0):
        sch = Schedule(shift)
        u = torch.linspace(0, 1, 101, dtype=torch.float64)
        s = sch.sigmas(u)
        assert s[0] == 0 and s[-1] == 1 and bool((s[1:] > s[:-1]).all())
