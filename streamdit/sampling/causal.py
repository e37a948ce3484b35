"""Causal streaming: a KV cache of finished frames (a sink plus a rolling window) and the cached denoiser.

The buffer's frames attend to the cached keys/values of finished frames and, block-causally, to each
other (chunk k sees chunks 1..k of the buffer; `buffer_mask="none"` lets every chunk see the whole buffer).
After a chunk is finished, one more network call over its clean latents at t = 0 writes its keys and
values into the cache (Self-Forcing's cache pass). The cache keeps the first `sink` frames for ever and
the most recent `window - sink - N c` others, so that the newest chunk attends to at most `window` frames
(its own included), as the authors' `local_attn_size` counts them. Memory is allocated once and never grows.

Variants the families need: Rolling Forcing's anchor (the sink stored without RoPE and placed just before
the cached frames at every denoising call) and its cache pass that sees the last `commit_window` finished
frames; LongLive's re-cache, which re-runs the cached frames at t = 0 under a new prompt.

RoPE (ours past the table, see docs/causal.md): frames take positions counted from the stream start and
keys are cached after RoPE, as in the authors' code, whose table has 1,024 positions. Before a position
would reach `rope_limit`, the cache re-bases: every cached key is turned back by D positions (the oldest
rolling frame moves to 0) and counting goes on at p - D. Attention sees only relative positions, so
the result is the authors' model with an unbounded table, with positions that stay small for ever.

Layout of one block's slots: [scratch: this call's frames | sink | rolling ring]. A call writes its
keys/values right-aligned into the scratch; what it attends to is read as one contiguous span where it
can be (no copy), else as a few pieces put together. The ring's order does not matter to attention,
because every key carries its position in its rotation.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..network.model import apply_rope, frame_rotation, rope_table
from .denoiser import EmbeddingCache, Weights, network_device
from .partition import Partition

BUFFER_MASKS = ("block-causal", "none")


@dataclass(frozen=True)
class CacheSpec:
    """How a causal stream attends to the past (latent frames)."""

    window: int  # W: frames the newest chunk attends to at most, its own and the sink included
    sink: int = 0  # S: first frames kept for ever
    rope_limit: int = 1024  # RoPE positions stay below this (the authors' table length)
    buffer_mask: str = "block-causal"  # attention among the buffer's chunks: "block-causal" or "none"
    anchor: bool = False  # the sink is kept without RoPE and placed just before the cached frames (Rolling Forcing)
    commit_window: int | None = None  # frames a cache pass attends to, its own included (None: as the buffer)
    recache: bool = False  # a prompt change re-runs the cached frames at t = 0 under the new prompt (LongLive)

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
        if self.anchor and self.recache:
            raise ValueError("an anchor sink and re-caching do not go together (no family uses both)")

    def rolling_frames(self, partition: Partition) -> int:
        """R: finished frames the buffer attends to besides the sink."""
        if partition.ref_frames:
            raise ValueError(f"a causal stream keeps its past in the KV cache, not as reference frames: use "
                             f"ref_frames=0 (got K={partition.ref_frames})")
        rolling = self.window - self.sink - partition.stream_frames
        if rolling < 0:
            raise ValueError(f"cache window {self.window} frames cannot hold the sink ({self.sink}) and the buffer "
                             f"({partition.stream_frames} frames); use a window of at least "
                             f"{self.sink + partition.stream_frames}")
        return rolling

    def kept_frames(self, partition: Partition) -> int:
        """Finished frames kept besides the sink: R, or more when the cache pass sees further back."""
        kept = self.rolling_frames(partition)
        if self.commit_window is not None:
            if self.commit_window < partition.chunk_frames:
                raise ValueError(f"commit_window={self.commit_window} is shorter than a chunk")
            kept = max(kept, self.commit_window - partition.chunk_frames)
        if kept + partition.stream_frames + self.sink > self.rope_limit:
            raise ValueError(f"the cache's {kept} kept frames and the buffer exceed rope_limit {self.rope_limit}")
        return kept

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """One call's use of the cache (the same for every block).

    writes: (first call frame, end call frame, first slot token, raw keys?) copied in during the forward;
    reads: (first slot token, end slot token, rotation or None) attended to, in this order;
    moves: (first scratch token, tokens, first slot token) copied after the forward; done: counter updates."""

    start: int  # RoPE position of the call's first frame
    writes: list = field(default_factory=list)
    reads: list = field(default_factory=list)
    moves: list = field(default_factory=list)
    done: Callable[[], None] | None = None


class CacheLayer:
    """One block's view of the cache: writes this call's keys/values, returns what to attend to."""

    def __init__(self, cache: KVCache, index: int):
        self.cache, self.index = cache, index

    def attend(self, k_raw: Tensor, v: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        c = self.cache
        t = c.frame_tokens
        keys, values = c.k[self.index], c.v[self.index]
        k = apply_rope(k_raw, rope)
        for lo, hi, dst, raw in c.plan.writes:
            n = (hi - lo) * t
            keys[:, dst:dst + n] = (k_raw if raw else k)[:, lo * t:hi * t]
            values[:, dst:dst + n] = v[:, lo * t:hi * t]
        pieces = []
        for lo, hi, rot in c.plan.reads:
            kk = keys[:, lo:hi]
            pieces.append((kk if rot is None else apply_rope(kk, rot), values[:, lo:hi]))
        if len(pieces) == 1:
            return pieces[0]
        return torch.cat([p[0] for p in pieces], 1), torch.cat([p[1] for p in pieces], 1)


class KVCache:
    """Per block: keys (after RoPE; an anchor sink before it) and values of the sink and the ring, allocated once."""

    def __init__(self, spec: CacheSpec, partition: Partition, frame_tokens: int, layers: int, heads: int,
                 head_dim: int, *, grid_hw: tuple[int, int] | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.spec, self.partition, self.frame_tokens, self.head_dim = spec, partition, frame_tokens, head_dim
        self.grid_hw = grid_hw or (1, frame_tokens)
        self.chunk = partition.chunk_frames
        self.scratch_frames = partition.stream_frames
        self.rolling = spec.rolling_frames(partition)  # R: what the buffer sees
        self.ring_frames = spec.kept_frames(partition)  # what is kept (>= R)
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
        self.plan = Plan(0)

    @property
    def used_frames(self) -> int:
        return self.sink_used + self.ring_used

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    def layer(self, index: int) -> CacheLayer:
        return CacheLayer(self, index)

    # -- slots -------------------------------------------------------------------------------------
    def _sink_slot(self, i: int) -> int:
        return self.scratch_tokens + i * self.frame_tokens

    def _ring_slot(self, i: int) -> int:
        return self.scratch_tokens + (self.spec.sink + i) * self.frame_tokens

    def _last_ring(self, n: int) -> list[tuple[int, int, None]]:
        """Read pieces of the ring's newest n frames (one piece, or two where the ring wraps)."""
        if n <= 0:
            return []
        if n >= self.ring_used:  # every used slot: read them in slot order (one piece, no copy)
            return [(self._ring_slot(0), self._ring_slot(self.ring_used), None)]
        first = (self.ring_next - n) % self.ring_frames
        if first + n <= self.ring_frames:
            return [(self._ring_slot(first), self._ring_slot(first + n), None)]
        return [(self._ring_slot(first), self._ring_slot(self.ring_frames), None),
                (self._ring_slot(0), self._ring_slot(first + n - self.ring_frames), None)]

    def _rotation(self, frames: int, start: int) -> tuple[Tensor, Tensor]:
        """Full 3-axis RoPE of `frames` un-rotated frames placed at `start` (the anchor)."""
        device = self.k[0].device
        dt = torch.float64 if self.k[0].dtype == torch.float64 else torch.float32
        return rope_table.__wrapped__((frames, *self.grid_hw), self.head_dim, device, start, dt)

    def _sink_read(self, start: int | None) -> list:
        """The sink as a read piece: as stored, or (anchor) rotated to begin at `start`."""
        if not self.sink_used:
            return []
        lo, hi = self._sink_slot(0), self._sink_slot(self.sink_used)
        return [(lo, hi, self._rotation(self.sink_used, start) if self.spec.anchor else None)]

    @staticmethod
    def _merge(reads: list) -> list:
        """Join adjacent unrotated pieces, so a contiguous span is read without a copy."""
        out = []
        for piece in reads:
            if out and out[-1][2] is None and piece[2] is None and out[-1][1] == piece[0]:
                out[-1] = (out[-1][0], piece[1], None)
            else:
                out.append(piece)
        return out

    # -- plans -----------------------------------------------------------------------------------
    def plan_denoise(self, frames: int) -> None:
        """The buffer's frames (from `position` on): the sink, the newest R finished frames, themselves."""
        self._prepare(frames)
        own = self.scratch_tokens - frames * self.frame_tokens
        ring = min(self.rolling, self.ring_used)
        writes = [(0, frames, own, False)]
        if self.spec.anchor:  # Rolling Forcing: the anchor sits just before the cached frames
            reads = self._sink_read(self.position - ring - self.sink_used) + self._last_ring(ring)
            reads += [(own, self.scratch_tokens, None)]
        else:
            reads = [(own, self.scratch_tokens, None)] + self._sink_read(None) + self._last_ring(ring)
        self.plan = Plan(self.position, writes, self._merge(reads))

    def plan_commit(self, frames: int) -> None:
        """The cache pass of a finished chunk at `position`: what it sees, and where its keys go after."""
        self._prepare(frames)
        t, own = self.frame_tokens, self.scratch_tokens - frames * self.frame_tokens
        writes, reads = [(0, frames, own, False)], []
        if self.spec.commit_window is None:
            reads = self._sink_read(self.position - min(self.rolling, self.ring_used) - self.sink_used)
            reads += self._last_ring(min(self.rolling, self.ring_used))
        else:  # the last commit_window finished frames, its own included, at their own positions
            lowest = self.frames_seen - (self.spec.commit_window - frames)
            sink_in = [i for i in range(self.sink_used) if i >= lowest]
            if sink_in:
                rot = self._rotation(len(sink_in), sink_in[0] - self.offset) if self.spec.anchor else None
                reads.append((self._sink_slot(sink_in[0]), self._sink_slot(sink_in[-1] + 1), rot))
            reads += self._last_ring(min(self.ring_used, self.frames_seen - max(lowest, self.sink_used)))
        reads = [(own, self.scratch_tokens, None)] + reads if not self.spec.anchor else reads + [
            (own, self.scratch_tokens, None)]
        moves, sink_used, ring_used, ring_next = [], self.sink_used, self.ring_used, self.ring_next
        for f in range(frames):
            if sink_used < self.spec.sink:
                if self.spec.anchor:  # kept without RoPE: written as it is, during the pass
                    writes.append((f, f + 1, self._sink_slot(sink_used), True))
                else:
                    moves.append((own + f * t, t, self._sink_slot(sink_used)))
                sink_used += 1
            elif self.ring_frames:
                moves.append((own + f * t, t, self._ring_slot(ring_next)))
                ring_next = (ring_next + 1) % self.ring_frames
                ring_used = min(ring_used + 1, self.ring_frames)

        def done():
            self.sink_used, self.ring_used, self.ring_next = sink_used, ring_used, ring_next
            self.position += frames
            self.frames_seen += frames

        self.plan = Plan(self.position, writes, self._merge(reads), moves, done)

    def plan_recache(self, frames: int) -> None:
        """LongLive's re-cache: the last `frames` finished frames again at t = 0, attending to each other
        (and to the sink when it is kept); their keys replace the cache's."""
        t = self.frame_tokens
        keep_sink = self.frames_seen >= self.spec.window and self.sink_used == self.spec.sink
        start = self.position - frames
        if keep_sink:  # the newest R go to the ring, the older ones only serve as keys (scratch)
            n_scratch = frames - self.rolling
            if not 0 <= n_scratch <= self.scratch_frames or self.ring_frames != self.rolling:
                raise ValueError(f"cannot re-cache {frames} frames in this cache")
            writes = [(0, n_scratch, self.scratch_tokens - n_scratch * t, False),
                      (n_scratch, frames, self._ring_slot(0), False)]
            reads = [(self.scratch_tokens - n_scratch * t, self._ring_slot(self.rolling), None)]
            sink_used, ring_used, ring_next = self.sink_used, self.rolling, 0
        else:  # every finished frame again, the sink included
            if frames != self.frames_seen or frames > self.spec.sink + self.ring_frames:
                raise ValueError(f"cannot re-cache {frames} of {self.frames_seen} frames in this cache")
            sink_used = min(self.spec.sink, frames)
            ring_used = frames - sink_used
            writes = [(0, sink_used, self._sink_slot(0), False), (sink_used, frames, self._ring_slot(0), False)]
            reads = [(self._sink_slot(0), self._sink_slot(0) + frames * t, None)]
            ring_next = ring_used % self.ring_frames if self.ring_frames else 0
        writes = [w for w in writes if w[1] > w[0]]

        def done():
            self.sink_used, self.ring_used, self.ring_next = sink_used, ring_used, ring_next

        self.plan = Plan(start, writes, reads, [], done)

    def finish(self) -> None:
        """After a complete forward: move the keys the plan keeps and update the counters."""
        for src, n, dst in self.plan.moves:
            for store in (self.k, self.v):
                for layer in store:
                    layer[:, dst:dst + n] = layer[:, src:src + n]
        if self.plan.done is not None:
            self.plan.done()
        self.plan = Plan(self.position)

    def _prepare(self, frames: int) -> None:
        """Before a call over `frames` frames from `position` on: re-base if they would reach rope_limit."""
        if self.position + frames <= self.spec.rope_limit:
            return
        delta = self.position - self.ring_used  # the oldest rolling frame goes to position 0
        dt = torch.float64 if self.k[0].dtype == torch.float64 else torch.float32
        rot = frame_rotation(-delta, self.head_dim, self.k[0].device, dt)
        regions = [(self._ring_slot(0), self._ring_slot(self.ring_used))]
        if not self.spec.anchor:  # an anchor is kept un-rotated: nothing to turn back
            regions.append((self._sink_slot(0), self._sink_slot(self.sink_used)))
        for lo, hi in regions:
            for k in self.k:
                k[:, lo:hi] = apply_rope(k[:, lo:hi], rot)
        self.position -= delta
        self.offset += delta

    # -- state -----------------------------------------------------------------------------------
    _COUNTERS = ("sink_used", "ring_used", "ring_next", "position", "frames_seen", "offset")

    def state_dict(self) -> dict:
        lo = self.scratch_tokens
        return {"spec": self.spec.to_dict(), **{n: getattr(self, n) for n in self._COUNTERS},
                "k": [t[:, lo:].detach().cpu().clone() for t in self.k],
                "v": [t[:, lo:].detach().cpu().clone() for t in self.v]}

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
    t = 0 pass that writes a finished chunk into the cache, recache() LongLive's re-run under a new prompt.
    One per stream: it holds the stream's cache."""

    def __init__(self, model: nn.Module, text: EmbeddingCache, spec: CacheSpec, partition: Partition,
                 timesteps: Callable[[Tensor], Tensor], dtype: torch.dtype | None = None, backend: str | None = None):
        self.model, self.text, self.spec, self.partition = model, text, spec, partition
        self.backend = backend  # attention kernel of this stream (None: the model's default)
        self.timesteps = timesteps
        self.dtype = dtype or next(model.parameters()).dtype
        spec.kept_frames(partition)  # validate now, before any frame
        self.cache: KVCache | None = None
        self._saved: dict | None = None  # a restored cache, loaded once the frame size is known
        self.history: Tensor | None = None  # re-caching families: the last `window` finished latents
        self.written_under: tuple = ()  # the prompt weights the cache was last written with
        self.calls = 0

    def _cache_for(self, x: Tensor) -> KVCache:
        if self.cache is None:
            cfg = self.model.config
            ph, pw = cfg.patch_size[1:]
            grid_hw = (x.shape[2] // ph, x.shape[3] // pw)
            dev = network_device(self.model)
            self.cache = KVCache(self.spec, self.partition, grid_hw[0] * grid_hw[1], cfg.num_layers, cfg.num_heads,
                                 cfg.head_dim, grid_hw=grid_hw, device=dev, dtype=self.dtype)
            if self._saved is not None:
                self.cache.load_state_dict(self._saved)
                self._saved = None
        return self.cache

    def _forward(self, x: Tensor, t: Tensor, weights: Weights, mask: Tensor | None) -> Tensor:
        dev = network_device(self.model)
        cond = self.text.blend(weights).to(dev, self.dtype).unsqueeze(0)
        self.calls += 1
        out = self.model.forward_cached(x.to(dev, self.dtype).unsqueeze(0), t.to(dev).unsqueeze(0), cond, self.cache,
                                        mask, backend=self.backend)
        return out[0].float()

    def set_runtime(self, backend: str | None, compiled: bool | None) -> None:
        """Attention kernel for later calls (the cached path runs eager: compiled is not used yet)."""
        self.backend = backend

    def set_guidance(self, cfg_scale: float, negative_prompt: str) -> None:
        """Guidance-distilled families run one pass at cfg 1; anything else is refused."""
        if float(cfg_scale) != 1.0:
            raise ValueError("this model's family is guidance-distilled: it streams at cfg 1 (one pass per step); "
                             "set cfg back to 1")

    @torch.no_grad()
    def __call__(self, x: Tensor, sigma: Tensor, weights: Weights) -> Tensor:
        cache = self._cache_for(x)
        cache.plan_denoise(x.shape[1])
        cached = sum(hi - lo for lo, hi, _ in cache.plan.reads) - x.shape[1] * cache.frame_tokens
        mask = chunk_mask(self.partition, self.spec, x.shape[1], cache.frame_tokens, cached, x.device)
        if mask is not None and self.spec.anchor:
            raise ValueError("an anchor cache attends unmasked inside the buffer (buffer_mask='none')")
        out = self._forward(x, self.timesteps(sigma), weights, mask)
        cache.plan = Plan(cache.position)
        return out

    def _zero_t(self, frames: int) -> Tensor:
        return self.timesteps(torch.zeros(frames, dtype=torch.float64))

    @torch.no_grad()
    def commit(self, x0: Tensor, weights: Weights) -> None:
        """The cache pass: the finished frames x0 [C, c, h, w] once more at t = 0, their keys/values kept."""
        cache = self._cache_for(x0)
        cache.plan_commit(x0.shape[1])
        self._forward(x0, self._zero_t(x0.shape[1]), weights, None)
        cache.finish()
        self.written_under = tuple(weights)
        if self.spec.recache:
            h = x0.detach() if self.history is None else torch.cat([self.history, x0.detach()], 1)
            self.history = h[:, -self.spec.window:].clone()

    def stale(self, weights: Weights) -> bool:
        """The cache holds frames written under another prompt than `weights`."""
        return self.cache is not None and self.cache.frames_seen > 0 and tuple(weights) != self.written_under

    @torch.no_grad()
    def recache(self, weights: Weights) -> bool:
        """LongLive's `_recache_after_switch`: the last min(window, t) finished frames in one call at t = 0 under
        the new prompt, bidirectional among themselves; once the stream is a window long, the sink keeps the
        keys it has and only the frames after it are rewritten. Returns whether a network call ran."""
        cache = self.cache
        if cache is None or self.history is None or cache.frames_seen == 0:
            return False
        keep_sink = cache.frames_seen >= self.spec.window and cache.sink_used == self.spec.sink
        frames = self.spec.window - self.spec.sink if keep_sink else cache.frames_seen
        cache.plan_recache(frames)
        self._forward(self.history[:, -frames:], self._zero_t(frames), weights, None)
        cache.finish()
        self.written_under = tuple(weights)
        return True

    def state_dict(self) -> dict:
        cache = self._saved if self.cache is None else self.cache.state_dict()
        return {"cache": cache, "history": None if self.history is None else self.history.detach().cpu().clone(),
                "written_under": [list(w) for w in self.written_under]}

    def load_state_dict(self, state: dict) -> None:
        self.cache, self._saved = None, state.get("cache")
        h = state.get("history")
        self.history = None if h is None else h.to(network_device(self.model))
        self.written_under = tuple((str(p), float(w)) for p, w in state.get("written_under", []))
