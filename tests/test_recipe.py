"""The toy recipe's first stages at toy scale: an autoencoder whose loss falls, a latent cache, crops."""
import random

import torch

from streamdit.codecs import AutoencoderCodec
from streamdit.train.autoencoder import train_autoencoder
from streamdit.train.recipe import ToyRecipe, frame_source, run
from streamdit.train.toydata import LatentClips


def test_autoencoder_loss_falls():
    recipe = ToyRecipe(size=32)
    codec = AutoencoderCodec(4, (8, 16))
    losses = train_autoencoder(codec, frame_source(recipe), steps=80, batch=8, lr=3e-3)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_quick_stages_write_codec_cache_and_crops(tmp_path):
    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    run(recipe, stages=("autoencoder", "cache"))
    assert (tmp_path / "run" / "autoencoder.safetensors").is_file()
    cache = torch.load(str(tmp_path / "run" / "cache.pt"), weights_only=True)
    assert cache["latents"].shape == (8, 8, 24, 16, 16) and cache["latents"].dtype == torch.float16
    data = LatentClips(cache, batch_size=3, frames=16, caption=lambda scene, rng: " ".join(map(str, scene)))
    a, b = data(0, torch.Generator().manual_seed(1)), data(0, torch.Generator().manual_seed(1))
    assert a["latents"].shape == (3, 8, 16, 16, 16) and torch.equal(a["latents"], b["latents"])
    assert a["context"] == b["context"] and len(a["context"]) == 3
    # a crop is captioned with the scene its newest frame shows
    spec = data.specs[0]
    words = random.Random(0)
    assert data.caption(spec.before, words) != "" and spec.switch >= 1


def test_quick_recipe_exports_student_teacher_and_baselines_that_stream(tmp_path):
    from streamdit.pipeline import Pipeline
    from streamdit.train.recipe import ToyRecipe as R

    out = run(R.quick(str(tmp_path / "main")))
    student, teacher = Pipeline.load(str(out["student"])), Pipeline.load(str(out["teacher"]))
    assert student.bundle.defaults.micro_steps == 1 and teacher.bundle.defaults.micro_steps == 1
    assert teacher.bundle.meta["role"] == "teacher" and student.bundle.meta["role"] == "student"
    assert student.stream("a pig walking right on grass").take(20).shape == (20, 64, 64, 3)
    for variant, partition in (("diagonal", (0, 16, 1)), ("extension", (8, 1, 8))):
        recipe = R.baseline(variant, str(tmp_path / variant), codec_from=str(out["student"]))
        for k in ("cache_clips", "teacher_steps", "batch", "warmup"):
            setattr(recipe, k, getattr(R.quick(""), k))
        written = run(recipe)
        assert set(written) == {"teacher"} and not (tmp_path / variant / "autoencoder.safetensors").exists()
        pipe = Pipeline.load(str(written["teacher"]))
        d = pipe.bundle.defaults
        assert (d.ref_frames, d.buffer_frames // d.chunk_frames, d.chunk_frames) == partition
        assert pipe.stream("a cat jumping on snow").take(40).shape == (40, 64, 64, 3)


def test_cache_with_sprite_masks_feeds_a_weighted_teacher_loss(tmp_path):
    from streamdit.partition import Schedule
    from streamdit.train.flow import flow_matching_loss
    from streamdit.train.recipe import build_teacher, stage_autoencoder, stage_cache

    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    recipe.sprite_weight_flow = 4.0
    (tmp_path / "run").mkdir()
    codec = stage_autoencoder(recipe)
    cache = stage_cache(recipe, codec)
    masks = cache["masks"]
    assert masks.shape == (8, 24, 16, 16) and masks.dtype == torch.bool
    assert 0.002 < masks.float().mean() < 0.2  # sprites cover a few percent of the cells (some clips are empty)
    batch = LatentClips(cache, 2, 16, lambda scene, rng: "a pig walking right on grass")(0, torch.Generator())
    assert batch["masks"].shape == (2, 16, 16, 16)
    model, _ = build_teacher(recipe, codec)
    loss, _ = flow_matching_loss(model, batch, recipe.mix, Schedule(1.0), torch.Generator(), 0.1, 4.0)
    assert torch.isfinite(loss)
