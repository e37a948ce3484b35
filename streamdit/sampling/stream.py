"""The stream: finished frames chunk by chunk from a moving buffer, for as long as the caller pulls.

Denoising runs on the caller's thread; decoding runs on one worker thread, overlapped with the
denoising of the next chunk (the paper's runtime). Memory is constant: one buffer, at most one chunk
decoding and one decoded chunk waiting. The whole state (buffer, noise generator, clocks, prompts,
decoder caches, frames decoded but not yet handed out) saves and restores exactly.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

import torch

from ..codecs import Codec
from .buffer import StreamBuffer
from .causal import CacheSpec
from .partition import Partition, Schedule
from .prompts import PromptTrack

# v(x [C, F, h, w], sigma [F] float64, ((prompt, weight), ...)) -> velocity [C, F, h, w]
Denoise = Callable[[torch.Tensor, torch.Tensor, tuple], torch.Tensor]

STATE_VERSION = 1


@dataclass(frozen=True)
class StreamConfig:
    """Everything that fixes a stream's output besides the model and the prompts."""

    partition: Partition
    height: int
    width: int
    fps: float = 16.0
    shift: float = 1.0
    seed: int = 0
    # "uniform" (coherent, costs (N-1) s calls), "noise" (naive warm-up) or "ramp" (the buffer fills chunk by
    # chunk from one chunk of noise: Rolling Forcing's start)
    cold_start: str = "uniform"
    cold_micro_steps: int = 0  # steps per band of the uniform start (0: the partition's s)
    steps: Schedule | None = None  # a literal step table (distilled families); None: the shift formula
    first_steps: Schedule | None = None  # the first chunk's own step table (N = 1 only)
    renoise: bool = False  # re-noise x0 with fresh noise at each step (the Self-Forcing family's sampler)
    cache: CacheSpec | None = None  # causal streaming: the KV cache of finished frames

    def __post_init__(self):
        if self.cold_start not in ("uniform", "noise", "ramp"):
            raise ValueError(f"cold_start={self.cold_start!r}; choose 'uniform', 'noise' or 'ramp'")
        if self.cold_micro_steps < 0:
            raise ValueError(f"cold_micro_steps={self.cold_micro_steps} must be >= 0 (0: the streaming steps)")
        if self.cold_micro_steps and self.steps is not None:
            raise ValueError("cold_micro_steps needs the shift formula's sigmas: a literal step table has no finer "
                             "grid (leave it 0)")
        if self.cold_start == "ramp" and self.partition.ref_frames:
            raise ValueError("a ramp start keeps no reference frames: use ref_frames=0")
        if not self.fps > 0:
            raise ValueError(f"fps={self.fps} must be > 0")
        if self.steps is not None and self.steps.shift != self.shift:
            raise ValueError(f"the step table's shift {self.steps.shift} differs from shift={self.shift}")
        if self.cache is not None:
            self.cache.rolling_frames(self.partition)  # raises with the reason if the window cannot work

    @property
    def schedule(self) -> Schedule:
        return self.steps or Schedule(self.shift)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["partition"] = self.partition.to_dict()
        d["steps"] = None if self.steps is None else self.steps.to_dict()
        d["first_steps"] = None if self.first_steps is None else self.first_steps.to_dict()
        d["cache"] = None if self.cache is None else self.cache.to_dict()
        return d


