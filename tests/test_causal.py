"""Causal streaming with a KV cache, proven exact against one full-sequence forward of the plain network.

Each network call of a cached stream must equal the plain network run once over the whole history (the
finished frames at t = 0, then the frames being denoised) with an additive mask built here by index
arithmetic: a query frame sees the sink and the frames that were inside its window when it ran, and,
inside the buffer, its own chunk and older ones. Float64 (but Wan's float32 head), tiny config; rolling,
sinks and a RoPE table much shorter than the stream all covered.
"""
import pytest
import torch

from streamdit.codecs import PatchCodec
from streamdit.network.config import ModelConfig
from streamdit.network.model import WanDiT, rope_table
from streamdit.network.text import hashed_text_encoder
from streamdit.sampling.causal import CacheSpec, CausalDenoiser
from streamdit.sampling.denoiser import EmbeddingCache
from streamdit.sampling.families import FAMILIES, get_family
from streamdit.sampling.partition import Partition
from streamdit.sampling.stream import Stream, StreamConfig

CFG = ModelConfig(dim=16, ffn_dim=32, num_heads=2, num_layers=2, in_dim=3, out_dim=3, text_dim=8, text_len=4,
                  freq_dim=8)
SIZE = 4  # frames 4x4 (patch codec p = 1), latent 4x4, tokens 2x2 per frame
FRAME_TOKENS = 4

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(dtype=torch.float64, seed=0) -> WanDiT:
    torch.manual_seed(seed)
    model = WanDiT(CFG).to(dtype).eval()
    with torch.no_grad():  # Wan zero-initialises the head: give it weights so outputs depend on everything
        model.head.head.weight.normal_(0, 0.2)
    return model


