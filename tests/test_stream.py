"""The stream on a real (tiny, random) network: determinism, continuation, prompts, memory."""
import gc
import threading
import warnings

import pytest
import torch

PIG = "a pig walking right on grass"
CAT = "a cat walking right on grass"


def frames_of(stream, n):
    return torch.cat(list(stream.frames(n)))


@pytest.mark.parametrize("settings", [dict(), dict(micro_steps=2), dict(chunk_frames=1), dict(ref_frames=3),
                                      dict(chunk_frames=4, micro_steps=3, ref_frames=1)])
def test_split_runs_and_restore_equal_one_run(tiny_pipeline, settings, tmp_path):
    whole = frames_of(tiny_pipeline.stream(PIG, seed=5, **settings), 29)
    s = tiny_pipeline.stream(PIG, seed=5, **settings)
    part1 = frames_of(s, 7)  # 7 is not a multiple of the chunk: a decoded remainder is carried over
    part2 = frames_of(s, 5)
    s.save(tmp_path / "state.pt")
    fresh = tiny_pipeline.stream(PIG, seed=5, **settings)
    fresh.load(tmp_path / "state.pt")
    part3 = frames_of(fresh, 17)
    assert torch.equal(torch.cat([part1, part2, part3]), whole)
    assert whole.shape == (29, 16, 16, 3) and whole.dtype == torch.float32
    assert 0 <= whole.min() and whole.max() <= 1


def test_stopping_early_keeps_the_remaining_frames(tiny_pipeline):
    whole = frames_of(tiny_pipeline.stream(PIG, seed=1), 12)
    s = tiny_pipeline.stream(PIG, seed=1)
    gen = s.frames(None)
    first = next(gen)
    gen.close()  # the consumer walks away while the next chunk is decoding
    rest = frames_of(s, 12 - first.shape[0])
    assert torch.equal(torch.cat([first, rest]), whole)


def test_interrupt_mid_period_keeps_the_state_valid(tiny_pipeline):
    whole = frames_of(tiny_pipeline.stream(PIG, seed=2, micro_steps=3), 16)
    s = tiny_pipeline.stream(PIG, seed=2, micro_steps=3)
    calls = {"n": 0}

    def cancel_at_call_8():
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # what a host's cancel button does between network calls

    s.before_call = cancel_at_call_8
    got = []
    with pytest.raises(KeyboardInterrupt):
        for f in s.frames(16):
            got.append(f)
    s.before_call = None
    got.append(frames_of(s, 16 - sum(f.shape[0] for f in got)))
    assert torch.equal(torch.cat(got), whole)


def test_interrupted_cold_start_restarts_cleanly(tiny_pipeline):
    whole = frames_of(tiny_pipeline.stream(PIG, seed=3), 6)
    s = tiny_pipeline.stream(PIG, seed=3)

    def cancel():
        raise KeyboardInterrupt

    s.before_call = cancel
    with pytest.raises(KeyboardInterrupt):
        frames_of(s, 6)
    s.before_call = None
    assert torch.equal(frames_of(s, 6), whole)


def test_seed_determinism(tiny_pipeline):
    a = frames_of(tiny_pipeline.stream(PIG, seed=9), 10)
    assert torch.equal(a, frames_of(tiny_pipeline.stream(PIG, seed=9), 10))
    assert not torch.equal(a, frames_of(tiny_pipeline.stream(PIG, seed=10), 10))


def test_prompt_change_takes_effect_at_the_next_call(tiny_pipeline):
    base = tiny_pipeline.stream(PIG, seed=4)
    before = frames_of(base, 8)
    changed = tiny_pipeline.stream(PIG, seed=4)
    assert torch.equal(frames_of(changed, 8), before)
    base_after = frames_of(base, 8)
    changed.set_prompt(CAT)
    after = frames_of(changed, 8)
    assert not torch.equal(after, base_after)
    # a schedule with the change at 1 s (8 frames at 8 fps) behaves like the live change
    sched = tiny_pipeline.stream(f"0s: {PIG}\n1s: {CAT}", seed=4)
    assert torch.equal(frames_of(sched, 16), torch.cat([before, after]))


def test_transition_blends_embeddings(tiny_pipeline):
    hard = frames_of(tiny_pipeline.stream(f"0s: {PIG}\n1s: {CAT}", seed=4), 24)
    soft = frames_of(tiny_pipeline.stream(f"0s: {PIG}\n1s: {CAT}", seed=4, transition_seconds=1.0), 24)
    assert torch.equal(hard[:8], soft[:8]) and not torch.equal(hard[8:], soft[8:])


def test_unknown_word_fails_before_any_frame(tiny_pipeline):
    with pytest.raises(ValueError, match="unknown word"):
        tiny_pipeline.stream("a zebra walking")
    s = tiny_pipeline.stream(PIG)
    with pytest.raises(ValueError, match="unknown word"):
        s.set_prompt("a unicorn")


def test_classifier_free_guidance(tiny_pipeline):
    plain = frames_of(tiny_pipeline.stream(PIG, seed=1), 6)
    guided = tiny_pipeline.stream(PIG, seed=1, cfg_scale=3.0, negative_prompt="a dog")
    out = frames_of(guided, 6)
    assert not torch.equal(plain, out)
    neg_empty = frames_of(tiny_pipeline.stream(PIG, seed=1, cfg_scale=3.0), 6)
    assert not torch.equal(out, neg_empty)


def test_noise_warmup_and_cold_start_differ(tiny_pipeline):
    cold = tiny_pipeline.stream(PIG, seed=1)
    warm = tiny_pipeline.stream(PIG, seed=1, cold_start="noise")
    a, b = frames_of(cold, 4), frames_of(warm, 4)
    assert not torch.equal(a, b)
    assert cold.calls == 3 + 2 and warm.calls == 2  # (N-1)*s cold-start calls, then s per chunk


def test_decoding_runs_on_a_worker_thread(tiny_pipeline):
    s = tiny_pipeline.stream(PIG, seed=1)
    seen = set()
    original = s.decoder.decode

    def spy(latent):
        seen.add(threading.current_thread().name)
        return original(latent)

    s.decoder.decode = spy
    frames_of(s, 10)
    assert seen and all(name.startswith("streamdit-decode") for name in seen)


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on torch's deprecated module objects warns
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_2000_frames_use_no_more_memory_than_200(tiny_pipeline):
    s = tiny_pipeline.stream(PIG, seed=0)
    gen = s.frames(None)
    count = 0
    for f in gen:
        count += f.shape[0]
        if count >= 200:
            break
    tensors_200, rss_200 = _live_tensors(), _rss_mb()
    for f in gen:
        count += f.shape[0]
        if count >= 2000:
            break
    gen.close()
    tensors_2000, rss_2000 = _live_tensors(), _rss_mb()
    print(f"after 200 frames: {tensors_200} tensors, {rss_200:.1f} MB; "
          f"after {count}: {tensors_2000}, {rss_2000:.1f} MB")
    assert tensors_2000 <= tensors_200
    assert rss_2000 - rss_200 < 8.0  # allocator noise only; a leak of one frame per step would be ~6 MB
