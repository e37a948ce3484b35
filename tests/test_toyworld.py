"""The toy world: renderer (shapes, seeds, colours, motion, streams, transitions), captions, and the judge."""
import gc
import random
import tracemalloc

import numpy as np
import pytest
import torch

from streamdit.toyworld import (
    ACTIONS,
    ANIMAL_COLORS,
    ANIMALS,
    BACKGROUND_COLORS,
    BACKGROUNDS,
    DEGRADATIONS,
    EVAL_SEED_OFFSET,
    MAX_CAPTION_WORDS,
    MOTION_OF_ACTION,
    TRAIN_SEED_RANGE,
    VOCABULARY,
    Scene,
    ToyStream,
    all_scenes,
    canonical_caption,
    centroid_distance,
    degrade,
    eval_seed,
    judge_clip,
    mask_centroids,
    mask_iou,
    parse_caption,
    random_caption,
    random_scene,
    render_batch,
    render_clip,
)

T = 16
PIG = Scene("pig", "walking right", "grass")


def unwrap_x(x: torch.Tensor, width: int) -> torch.Tensor:
    dx = (x.diff() + width / 2) % width - width / 2
    return torch.cat([x[:1], x[0] + dx.cumsum(0)])


# ---------------------------------------------------------------- renderer


@pytest.mark.parametrize("size", [32, 64, 96, 128, (48, 80)])
def test_shapes_dtype_range(size):
    frames, truth = render_clip(Scene("cat", "jumping", "sea"), 5, seed=3, size=size)
    h, w = (size, size) if isinstance(size, int) else size
    assert frames.shape == (5, h, w, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    assert truth.masks.shape == (5, h, w) and truth.masks.dtype == torch.bool
    assert truth.centroids.shape == (5, 2) and torch.isfinite(truth.centroids).all()
    k = min(h, w) / 64  # sprites are about 14-22 px wide at 64x64, scaled with the frame
    widths = [int(m.any(0).sum()) for m in truth.masks]
    assert all(12 * k <= x <= 23 * k for x in widths), widths


def test_sizes_below_32_are_refused():
    with pytest.raises(ValueError):
        render_clip(PIG, 2, 0, size=16)


def test_determinism_by_seed_batch_and_stream_agree():
    a, ta = render_clip(PIG, 12, seed=7)
    b, tb = render_clip(PIG, 12, seed=7)
    assert torch.equal(a, b) and torch.equal(ta.masks, tb.masks)
    assert not torch.equal(a, render_clip(PIG, 12, seed=8)[0])
    batch = render_batch([Scene("dog", "jumping", "snow"), PIG], 12, [1, 7])
    assert batch.frames.shape == (2, 12, 64, 64, 3) and batch.truth is None
    assert torch.allclose(batch.frames[1], a, atol=1e-6)
    stream = ToyStream(PIG, seed=7)
    parts = [stream.read(5), next(stream)[None], *stream.frames(6, chunk=4)]
    assert torch.allclose(torch.cat(parts), a, atol=1e-6)
    assert stream.frame_index == 12


def test_colours_of_sprites_and_backgrounds():
    palette = torch.tensor([ANIMAL_COLORS[a] for a in ANIMALS], dtype=torch.float32)
    for animal in ANIMALS:
        scenes = [Scene(animal, ACTIONS[i % 3], BACKGROUNDS[i % 4]) for i in range(12)]
        out = render_batch(scenes, 3, list(range(100, 112)), truth=True)
        pix = torch.cat([out.frames[i][t.masks] for i, t in enumerate(out.truth)]) * 255
        spec = torch.tensor(ANIMAL_COLORS[animal], dtype=torch.float32)
        mean = pix.mean(0)
        assert (mean - spec).norm() < 25, (animal, mean)
        assert ANIMALS[int(torch.cdist(mean[None], palette).argmin())] == animal
        assert ((pix - spec).norm(dim=1) < 40).float().mean() > 0.7  # mostly its colour
    for bg in BACKGROUNDS:
        out = render_batch([Scene(None, None, bg)] * 4 + [Scene("duck", "jumping", bg)] * 4, 2, list(range(8)))
        pix = out.frames.reshape(-1, 3) * 255
        close = ((pix - torch.tensor(BACKGROUND_COLORS[bg], dtype=torch.float32)).norm(dim=1) < 30).float().mean()
        assert close > 0.85, (bg, close)


@pytest.mark.parametrize("action", ACTIONS)
def test_sprites_move_as_captioned(action):
    out = render_batch([Scene(a, action, b) for a in ANIMALS for b in BACKGROUNDS], 24, list(range(16)),
                       truth=True)
    for t in out.truth:
        x = unwrap_x(t.centroids[:, 0], 64)
        y = t.centroids[:, 1]
        if action == "jumping":
            assert (x - x[0]).abs().max() < 1.0 and y.max() - y.min() > 3
        else:
            step = (x[-1] - x[0]) / 23
            assert (step > 0.4) if action == "walking right" else (step < -0.4), step
            assert y.max() - y.min() < 2.5


def test_long_stream_wraps_around_in_constant_memory():
    stream = ToyStream(Scene("duck", "walking left", "night"), seed=11)
    xs = []
    for _ in range(13):  # 208 frames to warm up
        xs.append(stream.read(16, truth=True)[1].centroids[:, 0].clone())
    stream.set_scene(Scene("pig", "walking left", "grass"))
    xs.append(stream.read(16, truth=True)[1].centroids[:, 0].clone())
    gc.collect()
    objects = len(gc.get_objects())
    for _ in range(55):  # nothing accumulates per frame (but the kept xs)
        xs.append(stream.read(16, truth=True)[1].centroids[:, 0].clone())
    gc.collect()
    assert len(gc.get_objects()) - objects - 55 < 20
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(56):  # 2000 frames in all
        xs.append(stream.read(16, truth=True)[1].centroids[:, 0].clone())
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert grown < 56 * 600 + 16384, grown  # xs' tensors hold ~0.2 KiB of python memory each
    assert stream.frame_index == 2000 and 0 <= stream._state.x[0] < 64
    x = torch.cat(xs)
    assert x.min() >= 0 and x.max() < 64
    travel = unwrap_x(x, 64)
    assert travel[0] - travel[-1] > 10 * 64  # walked left across the frame (and wrapped) many times


def test_transitions_switch_at_the_right_frame():
    before, after = Scene("cat", "walking right", "snow"), Scene("duck", "walking right", "night")
    plain, _ = render_clip(before, 20, seed=4)
    frames, truth = render_clip(before, 20, seed=4, switch_to=after, switch_at=9)
    assert torch.equal(frames[:9], plain[:9]) and not torch.equal(frames[9:], plain[9:])
    assert truth.scenes == [before] * 9 + [after] * 11
    assert truth.captions[8] == "a cat walking right on snow" and truth.captions[9] == "a duck walking right at night"
    x = unwrap_x(truth.centroids[:, 0], 64)
    assert (x.diff() > 0).all() and x.diff().max() < 3  # the sprite keeps its position and motion
    verdict = judge_clip(frames)
    assert verdict.animals[:9] == ["cat"] * 9 and verdict.animals[9:] == ["duck"] * 11
    assert verdict.backgrounds[:9] == ["snow"] * 9 and verdict.backgrounds[9:] == ["night"] * 11
    stream = ToyStream(before, seed=4)
    head = stream.read(9)
    stream.set_scene(after)
    assert torch.allclose(torch.cat([head, stream.read(11)]), frames, atol=1e-6)
    batch = render_batch([before, PIG], 20, [4, 5], switch_to=[after, None], switch_at=[9, None])
    assert torch.allclose(batch.frames[0], frames, atol=1e-6)
    assert batch.captions[0][9] == canonical_caption(after) and set(batch.captions[1]) == {canonical_caption(PIG)}


def test_background_only_frames():
    frames, truth = render_clip(Scene(None, None, "night"), 6, seed=2)
    assert not truth.masks.any() and truth.centroids.isnan().all()
    assert truth.animals == [None] * 6 and truth.captions[0] == "no animal at night"
    assert frames.shape == (6, 64, 64, 3)


def test_seed_convention_and_validation():
    assert EVAL_SEED_OFFSET >= TRAIN_SEED_RANGE.stop and eval_seed(0) not in TRAIN_SEED_RANGE
    with pytest.raises(ValueError):
        render_clip(Scene("cow", "jumping", "grass"), 2, 0)
    with pytest.raises(ValueError):
        render_clip(PIG, 2, -1)


# ---------------------------------------------------------------- captions


def test_canonical_captions():
    assert canonical_caption(PIG) == "a pig walking right on grass"
    assert canonical_caption(Scene("duck", "jumping", "sea")) == "a duck jumping by the sea"
    assert canonical_caption(("cat", "walking left", "night")) == "a cat walking left at night"
    assert canonical_caption(Scene("dog", "walking left", "snow")) == "a dog walking left on snow"
    for scene in all_scenes(include_empty=True):
        assert parse_caption(canonical_caption(scene)) == tuple(scene)


def test_random_captions_parse_and_use_the_vocabulary():
    vocab = set(VOCABULARY)
    assert VOCABULARY == sorted(vocab) and all(w.isalpha() and w.islower() for w in VOCABULARY)
    seen, longest = set(), 0
    for rng in (random.Random(0), np.random.default_rng(1), torch.Generator().manual_seed(2)):
        for _ in range(1500 if isinstance(rng, random.Random) else 300):
            scene = random_scene(rng, empty_prob=0.1)
            caption = random_caption(scene, rng)
            words = caption.replace(",", " ").split()
            assert set(words) <= vocab, caption
            assert parse_caption(caption) == tuple(scene), caption
            seen.add(caption)
            longest = max(longest, len(words))
    assert len(seen) > 1000 and longest <= MAX_CAPTION_WORDS <= 16
    for phrase in ("the pig", "walks to the left", "moving right", "hopping", "in the snow", "on a snowy field",
                   "by the ocean", "in the dark", "at nighttime", "on grass, a "):
        assert any(phrase in c for c in seen), phrase  # synonyms and word orders


def test_parse_caption_errors():
    assert parse_caption("On grass, the Piggy walks to the LEFT!") == ("pig", "walking left", "grass")
    with pytest.raises(ValueError, match="'cow'"):
        parse_caption("a cow walking left on grass")
    with pytest.raises(ValueError):
        parse_caption("a pig walking left")
    with pytest.raises(ValueError):
        parse_caption("a pig on grass")


# ---------------------------------------------------------------- judge


def test_metrics():
    a = torch.zeros(1, 8, 8, dtype=torch.bool)
    a[0, 2:4, 2:4] = True
    b = a.clone()
    b[0, 2:4, 4:6] = True
    assert mask_iou(a, b).item() == pytest.approx(0.5)
    assert mask_iou(a & False, a & False).item() == 1.0
    split = torch.zeros(1, 8, 8, dtype=torch.bool)
    split[0, 4, [0, 7]] = True  # a sprite crossing the right edge
    assert mask_centroids(split)[0].tolist() == pytest.approx([7.5, 4.0])
    d = centroid_distance(torch.tensor([[63.5, 4.0]]), torch.tensor([[0.5, 4.0]]), width=64)
    assert d.item() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def eval_clips():
    scenes = all_scenes() * 4  # every combination, 4 held-out seeds each
    return scenes, render_batch(scenes, T, [eval_seed(i) for i in range(len(scenes))], truth=True)


def _rates(scenes, frames, truths):
    animal = background = near = motion = n = 0
    for scene, clip, truth in zip(scenes, frames, truths):
        v = judge_clip(clip)
        animal += sum(x == y for x, y in zip(v.animals, truth.animals))
        background += sum(x == y for x, y in zip(v.backgrounds, truth.backgrounds))
        near += int((centroid_distance(v.centroids, truth.centroids, clip.shape[2]) <= 1.5).sum())
        motion += v.motion == MOTION_OF_ACTION[scene.action]
        n += len(clip)
    return animal / n, background / n, near / n, motion / len(scenes)


def test_judge_on_ground_truth_renders(eval_clips):
    scenes, out = eval_clips
    animal, background, centroid, motion = _rates(scenes, out.frames, out.truth)
    print(f"\njudge clean: animal {animal:.4f} background {background:.4f} centroid<=1.5px {centroid:.4f} "
          f"motion {motion:.4f}")
    assert animal >= 0.99 and background >= 0.99 and centroid >= 0.99 and motion >= 0.99


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_judge_on_degraded_renders(eval_clips, kind):
    scenes, out = eval_clips
    g = torch.Generator().manual_seed(DEGRADATIONS.index(kind))
    degraded = [degrade(f, kind, g) for f in out.frames]
    animal, background, centroid, motion = _rates(scenes, degraded, out.truth)
    print(f"\njudge {kind}: animal {animal:.4f} background {background:.4f} centroid<=1.5px {centroid:.4f} "
          f"motion {motion:.4f}")
    assert animal >= 0.95 and background >= 0.95 and motion >= 0.95


def test_judge_on_background_only_frames():
    scenes = [Scene(None, None, b) for b in BACKGROUNDS] * 8
    out = render_batch(scenes, T, [eval_seed(500 + i) for i in range(len(scenes))])
    g = torch.Generator().manual_seed(0)
    clean = degraded = right_bg = 0
    for i, clip in enumerate(out.frames):
        v = judge_clip(clip)
        clean += v.animals.count(None)
        right_bg += v.backgrounds.count(scenes[i].background)
        assert v.animal is None and v.motion is None and not v.masks.any()
        degraded += judge_clip(degrade(clip, DEGRADATIONS[i % len(DEGRADATIONS)], g)).animals.count(None)
    n = len(scenes) * T
    print(f"\njudge background-only: no animal {clean / n:.4f} (degraded {degraded / n:.4f}), "
          f"background {right_bg / n:.4f}")
    assert clean / n >= 0.99 and degraded / n >= 0.99 and right_bg / n >= 0.99


def test_judge_any_size_and_static_sprite():
    for size in (32, 48, 96):
        frames, truth = render_clip(Scene("dog", "walking left", "grass"), T, eval_seed(9), size=size)
        v = judge_clip(frames)
        assert (v.animal, v.background, v.motion) == ("dog", "grass", "left")
        assert mask_iou(v.masks, truth.masks).mean() > 0.7
    frames, _ = render_clip(Scene("cat", "walking right", "sea"), 1, eval_seed(3))
    v = judge_clip(frames.expand(T, -1, -1, -1))  # a frozen sprite does not move
    assert v.animal == "cat" and v.motion is None
