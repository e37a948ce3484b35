"""Model families: how a Wan-architecture file is streamed, as its authors trained it.

Causal and bidirectional Wan 2.1 files have the same tensors, so the file cannot say how it must run: the
user chooses a family (the CLI's --family, the loader node's `family`), or our own metadata names it. A
causal family is, in this project's terms, the partition N = 1 chunk of c frames with s = len(steps) micro
steps, the family's literal step table, x0 re-noised with fresh noise at each step, and a KV cache of
finished frames (streamdit.sampling.causal). Every number here comes from the authors' code: docs/causal-sources.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .causal import CacheSpec
from .partition import Partition, Schedule


def warped_sigma(t: float, shift: float) -> float:
    """Self-Forcing's `warp_denoising_step`: the listed t picks the scheduler's t-th point from the noisy end,
    i.e. Wan's shift formula at u = t / 1000."""
    return Schedule(shift).sigma(t / 1000.0)


def scheduler_sigma(t: float, shift: float, steps: int = 1000) -> float:
    """An unwarped listed t (CausVid): the sampler's sigma is the scheduler's grid point nearest to t
    (FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True) with `steps` training steps), computed as
    the authors' scheduler does, in float32."""
    lin = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float32)[:-1]
    sig = shift * lin / (1 + (shift - 1) * lin)
    idx = int(torch.argmin((sig * 1000 - t).abs()))
    return float(sig[idx])