class Recording(CausalDenoiser):
    """The real cached denoiser, logging each call's inputs and outputs for the reference."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.log = []

    def __call__(self, x, sigma, weights):
        seen = self.cache.frames_seen if self.cache is not None else 0
        v = super().__call__(x, sigma, weights)
        self.log.append(("denoise", x.clone(), self.timesteps(sigma), v.clone(), seen))
        return v

    def commit(self, x0, weights):
        self.log.append(("commit", x0.clone(), None, None, self.cache.frames_seen if self.cache else 0))
        super().commit(x0, weights)

    def recache(self, weights):
        seen = self.cache.frames_seen if self.cache else 0
        keep = seen >= self.spec.window and self.cache.sink_used == self.spec.sink
        frames = self.spec.window - self.spec.sink if keep else seen
        self.log.append(("recache", self.history[:, -frames:].clone(), self._zero_t(frames), tuple(weights), seen))
        return super().recache(weights)


def open_stream(model, partition, spec, family="self-forcing", seed=3, dtype=torch.float64, cls=Recording):
    f = get_family(family)
    steps = f.schedule() if partition.micro_steps == f.steps else None
    config = StreamConfig(partition=partition, height=SIZE, width=SIZE, shift=f.shift, seed=seed, steps=steps,
                          renoise=True, cache=spec)
    text = EmbeddingCache(hashed_text_encoder(CFG.text_dim, CFG.text_len))
    denoise = cls(model, text, spec, partition, config.schedule.timesteps, dtype)
    return Stream(denoise, PatchCodec(1), config, "a cat walking", dtype=dtype)


def visible(frames: int, finished: int, partition: Partition, spec: CacheSpec) -> torch.Tensor:
    """bool [frames, frames]: may query frame q attend to key frame k? From the definitions, not the cache."""
    c, rolling = partition.chunk_frames, spec.rolling_frames(partition)
    out = torch.zeros(frames, frames, dtype=torch.bool)
    for q in range(frames):
        if q < finished:  # a finished frame, as its cache pass saw the past
            start = q // c * c
            end, boundary = start + c, start
        else:  # a buffer frame: its chunk and older ones; the cache as it is now
            j = (q - finished) // c
            end = finished + (partition.stream_frames if spec.buffer_mask == "none" else (j + 1) * c)
            boundary = finished
        for k in range(frames):
            out[q, k] = k < end and (k < spec.sink or k >= boundary - rolling)
    return out


def reference_at(model, frames: list, context: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """The plain network over frames given one by one as (latent [C, h, w], t, RoPE position): an anchor that
    sits at another position than its own needs positions that are not 0..F-1."""
    xs = torch.stack([f[0] for f in frames], dim=1)
    t = torch.tensor([float(f[1]) for f in frames], dtype=torch.float64)
    per_frame = [rope_table((1, SIZE // 2, SIZE // 2), CFG.head_dim, torch.device("cpu"), int(f[2]), torch.float64)
                 for f in frames]
    rope = (torch.cat([r[0] for r in per_frame]), torch.cat([r[1] for r in per_frame]))
    additive = torch.zeros(vis.shape, dtype=torch.float64).masked_fill(~vis, float("-inf"))
    mask = additive.repeat_interleave(FRAME_TOKENS, 0).repeat_interleave(FRAME_TOKENS, 1)
    ctx = [model.embed_text(context)] * len(model.blocks)
    with torch.no_grad():
        return model._run(xs[None], t[None].float(), ctx, rope, [mask] * len(model.blocks), (len(frames), 2, 2),
                          model.attention_backend)[0]


def check_against_reference(model, stream, partition, spec, atol=1e-6) -> int:
    context = stream.denoise.text.get("a cat walking").double()[None]
    finished, checked = [], 0
    for kind, x, t, v, seen in stream.denoise.log:
        if kind == "commit":
            finished.append(x)
            continue
        assert seen == sum(f.shape[1] for f in finished)
        history = torch.cat(finished + [x], dim=1) if finished else x
        times = torch.cat([torch.zeros(seen), t.double()])
        frames = [(history[:, i], times[i], i) for i in range(history.shape[1])]  # positions from the start
        ref = reference_at(model, frames, context, visible(history.shape[1], seen, partition, spec))
        # float64 everywhere but Wan's float32 islands (time embedding, norms, head): summing the cache in ring
        # order instead of sequence order moves the float32 head's rounding by ~6e-8
        torch.testing.assert_close(v, ref[:, seen:], rtol=0, atol=atol)
        checked += 1
    return checked


def stop_inside(stream, calls: int) -> None:
    """Run the next chunk and cancel it (as ComfyUI's cancel does) before network call number calls + 1."""
    count = {"n": 0}

    def hook():
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt

    stream.before_call = hook
    with pytest.raises(KeyboardInterrupt):
        stream.next_latent_chunk()
    stream.before_call = None


CASES = {  # name: (chunks N, chunk frames c, micro steps s, window W, sink S, rope limit, latent chunks to run)
    "c3-roll": (1, 3, 4, 9, 0, 1024, 6),
    "c1-roll": (1, 1, 4, 5, 0, 1024, 12),
    "c3-sink-roll": (1, 3, 4, 12, 3, 1024, 8),
    "c1-sink-past-rope-table": (1, 1, 4, 6, 2, 8, 20),
    "c3-past-rope-table": (1, 3, 4, 9, 0, 10, 10),
    "buffer-N2-block-causal": (2, 2, 2, 10, 2, 12, 9),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cached_stream_equals_masked_full_sequence_forward(case):
    n, c, s, w, sink, limit, chunks = CASES[case]
    partition = Partition(chunks=n, chunk_frames=c, micro_steps=s)
    spec = CacheSpec(window=w, sink=sink, rope_limit=limit)
    model = tiny_model()
    stream = open_stream(model, partition, spec)
    for _ in range(chunks):
        stream.next_latent_chunk()
    checked = check_against_reference(model, stream, partition, spec)
    cache = stream.denoise.cache
    assert checked == len([e for e in stream.denoise.log if e[0] == "denoise"]) >= chunks
    assert cache.frames_seen > sink + spec.rolling_frames(partition)  # the window rolled
    if limit < 1024:
        assert cache.offset > 0 and cache.position + partition.stream_frames <= limit  # re-based past the table


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", ["c3-sink-roll", "c1-sink-past-rope-table", "buffer-N2-block-causal"])
def test_cached_stream_on_cuda_equals_the_reference(case):
    """The same exactness on the GPU (float64 kernels there; the reference runs on the CPU)."""
    n, c, s, w, sink, limit, chunks = CASES[case]
    partition = Partition(chunks=n, chunk_frames=c, micro_steps=s)
    spec = CacheSpec(window=w, sink=sink, rope_limit=limit)
    model = tiny_model()
    stream = open_stream(model.to("cuda"), partition, spec)
    stream.device = torch.device("cuda")
    for _ in range(chunks):
        stream.next_latent_chunk()
    stream.denoise.log = [tuple(t.cpu() if torch.is_tensor(t) else t for t in e) for e in stream.denoise.log]
    # float32 islands on another device's kernels (cuBLAS vs CPU) add ~1e-7 relative
    assert check_against_reference(model.cpu(), stream, partition, spec, atol=1e-5) >= chunks


def test_reference_mask_is_not_vacuous():
    """The check above fails when the stream attends to a frame the window had dropped (a longer window)."""
    partition = Partition(chunks=1, chunk_frames=1, micro_steps=4)
    model = tiny_model()
    stream = open_stream(model, partition, CacheSpec(window=7))
    for _ in range(10):
        stream.next_latent_chunk()
    with pytest.raises(AssertionError):
        check_against_reference(model, stream, partition, CacheSpec(window=5))


def test_family_sampler_timesteps_fresh_noise_and_cache_pass():
    """Self-Forcing's literal timesteps, x0 re-noised with fresh noise from the stream's generator, and the
    t = 0 pass of each finished chunk (run when the next chunk starts)."""
    f = FAMILIES["self-forcing"]
    model = tiny_model()
    stream = open_stream(model, f.partition(), f.cache(window=9), seed=11)
    chunks = [stream.next_latent_chunk() for _ in range(3)]
    log = stream.denoise.log
    kinds = [e[0] for e in log]
    assert kinds == ["denoise"] * 4 + (["commit"] + ["denoise"] * 4) * 2
    seen_t = [e[2].unique().tolist() for e in log if e[0] == "denoise"]
    assert seen_t[:4] == [[1000.0], [937.5], [pytest.approx(833.3333, abs=1e-3)], [625.0]] and seen_t[4:8] == seen_t[:4]
    # the commit pass: each finished chunk's x0 at t = 0, in order
    commits = [e[1] for e in log if e[0] == "commit"]
    for x0, chunk in zip(commits, chunks):
        torch.testing.assert_close(x0, chunk, rtol=0, atol=0)
    # fresh noise: replay the stream's generator (first chunk, then three re-noisings, then the next chunk's noise)
    g = torch.Generator().manual_seed(11)
    draw = lambda: torch.randn((3, 3, SIZE, SIZE), generator=g).double()  # noqa: E731
    x = draw()
    sigmas = [s for s in reversed(f.schedule().table)]  # 1 ... 0
    den = [e for e in log if e[0] == "denoise"]
    for chunk_index in range(3):
        for j in range(4):
            _, xin, _, v, _ = den[4 * chunk_index + j]
            torch.testing.assert_close(xin, x, rtol=0, atol=0)
            x0 = xin - sigmas[j] * v.double()
            if j < 3:
                eps = draw()
                x = (1 - sigmas[j + 1]) * x0 + sigmas[j + 1] * eps
                predicted = xin + (1 - sigmas[j]) * v.double()  # Euler's (DDIM) noise: must not be what was used
                assert (eps - predicted).abs().max() > 0.1
        torch.testing.assert_close(chunks[chunk_index], x0, rtol=0, atol=1e-12)
        x = draw()


@pytest.mark.parametrize("name", [f.name for f in FAMILIES.values() if f.causal and f.chunks == 1])
def test_every_family_runs_its_literal_steps_then_the_cache_pass(name):
    """Two chunks of each family through a recording of the real denoiser: the network's timesteps, in order."""
    f = FAMILIES[name]
    config = StreamConfig(partition=f.partition(), height=SIZE, width=SIZE, shift=f.shift, steps=f.schedule(),
                          first_steps=f.first_schedule(), renoise=True, cache=f.cache())
    denoise = Recording(tiny_model(), EmbeddingCache(hashed_text_encoder(CFG.text_dim, CFG.text_len)), config.cache,
                        config.partition, config.schedule.timesteps, torch.float64)
    stream = Stream(denoise, PatchCodec(1), config, "a cat", dtype=torch.float64)
    stream.next_latent_chunk()
    stream.next_latent_chunk()
    seen = [e[2].unique().tolist() if e[0] == "denoise" else "commit" for e in denoise.log]
    first = [1000 * s for s in f.first_sigmas] or list(f.times)
    expected = [[pytest.approx(t, abs=1e-4)] for t in first] + ["commit"] + [[pytest.approx(t, abs=1e-4)]
                                                                             for t in f.times]
    assert seen == expected
    listed = {"self-forcing": [1000, 937.5, 833.3333, 625], "causvid": [1000, 757, 522],
              "causal-forcing": [1000, 937.5, 833.3333, 625], "causal-forcing-frame": [1000, 937.5, 833.3333, 625],
              "causal-forcing-frame-2step": [1000, 833.3333], "causal-forcing-frame-1step": [1000],
              "longlive": [1000, 937.5, 833.3333, 625]}[name]
    assert list(f.times) == pytest.approx(listed, abs=1e-4)


def test_causvid_uses_its_listed_timesteps_with_the_scheduler_sigmas():
    f = FAMILIES["causvid"]
    assert f.times == (1000.0, 757.0, 522.0) and f.shift == 8.0
    assert f.sigmas[1] == pytest.approx(0.756757, abs=1e-6) and f.sigmas[2] == pytest.approx(0.521739, abs=1e-6)
    model = tiny_model()
    stream = open_stream(model, f.partition(), f.cache(window=9), family="causvid")
    stream.next_latent_chunk()
    assert [e[2].unique().tolist() for e in stream.denoise.log] == [[1000.0], [757.0], [522.0]]


@pytest.mark.parametrize("family,later", [("causal-forcing-frame-2step", [1000.0, 833.3333]),
                                          ("causal-forcing-frame-1step", [1000.0])])
def test_causal_forcing_plus_plus_first_frame_has_its_own_steps(family, later, tmp_path):
    """Causal Forcing++: the stream's first chunk (one frame) in the 4-step list, every later one in 2 or 1."""
    f = FAMILIES[family]
    config = StreamConfig(partition=f.partition(), height=SIZE, width=SIZE, shift=f.shift, seed=2, steps=f.schedule(),
                          first_steps=f.first_schedule(), renoise=True, cache=f.cache(window=6))
    model = tiny_model()
    denoise = Recording(model, EmbeddingCache(hashed_text_encoder(CFG.text_dim, CFG.text_len)), config.cache,
                        config.partition, config.schedule.timesteps, torch.float64)
    stream = Stream(denoise, PatchCodec(1), config, "a cat walking", dtype=torch.float64)
    stream.next_latent_chunk()
    stop_inside(stream, calls=1)  # the second chunk after its cache pass: save there, restore, go on
    stream.save(str(tmp_path / "s.pt"))
    for _ in range(2):
        stream.next_latent_chunk()
    seen = [[round(x, 4) for x in e[2].unique().tolist()] if e[0] == "denoise" else "commit" for e in denoise.log]
    four = [[1000.0], [937.5], [833.3333], [625.0]]
    assert seen == four + ["commit", [later[0]]] + [[t] for t in later[1:]] + ["commit"] + [[t] for t in later]
    assert check_against_reference(model, stream, f.partition(), config.cache) == 4 + 2 * len(later)
    again = Stream(CausalDenoiser(model, denoise.text, config.cache, config.partition, config.schedule.timesteps,
                                  torch.float64), PatchCodec(1), config, "a cat walking", dtype=torch.float64)
    again.load(str(tmp_path / "s.pt"))
    assert not again.buffer.first_pending
    torch.testing.assert_close(again.next_latent_chunk(), [e for e in denoise.log if e[0] == "commit"][1][1])


def test_memory_is_flat_for_any_length():
    """The stream's tensors (cache, buffer) after 2,000 latent frames take the bytes they took after 200."""
    torch.manual_seed(0)
    cfg = ModelConfig(dim=8, ffn_dim=8, num_heads=1, num_layers=1, in_dim=3, out_dim=3, text_dim=8, text_len=4,
                      freq_dim=8)
    model = WanDiT(cfg).eval()
    f = FAMILIES["self-forcing"]
    spec = f.cache(window=21)
    config = StreamConfig(partition=f.partition(), height=4, width=4, shift=f.shift, steps=f.schedule(),
                          renoise=True, cache=CacheSpec(window=21, rope_limit=64))
    denoise = CausalDenoiser(model, EmbeddingCache(hashed_text_encoder(8, 4)), config.cache, config.partition,
                             config.schedule.timesteps)
    stream = Stream(denoise, PatchCodec(1), config, "a cat")
    assert spec.window == 21

    def tensor_bytes():
        st = stream.state_dict()
        cache = denoise.cache
        return (cache.nbytes, stream.buffer.latents.numel(), sum(t.numel() for t in st["denoiser"]["cache"]["k"]))

    while stream.latents_emitted < 200:
        stream.next_latent_chunk()
    at_200 = tensor_bytes()
    while stream.latents_emitted < 2000:
        stream.next_latent_chunk()
    assert tensor_bytes() == at_200
    assert denoise.cache.offset > 0  # passed the (small) RoPE table many times


def test_save_restore_mid_stream_continues_bit_identically(tmp_path):
    f = FAMILIES["self-forcing"]
    spec = CacheSpec(window=9, sink=3, rope_limit=12)
    model = tiny_model(torch.float32)
    a = open_stream(model, f.partition(), spec, dtype=torch.float32, cls=CausalDenoiser)
    for _ in range(5):
        a.next_latent_chunk()
    stop_inside(a, calls=3)  # mid-chunk too: the cache pass and two steps done
    a.save(str(tmp_path / "state.pt"))
    b = open_stream(model, f.partition(), spec, dtype=torch.float32, cls=CausalDenoiser)
    b.load(str(tmp_path / "state.pt"))
    for _ in range(6):
        torch.testing.assert_close(a.next_latent_chunk(), b.next_latent_chunk(), rtol=0, atol=0)
    assert b.denoise.cache.offset > 0


def test_interrupt_leaves_a_valid_state():
    """A cancel (before_call raising) at any call leaves a stream that continues exactly as if never stopped."""
    f = FAMILIES["self-forcing"]
    spec = CacheSpec(window=6)
    model = tiny_model(torch.float32)
    ref = open_stream(model, f.partition(), spec, dtype=torch.float32, cls=CausalDenoiser)
    expected = [ref.next_latent_chunk() for _ in range(4)]
    st = open_stream(model, f.partition(), spec, dtype=torch.float32, cls=CausalDenoiser)
    calls = {"n": 0}

    def cancel_every_third():
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise KeyboardInterrupt

    st.before_call = cancel_every_third
    got = []
    while len(got) < 4:
        try:
            got.append(st.next_latent_chunk())
        except KeyboardInterrupt:
            pass
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_cache_settings_that_cannot_work_are_refused():
    p = Partition(chunks=1, chunk_frames=3, micro_steps=4)
    with pytest.raises(ValueError, match="at least 6"):
        CacheSpec(window=5, sink=3).rolling_frames(p)
    with pytest.raises(ValueError, match="reference frames"):
        CacheSpec(window=9).rolling_frames(Partition(chunks=1, chunk_frames=3, micro_steps=4, ref_frames=2))
    with pytest.raises(ValueError, match="rope_limit"):
        CacheSpec(window=30, rope_limit=21)
    with pytest.raises(ValueError, match="buffer_mask"):
        CacheSpec(window=9, buffer_mask="diagonal")


# -- Rolling Forcing: a window of 5 chunks at 5 levels, an anchor placed before the cached frames ---------------

def family_stream(name: str, seed: int = 5, prompt: str = "a cat walking", recache: bool | None = None, **cache):
    f = FAMILIES[name]
    spec = f.cache(**cache)
    if recache is not None:
        spec = CacheSpec(**{**spec.to_dict(), "recache": recache})
    config = StreamConfig(partition=f.partition(), height=SIZE, width=SIZE, shift=f.shift, seed=seed,
                          steps=f.schedule(), first_steps=f.first_schedule(), renoise=True, cache=spec,
                          cold_start=f.cold_start)
    model = tiny_model()
    denoise = Recording(model, EmbeddingCache(hashed_text_encoder(CFG.text_dim, CFG.text_len)), config.cache,
                        config.partition, config.schedule.timesteps, torch.float64)
    return model, Stream(denoise, PatchCodec(1), config, prompt, dtype=torch.float64)


def rolling_forcing_reference(model, stream, context) -> int:
    """Every window call against the plain network: the anchor (the first chunk, seen by itself) sits just
    before the newest R finished frames; each finished frame was cached seeing the last commit_window
    finished frames (its own chunk included) at their own positions; the window sees itself whole."""
    spec, p = stream.config.cache, stream.config.partition
    c, sink, rolling, reach = p.chunk_frames, spec.sink, spec.rolling_frames(p), spec.commit_window
    finished, checked = [], 0
    for kind, x, t, v, seen in stream.denoise.log:
        if kind == "commit":
            finished += list(x.unbind(1))
            continue
        anchor = sink if seen >= sink else 0
        r = min(rolling, seen - sink) if anchor else 0
        frames = [(finished[i], 0, seen - r - anchor + i, "anchor", i) for i in range(anchor)]
        frames += [(finished[i], 0, i, "done", i) for i in range(seen)]
        frames += [(x[:, j], t[j], seen + j, "window", seen + j) for j in range(x.shape[1])]
        vis = torch.zeros(len(frames), len(frames), dtype=torch.bool)
        for a, (_, _, _, qk, qi) in enumerate(frames):
            for b, (_, _, _, kk, ki) in enumerate(frames):
                if qk == "anchor":
                    vis[a, b] = kk == "anchor"
                elif qk == "done":
                    end = (qi // c + 1) * c
                    vis[a, b] = kk == "done" and end - reach <= ki < end
                else:
                    vis[a, b] = kk == "anchor" or kk == "window" or (kk == "done" and ki >= seen - r)
        ref = reference_at(model, frames, context, vis)
        torch.testing.assert_close(v, ref[:, -x.shape[1]:], rtol=0, atol=1e-6)
        checked += 1
    return checked


@pytest.mark.parametrize("limit", [1024, 40])
def test_rolling_forcing_equals_the_reference(limit):
    model, stream = family_stream("rolling-forcing")
    if limit != 1024:  # past a short RoPE table too (the anchor is re-positioned, the rest re-based)
        model, stream = family_stream("rolling-forcing")
        stream.config = stream.config.__class__(**{**stream.config.__dict__,
                                                   "cache": CacheSpec(**{**stream.config.cache.to_dict(),
                                                                         "rope_limit": limit})})
        stream.denoise.spec = stream.config.cache
    chunks = 12
    for _ in range(chunks):
        stream.next_latent_chunk()
    log = stream.denoise.log
    windows = [e[1].shape[1] for e in log if e[0] == "denoise"]
    assert windows[:5] == [3, 6, 9, 12, 15] and set(windows[5:]) == {15}  # the ramp, then the full window
    levels = [e[2].tolist() for e in log if e[0] == "denoise"]
    assert levels[0] == [1000.0] * 3 and levels[1] == pytest.approx([952.381] * 3 + [1000.0] * 3, abs=1e-3)
    assert levels[5] == pytest.approx(sum([[t] * 3 for t in (555.556, 769.231, 882.353, 952.381, 1000.0)], []),
                                      abs=1e-3)
    context = stream.denoise.text.get("a cat walking").double()[None]
    assert rolling_forcing_reference(model, stream, context) == len(windows) == 4 + chunks
    cache = stream.denoise.cache
    assert cache.frames_seen == 3 * (chunks - 1) and cache.ring_used == 18  # the cache pass reaches 21 frames back
    if limit != 1024:
        assert cache.offset > 0


# -- LongLive: a 12-frame window with a 3-frame sink, re-caching on prompt changes ------------------------------

def longlive_reference(model, stream, context, log, recached: tuple[int, int] | None, keep_sink: bool) -> int:
    """Calls after a re-cache of finished frames [lo, hi): those were cached again attending to each other
    (and to the sink when it is kept); the rest as in Self-Forcing (sink + the newest R, own chunk)."""
    spec, p, sink = stream.config.cache, stream.config.partition, stream.config.cache.sink
    finished, checked = [], 0
    for kind, x, t, v, seen in log:
        if kind == "commit":
            finished += list(x.unbind(1))
            continue
        if kind == "recache":
            continue
        frames = [(finished[i], 0, i) for i in range(seen)] + [(x[:, j], t[j], seen + j) for j in range(x.shape[1])]
        n = len(frames)
        vis = visible(n, seen, p, spec)
        if recached:
            for q in range(*recached):
                vis[q] = torch.tensor([recached[0] <= k < recached[1] or (keep_sink and k < sink) for k in range(n)])
        ref = reference_at(model, frames, context, vis)
        torch.testing.assert_close(v, ref[:, seen:], rtol=0, atol=1e-6)
        checked += 1
    return checked


@pytest.mark.parametrize("name,window,finished_chunks",
                         [("longlive", None, 2), ("longlive", None, 6), ("self-forcing", 9, 1), ("self-forcing", 9, 4)])
def test_recache_equals_the_reference(name, window, finished_chunks):
    """A re-cache (forced here under the same prompt, so one reference covers every frame): with fewer than a
    window of frames everything is cached again, sink included; later the sink keeps its keys and only the
    window after it is re-run. LongLive's own, and Self-Forcing with re-caching switched on."""
    model, stream = family_stream(name, recache=True, window=window)
    spec = stream.config.cache
    for _ in range(finished_chunks + 1):
        stream.next_latent_chunk()
    stream._commit()
    seen = stream.denoise.cache.frames_seen
    assert seen == 3 * (finished_chunks + 1)
    context = stream.denoise.text.get("a cat walking").double()[None]
    before = len(stream.denoise.log)
    assert longlive_reference(model, stream, context, stream.denoise.log, None, False) > 0
    weights = stream.prompts.weights(stream.clock)
    assert stream.denoise.recache(weights)
    keep_sink = seen >= spec.window
    lo = seen - (spec.window - spec.sink) if keep_sink else 0
    for _ in range(3):
        stream.next_latent_chunk()
    log = stream.denoise.log[:before] + stream.denoise.log[before:]
    # calls after the re-cache, against a history whose frames [lo, seen) were re-cached
    after = [e for e in stream.denoise.log[:before] if e[0] == "commit"] + stream.denoise.log[before:]
    checked = longlive_reference(model, stream, context, after, (lo, seen), keep_sink)
    assert checked == 12 and len(log) > before


def test_a_prompt_change_recaches_under_the_new_prompt_and_keeps_emitted_frames():
    _, a = family_stream("longlive", prompt="0s: a cat walking\n0.75s: a dog jumping")  # at 12 frames (16 fps)
    _, b = family_stream("longlive", prompt="a cat walking")
    frames_a = [a.next_latent_chunk() for _ in range(8)]
    frames_b = [b.next_latent_chunk() for _ in range(8)]
    # every chunk before the change is the same latent for latent
    switch = next(i for i, e in enumerate(a.denoise.log) if e[0] == "recache")
    done_before = sum(1 for e in a.denoise.log[:switch] if e[0] == "commit")
    assert done_before >= 3
    for x, y in zip(frames_a[:done_before], frames_b[:done_before]):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    kinds = [e[0] for e in a.denoise.log]
    assert kinds.count("recache") == 1 and "recache" not in [e[0] for e in b.denoise.log]
    _, x, t, weights, seen = a.denoise.log[switch]
    assert weights == (("a dog jumping", 1.0),) and bool((t == 0).all())
    assert x.shape[1] == min(seen, 9)  # the frames after the sink (or all, before a window's worth)
    committed = torch.cat([e[1] for e in a.denoise.log[:switch] if e[0] == "commit"], dim=1)
    torch.testing.assert_close(x, committed[:, -x.shape[1]:], rtol=0, atol=0)
    assert (frames_a[-1] - frames_b[-1]).abs().max() > 1e-3  # and later frames follow the new prompt


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rolling_forcing_and_longlive_on_cuda_equal_the_reference():
    model, stream = family_stream("rolling-forcing")
    model.to("cuda")
    stream.device = torch.device("cuda")
    for _ in range(9):
        stream.next_latent_chunk()
    stream.denoise.log = [tuple(t.cpu() if torch.is_tensor(t) else t for t in e) for e in stream.denoise.log]
    context = stream.denoise.text.get("a cat walking").double()[None]
    assert rolling_forcing_reference(model.cpu(), stream, context) == 4 + 9
    model, stream = family_stream("longlive", prompt="0s: a cat walking\n0.75s: a dog jumping")
    model.to("cuda")
    stream.device = torch.device("cuda")
    for _ in range(6):
        stream.next_latent_chunk()
    assert [e[0] for e in stream.denoise.log].count("recache") == 1
