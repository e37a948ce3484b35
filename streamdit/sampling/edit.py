"""Video-to-video editing inside the moving buffer (SDEdit in the stream).

Every buffer frame carries its source latent z and its own noise eps (drawn once, when it enters).
While a frame's progress time u is above the edit level u_e (= strength), it is not denoised: it is
held on the forward process x_u = (1 - sigma(u)) z + sigma(u) eps, exactly the noisy data the model was
trained on, so those frames are lookahead context. From u_e down to 0 the model denoises it under the
prompt, as in generation. The edit level lives on the partition's u grid (steps of 1/(s N)): the
distilled student (s = 1) edits at multiples of 1/N, the teacher at multiples of 1/(s N).

Latency. With lookahead (files, frame lists) a chunk's source frames are read when it enters the
buffer, so the output trails the source by the whole buffer (N c frames). Live sources are read as
late as possible: a chunk gets its real frames when it reaches the band holding u_e (chunk
k_e = ceil(u_e N)); until then it holds the latest frame as a stand-in. The delay from a frame
arriving to its edited version is then (k_e + 1) c frames, about strength x buffer (the + 1: decoding
of a chunk overlaps the network calls of the next).

Noise. Each frame draws its own eps, as in training (noise shared across frames would be out of
distribution). The background stays because, at a moderate strength, the low frequencies of every
frame survive in x_{u_e}, and all frames start from their own source.
"""
from __future__ import annotations

import math

import torch

from .sources import FrameSource
from .stream import Stream

# The edit strength when none is given: chosen on the dev set's pig sources for the embedded model
# (docs/editing.md): with no negative prompt and one network pass per call it is the only setting that
# changes the animal and keeps the background and the motion; halfway between two levels of a coarser grid
# it takes the lower one (0.75 on a 4-step causal model's list).
DEFAULT_STRENGTH = 0.875