@dataclass(frozen=True)
class Family:
    """One way of streaming a Wan-architecture network."""

    name: str
    title: str
    causal: bool
    state_key: str | None = None  # the entry of the authors' .pt file their inference loads (None: any)
    chunk_frames: int = 3  # latent frames per chunk
    times: tuple[float, ...] = ()  # the network's timestep at each step, noisiest first
    sigmas: tuple[float, ...] = ()  # the sampler's sigma at each step (same order)
    shift: float = 5.0
    window: int = 21  # latent frames attended at most (own chunk included)
    sink: int = 0
    rope_limit: int = 1024
    source: str = ""
    warped: bool = True  # the network sees 1000 sigma (warped lists); else the listed t (CausVid)
    first_sigmas: tuple[float, ...] = ()  # the first chunk's own steps (Causal Forcing++), noisiest first
    chunks: int = 1  # N: chunks denoised together (Rolling Forcing's window: 5, one step each)
    cache_options: tuple[tuple[str, object], ...] = ()  # more CacheSpec fields (anchor, commit_window, ...)
    cold_start: str = "uniform"  # with N = 1 the uniform start runs no call at all
    lora: str | None = None  # what the authors' LoRA file holds, if the family needs one (LongLive)

    @property
    def steps(self) -> int:
        return len(self.times)

    def schedule(self) -> Schedule:
        """The literal step table as a Schedule over u = m / steps (u = 0 clean)."""
        times = None if self.warped else (0.0, *reversed(self.times))
        return Schedule(self.shift, table=(0.0, *reversed(self.sigmas)), times=times)

    def first_schedule(self) -> Schedule | None:
        if not self.first_sigmas:
            return None
        return Schedule(self.shift, table=(0.0, *reversed(self.first_sigmas)))

    def partition(self) -> Partition:
        """N chunks of c frames; every frame takes each listed step once, so s = steps / N."""
        return Partition(chunks=self.chunks, chunk_frames=self.chunk_frames, micro_steps=self.steps // self.chunks)

    def cache(self, window: int | None = None, sink: int | None = None) -> CacheSpec:
        options = dict(self.cache_options)
        if window is not None and options.get("commit_window") is not None:
            options["commit_window"] = window
        return CacheSpec(window=self.window if window is None else window, sink=self.sink if sink is None else sink,
                         rope_limit=self.rope_limit, **options)

    def describe(self) -> str:
        if not self.causal:
            return f"{self.name} ({self.title})"
        ts = ", ".join(f"{t:g}" for t in self.times)
        first = (f" (the first chunk: [{', '.join(f'{1000 * s:g}' for s in self.first_sigmas)}])"
                 if self.first_sigmas else "")
        window = f", a window of {self.chunks} chunks at rising noise" if self.chunks > 1 else ""
        return (f"{self.name} ({self.title}): causal, chunks of {self.chunk_frames} latent frame"
                f"{'s' if self.chunk_frames > 1 else ''}{window}, timesteps [{ts}]{first}, x0 re-noised, KV cache of "
                f"{self.window} frames" + (f" with a sink of {self.sink}" if self.sink else "")
                + (" (an anchor)" if dict(self.cache_options).get("anchor") else "")
                + ("; re-caches on prompt changes" if dict(self.cache_options).get("recache") else ""))


def _self_forcing_like(name: str, title: str, state_key: str | None, times_listed: tuple[float, ...], shift: float,
                       chunk: int, source: str, warp: bool = True, first: tuple[float, ...] = (), **more) -> Family:
    if warp:
        sigmas = tuple(warped_sigma(t, shift) for t in times_listed)
        times = tuple(1000.0 * s for s in sigmas)
    else:
        sigmas = tuple(scheduler_sigma(t, shift) for t in times_listed)
        times = tuple(float(t) for t in times_listed)
    return Family(name, title, True, state_key, chunk, times, sigmas, shift, source=source, warped=warp,
                  first_sigmas=tuple(warped_sigma(t, shift) for t in first), **more)


_CF = "thu-ml/Causal-Forcing configs/causal_forcing_dmd_{}.yaml, pipeline/causal_inference.py, README.md"
_FOUR = (1000, 750, 500, 250)


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("wan", "bidirectional Wan 2.1: the moving buffer, training-free or StreamDiT-tuned", False,
           source="this project (docs/wan.md)"),
    _self_forcing_like("self-forcing", "Self-Forcing (guandeh17/Self-Forcing), 4-step DMD", "generator_ema",
                       _FOUR, 5.0, 3, "guandeh17/Self-Forcing configs/self_forcing_dmd.yaml, "
                       "pipeline/causal_inference.py"),
    _self_forcing_like("causvid", "CausVid (tianweiy/CausVid), 3-step causal DMD", "generator",
                       (1000, 757, 522), 8.0, 3, "tianweiy/CausVid configs/wan_causal_dmd.yaml, "
                       "causvid/models/wan/causal_inference.py, causvid/models/wan/wan_wrapper.py", warp=False),
    # the README runs the chunk-wise model without --use_ema (generator), the frame-wise ones with it
    _self_forcing_like("causal-forcing", "Causal Forcing (thu-ml), chunk-wise 4-step", "generator", _FOUR, 5.0, 3,
                       _CF.format("chunkwise")),
    _self_forcing_like("causal-forcing-frame", "Causal Forcing (thu-ml), frame-wise 4-step", "generator_ema", _FOUR,
                       5.0, 1, _CF.format("framewise")),
    _self_forcing_like("causal-forcing-frame-2step", "Causal Forcing++ (thu-ml), frame-wise 2-step",
                       "generator_ema", (1000, 500), 5.0, 1, _CF.format("framewise_2step"), first=_FOUR),
    _self_forcing_like("causal-forcing-frame-1step", "Causal Forcing++ (thu-ml), frame-wise 1-step",
                       "generator_ema", (1000,), 5.0, 1, _CF.format("framewise_1step"), first=_FOUR),
    # a window of 5 chunks at the 5 levels, unmasked, one step per call; the first chunk is an anchor placed
    # before the cached frames; the cache pass sees the last 21 finished frames; the buffer fills by a ramp
    _self_forcing_like("rolling-forcing", "Rolling Forcing (TencentARC/RollingForcing), 5-level rolling window",
                       "generator_ema", (1000, 800, 600, 400, 200), 5.0, 3,
                       "TencentARC/RollingForcing configs/rolling_forcing_dmd.yaml, "
                       "pipeline/rolling_forcing_inference.py, wan/modules/causal_model.py", chunks=5, sink=3,
                       cache_options=(("buffer_mask", "none"), ("anchor", True), ("commit_window", 21)),
                       cold_start="ramp"),
    # Self-Forcing's sampler; a 12-frame window with a 3-frame sink; base weights plus a PEFT LoRA; re-cache
    _self_forcing_like("longlive", "LongLive 1.0 (NVlabs/LongLive), base + LoRA", "generator", _FOUR, 5.0, 3,
                       "NVlabs/LongLive@2462895 configs/longlive_inference.yaml, pipeline/causal_inference.py, "
                       "pipeline/interactive_causal_inference.py, utils/lora_utils.py", window=12, sink=3,
                       cache_options=(("recache", True),), lora="generator_lora"),
]}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose one of {', '.join(FAMILIES)}") from None
