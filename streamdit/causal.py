"""Causal streaming: a KV cache of finished frames (a sink plus a rolling window) and the cached denoiser.

The buffer's frames attend to the cached keys/values of finished frames and, block-causally, to each
other (chunk k sees chunks 1..k of the buffer; `buffer_mask="none"` lets every chunk see the whole buffer).
After a chunk is finished, one more network call over its clean latents at t = 0 writes its keys and
values into the cache (Self-Forcing's cache pass). The cache keeps the first `sink` frames for ever and
the most recent `window - sink - N c` others, so that the newest chunk attends to at most `window` frames
(its own included), as the authors' `local_attn_size` counts them. Memory is allocated once and never grows.

RoPE (ours past the table, see docs/causal.md): frames take positions counted from the stream start and
keys are cached after RoPE, as in the authors' code, whose table has 1,024 positions. Before a position
would reach `rope_limit`, the cache re-bases: every cached key is turned back by D positions (the oldest
rolling frame moves to 0) and counting goes on at p - D. Attention sees only relative positions, so
the result is the authors' model with an unbounded table, with positions that stay small for ever.

Layout of one block's slots: [scratch: this call's frames | sink | rolling ring]. A call writes its
keys/values right-aligned into the scratch and attends to one contiguous span from there to the last
used slot; the ring's order does not matter, because every key carries its position in its rotation.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .denoiser import EmbeddingCache, Weights
from .model import apply_rope, frame_rotation
from .partition import Partition

BUFFER_MASKS = ("block-causal", "none")


@dataclass(frozen=True)
class CacheSpec:
    """How a causal stream attends to the past (latent frames)."""

    window: int  # W: frames the newest chunk attends to at most, its own and the sink included
    sink: int = 0  # S: first frames kept for ever
    rope_limit: int = 1024  # RoPE positions stay below this (the authors' table length)
    buffer_mask: str = "block-causal"  # attention among the buffer's chunks: "block-causal" or "none"

    def __post_init__(self):
        for name, low in (("window", 1), ("sink", 0), ("rope_limit", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"cache {name}={value!r} must be an integer >= {low}")
        if self.buffer_mask not in BUFFER_MASKS:
            raise ValueError(f"buffer_mask={self.buffer_mask!r}; choose one of {', '.join(BUFFER_MASKS)}")
        if self.window > self.rope_limit:
            raise ValueError(f"cache window {self.window} frames exceeds rope_limit {self.rope_limit}: the positions "
                             "of one window must fit the RoPE table")

    def rolling_frames(self, partition: Partition) -> int:
        """R: finished frames kept besides the sink."""
        if partition.ref_frames:
            raise ValueError(f"a causal stream keeps its past in the KV cache, not as reference frames: use "
                             f"ref_frames=0 (got K={partition.ref_frames})")
        rolling = self.window - self.sink - partition.stream_frames
        if rolling < 0:
            raise ValueError(f"cache window {self.window} frames cannot hold the sink ({self.sink}) and the buffer "
                             f"({partition.stream_frames} frames); use a window of at least "
                             f"{self.sink + partition.stream_frames}")
        return rolling

    def to_dict(self) -> dict:
        return asdict(self)


class CacheLayer:
    """One block's view of the cache: writes this call's keys/values, returns the span to attend to."""

    def __init__(self, cache: KVCache, index: int):
        self.cache, self.index = cache, index

    def attend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        c, n = self.cache, k.shape[1]
        start = c.scratch_tokens - n
        if start < 0:
            raise ValueError(f"a call of {n} tokens exceeds the cache's scratch of {c.scratch_tokens}")
        end = c.scratch_tokens + c.used_frames * c.frame_tokens
        c.k[self.index][:, start:c.scratch_tokens] = k
        c.v[self.index][:, start:c.scratch_tokens] = v
        return c.k[self.index][:, start:end], c.v[self.index][:, start:end]


class KVCache:
    """Per block: keys (after RoPE) and values of the sink and the rolling window, allocated once."""

    def __init__(self, spec: CacheSpec, partition: Partition, frame_tokens: int, layers: int, heads: int,
                 head_dim: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.spec, self.frame_tokens, self.head_dim = spec, frame_tokens, head_dim
        self.scratch_frames = partition.stream_frames
        self.ring_frames = spec.rolling_frames(partition)
        self.scratch_tokens = self.scratch_frames * frame_tokens
        total = (self.scratch_frames + spec.sink + self.ring_frames) * frame_tokens
        self.k = [torch.zeros(1, total, heads, head_dim, device=device, dtype=dtype) for _ in range(layers)]
        self.v = [torch.zeros_like(t) for t in self.k]
        self.sink_used = 0  # frames in the sink
        self.ring_used = 0  # frames in the ring
        self.ring_next = 0  # ring slot the next frame goes to (the oldest once the ring is full)
        self.position = 0  # RoPE position of the next frame to commit (= the buffer's first frame)
        self.frames_seen = 0  # frames committed since the start
        self.offset = 0  # positions removed by re-basing so far (absolute position = position + offset)

    @property
    def used_frames(self) -> int:
        return self.sink_used + self.ring_used

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    def layer(self, index: int) -> CacheLayer:
        return CacheLayer(self, index)

    def prepare(self, frames: int) -> None:
        """Before a call over `frames` frames from `position` on: re-base if they would reach rope_limit."""
        if self.position + frames <= self.spec.rope_limit:
            return
        delta = self.position - self.ring_used  # the oldest rolling frame goes to position 0
        rot = frame_rotation(-delta, self.head_dim, self.k[0].device,
                             torch.float64 if self.k[0].dtype == torch.float64 else torch.float32)
        lo, hi = self.scratch_tokens, self.scratch_tokens + self.used_frames * self.frame_tokens
        for k in self.k:
            k[:, lo:hi] = apply_rope(k[:, lo:hi], rot)
        self.position -= delta
        self.offset += delta

    def commit(self, frames: int) -> None:
        """Move the keys/values of the last call's `frames` frames from the scratch into the sink or ring."""
        t = self.frame_tokens
        src0 = self.scratch_tokens - frames * t
        for f in range(frames):
            if self.sink_used < self.spec.sink:
                slot, self.sink_used = self.sink_used, self.sink_used + 1
            elif self.ring_frames:
                slot = self.spec.sink + self.ring_next
                self.ring_next = (self.ring_next + 1) % self.ring_frames
                self.ring_used = min(self.ring_used + 1, self.ring_frames)
            else:  # no rolling window: the frame leaves the attention span at once
                continue
            dst = self.scratch_tokens + slot * t
            for store in (self.k, self.v):
                for layer in store:
                    layer[:, dst:dst + t] = layer[:, src0 + f * t:src0 + (f + 1) * t]
        self.position += frames
        self.frames_seen += frames

    # -- state -----------------------------------------------------------------------------------
    _COUNTERS = ("sink_used", "ring_used", "ring_next", "position", "frames_seen", "offset")

    def state_dict(self) -> dict:
        hi = self.scratch_tokens + (self.spec.sink + self.ring_frames) * self.frame_tokens
        lo = self.scratch_tokens
        return {"spec": self.spec.to_dict(), **{n: getattr(self, n) for n in self._COUNTERS},
                "k": [t[:, lo:hi].detach().cpu().clone() for t in self.k],
                "v": [t[:, lo:hi].detach().cpu().clone() for t in self.v]}

    def load_state_dict(self, state: dict) -> None:
        if CacheSpec(**state["spec"]) != self.spec or len(state["k"]) != len(self.k):
            raise ValueError(f"saved KV cache ({state['spec']}, {len(state['k'])} blocks) does not fit this stream "
                             f"({self.spec.to_dict()}, {len(self.k)} blocks): restore into the same model and settings")
        lo = self.scratch_tokens
        for store, saved in ((self.k, state["k"]), (self.v, state["v"])):
            for t, s in zip(store, saved):
                if s.shape[1] != t.shape[1] - lo:
                    raise ValueError("saved KV cache has another frame size: restore into a stream of the same size")
                t[:, lo:] = s.to(t)
        for n in self._COUNTERS:
            setattr(self, n, int(state[n]))