class EditStream(Stream):
    """A Stream whose frames are the source frames edited toward the prompt. Length = the source's."""

    def __init__(self, denoise, codec, config, prompts, source: FrameSource, strength: float, *,
                 lookahead: bool | None = None, device="cpu", dtype=torch.float32):
        super().__init__(denoise, codec, config, prompts, device=device, dtype=dtype)
        p = self.partition
        if p.ref_frames:
            raise ValueError(f"editing needs a partition without reference frames (K=0); this one has "
                             f"K={p.ref_frames}: set ref_frames to 0")
        if config.first_steps is not None:
            raise ValueError("editing cannot use a family whose first chunk has a step list of its own (the 1- and "
                             "2-step Causal Forcing++ models): edit with the family's 4-step model")
        if not 0 <= strength <= 1:
            raise ValueError(f"strength={strength} must be in [0, 1]: 0.3 keeps most of the source, 1 ignores it "
                             "(0 gives the source back through the codec)")
        self.levels = p.micro_steps * p.chunks  # grid levels of u: u = m / levels
        # the nearest level; halfway between two, the lower one (keeps more of the source)
        self.edit_m = min(self.levels, max(1 if strength > 0 else 0, math.ceil(strength * self.levels - 0.5 - 1e-9)))
        self.strength = self.edit_m / self.levels  # what is used: strength rounded onto the u grid
        self.lookahead = (not source.live) if lookahead is None else lookahead
        k_e = math.ceil(self.edit_m / p.micro_steps)
        self.pull_chunk = p.chunks if self.lookahead else max(1, k_e)  # the chunk that reads real frames
        self.source = source
        source.target = (config.height, config.width)
        self._frames = iter(source)
        self._encoder = codec.stream_encoder()
        self._latents: list[torch.Tensor] = []  # encoded source latents [C, 1, h, w] not yet in the buffer
        self._last: torch.Tensor | None = None  # the newest real source latent (stand-in for future frames)
        self._last_frame: torch.Tensor | None = None  # the newest source frame (end padding repeats it)
        self.source_frames = 0  # source frames read so far
        self.padded_frames = 0  # frames appended after the source's last one to complete the codec's last group
        self.source_done = False
        self.z = self.eps = self.real = None  # per buffer frame: source latent, noise, is a real source frame

    def allowed_strengths(self) -> list[float]:
        """The strengths this stream can edit at: the levels of its u grid (a causal family: the entry points of
        its step list, strength m/s entering at the list's m-th noise level from clean)."""
        return [m / self.levels for m in range(self.levels + 1)]

    @property
    def latency_frames(self) -> int:
        """Source frames read beyond a frame before its edited version is handed out: the chunks down to
        the one that reads the source, plus one chunk because decoding overlaps the next network calls."""
        return (self.pull_chunk + 1) * self.partition.chunk_frames * self.codec.temporal_factor

    # -- the source --------------------------------------------------------------------------------
    def _pull(self, n: int) -> tuple[torch.Tensor, int]:
        """n source latents [C, n, h, w] and how many are real (the rest repeat the last real one)."""
        while len(self._latents) < n and not self.source_done:
            try:
                frames = next(self._frames)
            except StopIteration:
                self._end_of_source()
                break
            self.source_frames += frames.shape[0]
            self._last_frame = frames[-1:]
            self._encode(frames)
        real = min(n, len(self._latents))
        taken, self._latents = self._latents[:real], self._latents[real:]
        if taken:
            self._last = taken[-1]
        if self._last is None:
            raise ValueError(f"{self.source.name}: there are no source frames")
        return torch.cat(taken + [self._last] * (n - real), dim=1), real

    def _encode(self, frames: torch.Tensor) -> None:
        z = self._encoder.encode(frames.to(self.device)).to(self.device, self.dtype)
        if z.shape[1]:  # a codec that packs frames in groups gives nothing until a group is complete
            self._latents += list(z.split(1, dim=1))

    def _end_of_source(self) -> None:
        """A codec that packs frames in groups (the Wan VAE: frame 0, then fours) gets the last group completed by
        repeating the last frame; the decoded extra frames are trimmed: the output has the source's length."""
        self.source_done = True
        self.padded_frames = self.codec.end_padding(self.source_frames) if self.source_frames else 0
        if self.padded_frames:
            self._encode(self._last_frame.expand(self.padded_frames, -1, -1, -1))
        self.total_frames = self.source_frames

    def _standin(self, n: int) -> torch.Tensor:
        return self._last.expand(-1, n, -1, -1).clone()

    # -- noise levels ------------------------------------------------------------------------------
    def _frame_levels(self, micro: int) -> torch.Tensor:
        """Grid index m (u = m / (s N)) of every buffer frame at micro step j."""
        return (self.partition.frame_u(micro) * self.levels).round().long()

    def _forward(self, idx: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """x_u = (1 - sigma) z + sigma eps for buffer frames idx at grid levels m."""
        sigma = self.buffer.schedule.sigmas(m.double() / self.levels).to(self.z.device, self.dtype).view(1, -1, 1, 1)
        return (1 - sigma) * self.z[:, idx] + sigma * self.eps[:, idx]

    def _hold(self) -> None:
        """Put every frame at or above the edit level back on its forward process."""
        m = self._frame_levels(self.buffer.micro)
        idx = (m >= self.edit_m).nonzero().flatten()
        if idx.numel():
            lat = self.buffer.latents.clone()
            lat[:, idx] = self._forward(idx, m[idx])
            self.buffer.latents = lat

    # -- the buffer --------------------------------------------------------------------------------
    def _fill(self) -> torch.Tensor:
        """The cold start from the source noised to the edit level, down to 1/N like a generated stream's."""
        p = self.partition
        c, n = p.chunk_frames, p.chunks
        z, real = self._pull(self.pull_chunk * c)
        self.z = torch.cat([z, self._standin((n - self.pull_chunk) * c)], dim=1)
        self.real = torch.zeros(n * c, dtype=torch.bool)
        self.real[:real] = True
        self.eps = self._noise(n * c)
        every = torch.arange(n * c)
        x = self._forward(every, torch.full((n * c,), self.edit_m))
        self.buffer.cold_start(x, self._velocity, level=self.edit_m, micro_steps=self.config.cold_micro_steps)
        self._hold()  # chunks above the edit level start on their forward process at their band top
        return x[:, :0]

    def next_latent_chunk(self) -> torch.Tensor | None:
        if not self.buffer.started:
            self._start()
        if not bool(self.real.any()):
            return None  # every source frame has been emitted
        if self.edit_m == 0:  # strength 0: every frame stays its source latent; no network call
            self.buffer.micro = self.buffer.micro_steps
            self._hold()
        else:
            self._commit()  # causal families: the last finished chunk into the KV cache
            self._recache()
            if self.partition.chunks == 1:  # one chunk: the steps above the edit level would all be held anyway
                self.buffer.micro = self.levels - self.edit_m
                self._hold()
        while not self.buffer.period_done:
            self.buffer.step(self._velocity, self._fresh)
            self._hold()
        p = self.partition
        c = p.chunk_frames
        eps = self._noise(c)
        finished = self.buffer.move(eps)  # the new chunk enters at u = 1, where x = eps
        emit = int(self.real[:c].sum())
        if self.config.cache is not None and self.edit_m > 0:
            self._uncommitted, self._uncommitted_weights = finished, self._last_weights
        self.eps = torch.cat([self.eps[:, c:], eps], dim=1)
        self.z = torch.cat([self.z[:, c:], self._standin(c)], dim=1)
        self.real = torch.cat([self.real[c:], torch.zeros(c, dtype=torch.bool)])
        lo = (self.pull_chunk - 1) * c
        z, real = self._pull(c)
        self.z[:, lo:lo + c] = z
        self.real[lo:lo + real] = True
        self.z[:, lo + c:] = self._standin(self.z.shape[1] - lo - c)
        self._hold()  # chunks that just got real frames (or new stand-ins) move onto them
        self.latents_emitted += emit
        return finished[:, :emit]

    def state_dict(self) -> dict:
        raise NotImplementedError("an edit stream cannot be saved: its source (a file or a live feed) is not "
                                  "part of the state; restart the edit instead")