class Stream:
    """A generator of video frames from a denoiser, a codec and a prompt track."""

    def __init__(self, denoise: Denoise, codec: Codec, config: StreamConfig, prompts: PromptTrack | str, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.denoise, self.codec, self.config = denoise, codec, config
        self.partition = config.partition
        self.prompts = prompts if isinstance(prompts, PromptTrack) else PromptTrack.from_text(prompts, config.fps)
        self.device, self.dtype = torch.device(device), dtype  # dtype of the latents (the model may use less)
        h, w = codec.latent_size(config.height, config.width)
        self.latent_shape = (codec.latent_channels, h, w)
        self.buffer = StreamBuffer(config.partition, config.schedule, first=config.first_steps)
        if config.cache is not None and not hasattr(denoise, "commit"):
            raise TypeError("a causal stream (config.cache set) needs a denoiser with a KV cache (CausalDenoiser)")
        self.generator = torch.Generator().manual_seed(int(config.seed))
        self.decoder = codec.stream_decoder()
        self.latents_emitted = 0  # latent frames finished (handed to the decoder)
        self.frames_emitted = 0  # video frames handed to the caller
        self.calls = 0  # network calls so far
        self.ended = False  # no more frames will come (an edit's source ran out)
        self.total_frames: int | None = None  # the stream's length once known (an edit: the source's frame count)
        self.before_call: Callable[[], None] | None = None  # hook: progress, cancellation (may raise)
        self.check_prompt: Callable[[str], object] | None = None  # raises on a prompt the model cannot read
        self._pending: deque[torch.Tensor] = deque()  # decoded frames not yet handed out
        self._inflight: tuple[Future, int] | None = None  # (decode future, frames it will give)
        self._uncommitted: torch.Tensor | None = None  # causal: a finished chunk not yet in the KV cache
        self._uncommitted_weights: tuple = ()  # the prompt its last step ran under (its cache pass uses it)
        self._last_weights: tuple = ()

    # -- clocks and prompts ----------------------------------------------------------------------
    @property
    def clock(self) -> float:
        """Playback clock in video frames: finished frames plus the progress of the oldest chunk."""
        p = self.partition
        progress = self.buffer.micro / self.buffer.micro_steps  # the first chunk may have steps of its own
        latent = self.latents_emitted + progress * p.chunk_frames * self.buffer.started
        return latent * self.codec.temporal_factor

    def set_prompt(self, prompt: str) -> None:
        """Change the prompt now: every later network call uses it (blended if transition_frames > 0)."""
        if self.check_prompt is not None:
            self.check_prompt(prompt)
        self.prompts.change(prompt, self.clock)

    def set_schedule(self, text: str) -> None:
        """Replace the prompt schedule (times in seconds of the stream), e.g. edited between runs."""
        events = PromptTrack.from_text(text, self.config.fps).events
        if self.check_prompt is not None:
            for _, prompt in events:
                self.check_prompt(prompt)
        self.prompts.replace(events, self.clock)

    def set_guidance(self, cfg_scale: float, negative_prompt: str = "") -> None:
        """Change classifier-free guidance from the next network call on (the denoiser checks the negative prompt;
        a guidance-distilled causal family refuses cfg != 1)."""
        self.denoise.set_guidance(cfg_scale, negative_prompt)

    def set_runtime(self, attention: str | None = None, compile: bool | None = None) -> None:
        """Attention kernel and torch.compile for later network calls (a pipeline's per-stream settings)."""
        self.denoise.set_runtime(attention, compile)

    def set_transition(self, seconds: float) -> None:
        """Length of the blend between prompts for later prompt changes."""
        self.prompts.transition_frames = float(seconds) * self.config.fps

    # -- denoising -------------------------------------------------------------------------------
    def _velocity(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.before_call is not None:
            self.before_call()  # may raise (cancel): the buffer has not been touched yet
        weights = self.prompts.weights(self.clock)
        v = self.denoise(x, sigma, weights)
        self.calls += 1
        self._last_weights = weights
        return v

    def _noise(self, frames: int) -> torch.Tensor:
        c, h, w = self.latent_shape
        return torch.randn((c, frames, h, w), generator=self.generator).to(self.device, self.dtype)

    @property
    def _fresh(self):
        """The noise of the re-noising sampler (None: Euler steps)."""
        return self._noise if self.config.renoise else None

    def _commit(self) -> None:
        """Causal streams: the t = 0 pass that writes the last finished chunk into the KV cache. It runs
        when the next chunk starts, so the finished chunk decodes meanwhile (one call less before a frame)."""
        if self._uncommitted is None:
            return
        if self.before_call is not None:
            self.before_call()
        self.denoise.commit(self._uncommitted, self._uncommitted_weights)
        self.calls += 1
        self._uncommitted = None

    def _recache(self) -> None:
        """Families that re-cache on a prompt change (LongLive): when the prompt now differs from the one the
        cache was written under, re-run the cached frames at t = 0 under it before the next chunk."""
        cache = self.config.cache
        if cache is None or not cache.recache:
            return
        weights = self.prompts.weights(self.clock)
        if not self.denoise.stale(weights):
            return
        if self.before_call is not None:
            self.before_call()
        if self.denoise.recache(weights):
            self.calls += 1

    def _start(self) -> torch.Tensor:
        state = self.generator.get_state()
        try:
            return self._fill()
        except BaseException:
            self.generator.set_state(state)  # an interrupted start leaves the stream as new
            self.buffer.latents = None
            raise

    def _fill(self) -> torch.Tensor:
        """Fill the empty buffer; return the frames finished by the start (K reference frames, or none)."""
        noise = self._noise(self.partition.buffer_frames)  # one noise tensor for the whole buffer
        if self.config.cold_start == "uniform":
            return self.buffer.cold_start(noise, self._velocity, fresh=self._fresh,
                                          micro_steps=self.config.cold_micro_steps)
        if self.config.cold_start == "ramp":
            return self.buffer.ramp_start(noise[:, :self.partition.chunk_frames])
        return self.buffer.noise_start(noise)

    def next_latent_chunk(self) -> torch.Tensor | None:
        """Run network calls until the oldest chunk is clean; return it ([C, c, h, w]); None once the stream
        has ended (an edit whose source has no frames left; a generated stream never ends).

        The first call starts the buffer; with K reference frames it returns those K first frames.
        """
        if not self.buffer.started:
            first = self._start()
            if first.shape[1] > 0:
                self.latents_emitted += first.shape[1]
                return first
        self._commit()
        self._recache()
        while True:  # one period; more while a ramp start fills the buffer
            while not self.buffer.period_done:
                self.buffer.step(self._velocity, self._fresh)
            finished = self.buffer.move(self._noise(self.partition.chunk_frames))
            if finished.shape[1]:
                break
        if self.config.cache is not None:
            self._uncommitted, self._uncommitted_weights = finished, self._last_weights
        self.latents_emitted += finished.shape[1]
        return finished

    # -- frames ----------------------------------------------------------------------------------
    def frames(self, max_frames: int | None = None) -> Iterator[torch.Tensor]:
        """Yield decoded frames [t, H, W, 3] (float32, [0, 1], CPU) as chunks finish.

        Stops after max_frames (None: never). Frames decoded beyond that, or left when the caller stops
        early or a cancel interrupts, are kept and handed out first by the next call, so consecutive
        calls give exactly the frames of one uninterrupted call.
        """
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames={max_frames} must be >= 0 or None")
        remaining = max_frames
        pool = ThreadPoolExecutor(1, thread_name_prefix="streamdit-decode")
        try:
            while remaining is None or remaining > 0:
                if self.total_frames is not None and self.frames_emitted >= self.total_frames:
                    self.ended = True  # decoded frames past the end (a codec group's padding) are dropped
                    self._pending.clear()
                    break
                if self._pending:
                    left = None if self.total_frames is None else self.total_frames - self.frames_emitted
                    out = self._take(remaining if left is None else left if remaining is None else min(remaining, left))
                    self.frames_emitted += out.shape[0]
                    remaining = None if remaining is None else remaining - out.shape[0]
                    yield out
                    continue
                if self.ended and self._inflight is None:
                    break  # everything made is handed out
                covered = self._inflight is not None and remaining is not None and self._inflight[1] >= remaining
                nxt = None
                if not covered and not self.ended:
                    latent = self.next_latent_chunk()  # the previous chunk decodes meanwhile
                    if latent is None:
                        self.ended = True
                    else:
                        first = self.latents_emitted == latent.shape[1]
                        nxt = (pool.submit(self.decoder.decode, latent),
                               self.codec.video_frames(latent.shape[1], first))
                self._resolve()
                self._inflight = nxt
        finally:
            self._resolve()
            pool.shutdown(wait=True)

    def _resolve(self) -> None:
        if self._inflight is not None:
            fut, _ = self._inflight
            self._inflight = None
            out = fut.result()
            if out.shape[0]:
                self._pending.append(out)

    def _take(self, limit: int | None) -> torch.Tensor:
        out = self._pending.popleft()
        if limit is not None and out.shape[0] > limit:
            self._pending.appendleft(out[limit:])
            out = out[:limit]
        return out

    def take(self, frames: int) -> torch.Tensor:
        """Exactly `frames` frames as one tensor [frames, H, W, 3] (convenience for tests and batches)."""
        chunks = list(self.frames(frames))
        if not chunks:
            return torch.zeros((0, self.config.height, self.config.width, 3))
        return torch.cat(chunks)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically (plain tensors, numbers and strings)."""
        self._resolve()
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "buffer": self.buffer.state_dict(),
            "generator": self.generator.get_state(),
            "latents_emitted": self.latents_emitted,
            "frames_emitted": self.frames_emitted,
            "calls": self.calls,
            "prompts": self.prompts.state_dict(),
            "decoder": self.decoder.state_dict(),
            "pending": [f.clone() for f in self._pending],
            "uncommitted": None if self._uncommitted is None else self._uncommitted.detach().cpu().clone(),
            "uncommitted_weights": [list(w) for w in self._uncommitted_weights],
            "last_weights": [list(w) for w in self._last_weights],
            "denoiser": self.denoise.state_dict() if self.config.cache is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"stream state version {state.get('version')!r} is not {STATE_VERSION}; "
                             "it was saved by another release: start a new stream")
        mine, theirs = self.config.to_dict(), {"steps": None, "first_steps": None, "renoise": False, "cache": None,
                                               **state["config"]}
        for key in ("partition", "height", "width", "shift", "steps", "first_steps", "renoise", "cache"):
            if mine[key] != theirs[key]:
                raise ValueError(f"saved stream has {key}={theirs[key]}, this stream {mine[key]}; "
                                 "restore into a stream with the same settings")
        self.buffer.load_state_dict(state["buffer"], self.device)
        self.generator.set_state(state["generator"])
        self.latents_emitted = int(state["latents_emitted"])
        self.frames_emitted = int(state["frames_emitted"])
        self.calls = int(state["calls"])
        self.prompts = PromptTrack.from_state(state["prompts"])
        self.decoder.load_state_dict(state["decoder"])
        self._inflight = None
        self._pending = deque(f.clone() for f in state["pending"])
        unc = state.get("uncommitted")
        self._uncommitted = None if unc is None else unc.to(self.device, self.dtype)
        self._uncommitted_weights = tuple((str(p), float(w)) for p, w in state.get("uncommitted_weights", []))
        self._last_weights = tuple((str(p), float(w)) for p, w in state.get("last_weights", []))
        if self.config.cache is not None:
            self.denoise.load_state_dict(state["denoiser"])

    def save(self, path: str) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: str) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"stream state file {path} does not exist") from None
        except Exception as exc:
            raise ValueError(f"stream state file {path} is unreadable or corrupt ({type(exc).__name__}: {exc}); "
                             "start a new stream") from exc
        self.load_state_dict(state)