def chunk_mask(partition: Partition, spec: CacheSpec, frames: int, frame_tokens: int,
               cached_tokens: int, device: torch.device | str = "cpu") -> Tensor | None:
    """Boolean [L, L + cached] (True = attend) for a call over `frames` buffer frames: block-causal among the
    buffer's chunks, the whole cache visible. None when nothing is masked (one chunk, or buffer_mask none)."""
    c = partition.chunk_frames
    if spec.buffer_mask == "none" or frames <= c:
        return None
    chunk = torch.arange(frames * frame_tokens, device=device) // (c * frame_tokens)
    own = chunk[None, :] <= chunk[:, None]
    return torch.cat([own, own.new_ones(own.shape[0], cached_tokens)], dim=1)


class CausalDenoiser:
    """v(x, sigma, prompt weights) for a causal stream's buffer, attending to its KV cache; commit() is the
    t = 0 pass that writes a finished chunk into the cache. One per stream: it holds the stream's cache."""

    def __init__(self, model: nn.Module, text: EmbeddingCache, spec: CacheSpec, partition: Partition,
                 timesteps: Callable[[Tensor], Tensor], dtype: torch.dtype | None = None):
        self.model, self.text, self.spec, self.partition = model, text, spec, partition
        self.timesteps = timesteps
        self.dtype = dtype or next(model.parameters()).dtype
        self.cfg_scale = 1.0  # guidance-distilled: one pass
        spec.rolling_frames(partition)  # validate now, before any frame
        self.cache: KVCache | None = None
        self._saved: dict | None = None  # a restored cache, loaded once the frame size is known
        self.calls = 0

    def _cache_for(self, x: Tensor) -> KVCache:
        if self.cache is None:
            cfg = self.model.config
            ph, pw = cfg.patch_size[1:]
            frame_tokens = (x.shape[2] // ph) * (x.shape[3] // pw)
            dev = next(self.model.parameters()).device
            self.cache = KVCache(self.spec, self.partition, frame_tokens, cfg.num_layers, cfg.num_heads, cfg.head_dim,
                                 device=dev, dtype=self.dtype)
            if self._saved is not None:
                self.cache.load_state_dict(self._saved)
                self._saved = None
        return self.cache

    def _run(self, x: Tensor, t: Tensor, weights: Weights, mask: bool) -> Tensor:
        cache = self._cache_for(x)
        cache.prepare(x.shape[1])
        dev = next(self.model.parameters()).device
        cond = self.text.blend(weights).to(dev, self.dtype).unsqueeze(0)
        m = None
        if mask:
            m = chunk_mask(self.partition, self.spec, x.shape[1], cache.frame_tokens,
                           cache.used_frames * cache.frame_tokens, dev)
        self.calls += 1
        out = self.model.forward_cached(x.to(dev, self.dtype).unsqueeze(0), t.to(dev).unsqueeze(0), cond, cache, m)
        return out[0].float()

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: Tensor, weights: Weights) -> Tensor:
        return self._run(x, self.timesteps(sigma), weights, mask=True)

    @torch.no_grad()
    def commit(self, x0: Tensor, weights: Weights) -> None:
        """The cache pass: the finished frames x0 [C, c, h, w] once more at t = 0, their keys/values kept."""
        self._run(x0, self.timesteps(torch.zeros(x0.shape[1], dtype=torch.float64)), weights, mask=False)
        self.cache.commit(x0.shape[1])

    def state_dict(self) -> dict:
        if self.cache is None:
            return {"cache": self._saved}
        return {"cache": self.cache.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.cache, self._saved = None, state.get("cache")
