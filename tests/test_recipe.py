"""The toy recipe's first stages at toy scale: an autoencoder whose loss falls, a latent cache, crops."""
import random

import pytest
import torch

from streamdit.codecs import AutoencoderCodec
from streamdit.train.autoencoder import train_autoencoder
from streamdit.train.toy import ToyRecipe, frame_source, run
from streamdit.train.toydata import LatentClips


def test_autoencoder_loss_falls():
    recipe = ToyRecipe(size=32)
    codec = AutoencoderCodec(4, (8, 16))
    losses = train_autoencoder(codec, frame_source(recipe), steps=80, batch=8, lr=3e-3)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)


def test_quick_stages_write_codec_cache_and_crops(tmp_path, monkeypatch):
    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    run(recipe, stages=("autoencoder", "cache"))
    assert (tmp_path / "run" / "autoencoder.safetensors").is_file()
    cache = torch.load(str(tmp_path / "run" / "cache.pt"), weights_only=True)
    assert cache["latents"].shape == (8, 8, 24, 16, 16) and cache["latents"].dtype == torch.float16
    data = LatentClips(cache, batch_size=3, frames=16, caption=lambda scene, rng: " ".join(map(str, scene)))
    a, b = data(0, torch.Generator().manual_seed(1)), data(0, torch.Generator().manual_seed(1))
    assert a["latents"].shape == (3, 8, 16, 16, 16) and torch.equal(a["latents"], b["latents"])
    assert a["context"] == b["context"] and len(a["context"]) == 3
    # per-clip weights: a clip of weight 0 is never drawn, and bad weights are refused
    only = torch.zeros(8)
    only[5] = 1.0
    weighted = LatentClips(cache, batch_size=6, frames=16, caption=lambda scene, rng: "", weights=only)
    crop = weighted(0, torch.Generator().manual_seed(2))["latents"]
    assert all(any(torch.equal(c, cache["latents"][5, :, o:o + 16].float()) for o in range(9)) for c in crop)
    with pytest.raises(ValueError, match="clip weights must be 8 non-negative"):
        LatentClips(cache, 2, 16, lambda scene, rng: "", weights=torch.ones(3))
    # the refine draws clips with a jumping scene refine_jump_weight times as often (1: unweighted, as before it)
    from streamdit.train.toy import stages
    handed = {}
    monkeypatch.setattr(stages, "_flow_stage", lambda recipe, codec, name, model, mix, data, *a:
                        handed.update(data=data))
    jumping = torch.tensor(["jumping" in (spec["before"][1], spec["after"][1]) for spec in cache["specs"]])
    assert 0 < int(jumping.sum()) < len(jumping)
    stages.stage_teacher_refine(recipe, None, cache, torch.nn.Linear(1, 1))
    assert handed["data"].weights is None
    recipe.refine_jump_weight = 3.0
    stages.stage_teacher_refine(recipe, None, cache, torch.nn.Linear(1, 1))
    assert handed["data"].weights.tolist() == torch.where(jumping, 3.0, 1.0).tolist()
    # a crop is captioned with the scene its newest frame shows
    spec = data.specs[0]
    words = random.Random(0)
    assert data.caption(spec.before, words) != "" and spec.switch >= 1


def test_quick_recipe_exports_student_teacher_and_baselines_that_stream(tmp_path):
    from streamdit.pipeline import Pipeline
    from streamdit.train.toy import ToyRecipe as R

    out = run(R.quick(str(tmp_path / "main")))
    for stage in ("teacher-refine", "teacher-tune"):  # the refinement and the tune ran
        assert (tmp_path / "main" / stage / "checkpoint-0000002.pt").is_file()
    student, teacher = Pipeline.load(str(out["student"])), Pipeline.load(str(out["teacher"]))
    assert student.bundle.defaults.micro_steps == 1 and teacher.bundle.defaults.micro_steps == 1
    assert student.bundle.defaults.cold_micro_steps == 4  # the recipe's finer start travels in the file
    assert teacher.bundle.meta["role"] == "teacher" and student.bundle.meta["role"] == "student"
    assert student.stream("a pig walking right on grass").take(20).shape == (20, 64, 64, 3)
    # a run that starts from an exported teacher: its weights as float32, no teacher trained, the rest runs
    from streamdit.train.toy.stages import load_teacher
    module = load_teacher(str(out["teacher"]))
    assert module.training and {p.dtype for p in module.parameters()} == {torch.float32}
    for k, v in teacher.bundle.model.state_dict().items():
        assert torch.equal(module.dit.state_dict()[k], v.float()), k
    took = R.quick(str(tmp_path / "took"))
    took.codec_from = took.teacher_from = str(out["teacher"])
    took.train_autocast = "bfloat16"  # the long runs' setting (docs/training.md): every stage trains under it
    again = run(took)
    for stage in ("teacher-refine", "teacher-tune", "student"):
        state = torch.load(str(tmp_path / "took" / stage / "checkpoint-0000002.pt"), weights_only=True)
        assert state["config"]["autocast"] == "bfloat16", stage
    assert not (tmp_path / "took" / "teacher").exists() and not (tmp_path / "took" / "autoencoder.safetensors").exists()
    assert (tmp_path / "took" / "teacher-refine" / "checkpoint-0000002.pt").is_file()
    assert Pipeline.load(str(again["student"])).stream("a cat walking left on snow").take(4).shape == (4, 64, 64, 3)
    # the teacher stage alone writes the teacher's file (to judge a teacher before the student), no student
    alone = R.quick(str(tmp_path / "alone"))
    alone.codec_from = alone.teacher_from = str(out["teacher"])
    alone.refine_jump_weight = 3.0
    alone.head_conv = 8  # the file has no refiner: the run grows one and trains it
    written = run(alone, stages=("teacher",))
    assert set(written) == {"teacher"}
    assert written["teacher"] == tmp_path / "alone" / "streamdit-toy-teacher.safetensors"
    assert not (tmp_path / "alone" / "student").exists()
    tuned = torch.load(str(tmp_path / "alone" / "teacher-tune" / "checkpoint-0000002.pt"), weights_only=True)
    alone_teacher = Pipeline.load(str(written["teacher"]))
    assert alone_teacher.bundle.meta["role"] == "teacher" and alone_teacher.bundle.config.head_conv == 8
    assert alone_teacher.bundle.model.refiner.conv_out.weight.abs().sum() > 0  # grown at zero, then trained
    assert alone_teacher.stream("a dog walking left by the sea").take(4).shape == (4, 64, 64, 3)
    for k, v in alone_teacher.bundle.model.state_dict().items():  # the tuned weights, as exported (bf16)
        assert torch.equal(v, tuned["model"]["dit." + k].to(torch.bfloat16).to(v.dtype)), k
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
    from streamdit.sampling.partition import Schedule
    from streamdit.train.flow import flow_matching_loss
    from streamdit.train.toy import build_teacher, stage_autoencoder, stage_cache

    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    recipe.sprite_weight_flow = 4.0
    (tmp_path / "run").mkdir()
    codec = stage_autoencoder(recipe)
    cache = stage_cache(recipe, codec)
    masks = cache["masks"]
    assert masks.shape == (10, 24, 16, 16) and masks.dtype == torch.bool  # 8 clips + 2 appearing
    assert 0.002 < masks.float().mean() < 0.2  # sprites cover a few percent of the cells (some clips are empty)
    batch = LatentClips(cache, 2, 16, lambda scene, rng: "a pig walking right on grass")(0, torch.Generator())
    assert batch["masks"].shape == (2, 16, 16, 16)
    model, _ = build_teacher(recipe, codec)
    loss, _ = flow_matching_loss(model, batch, recipe.mix, Schedule(1.0), torch.Generator(), 0.1, 4.0)
    assert torch.isfinite(loss)

    # the weight gated by noise level: on no frame it is the plain loss, on every frame the full weighting
    def same(**kw):  # same noise, levels and prompts every call
        return flow_matching_loss(model, batch, recipe.mix, Schedule(1.0), torch.Generator().manual_seed(3), 0.0,
                                  **kw)[0]
    with torch.no_grad():
        plain, full = same(sprite_weight=0.0), same(sprite_weight=4.0)
        assert torch.equal(same(sprite_weight=4.0, sprite_sigma_max=-1.0), plain)
        assert torch.equal(same(sprite_weight=4.0, sprite_sigma_max=1.0), full) and not torch.allclose(full, plain)
        half = same(sprite_weight=4.0, sprite_sigma_max=0.5)
        assert not torch.allclose(half, plain) and not torch.allclose(half, full)


def test_appearing_clips_start_empty_show_their_animal_later_and_are_captioned_with_it(tmp_path):
    from streamdit.train.toy import merge_caches, stage_autoencoder, stage_cache

    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    recipe.appear_clips = 3
    (tmp_path / "run").mkdir()
    cache = stage_cache(recipe, stage_autoencoder(recipe))
    assert (tmp_path / "run" / "cache.pt").is_file() and (tmp_path / "run" / "cache-appear.pt").is_file()
    assert cache["latents"].shape[0] == 11 and cache["masks"].shape[0] == 11 and len(cache["specs"]) == 11
    for i, spec in enumerate(cache["specs"][8:], start=8):
        assert spec["before"][0] is None and spec["after"][0] is not None
        assert spec["before"][2] == spec["after"][2] and 1 <= spec["switch"] < 24
        masks = cache["masks"][i]
        assert not masks[:spec["switch"]].any() and masks[spec["switch"]:].any(dim=(1, 2)).all()
    # the main cache is unchanged by the appearing clips: a run without them reads the same file
    plain = torch.load(str(tmp_path / "run" / "cache.pt"), weights_only=True)
    assert torch.equal(plain["latents"], cache["latents"][:8])
    data = LatentClips(cache, 1, 16, lambda scene, rng: str(scene[0]))
    data.latents, data.masks, data.specs = data.latents[8:], data.masks[8:], data.specs[8:]
    g = torch.Generator().manual_seed(0)
    seen = {data(0, g)["context"][0] for _ in range(20)}
    assert {s.after[0] for s in data.specs} & seen  # crops that reach the switch name the animal
    with pytest.raises(ValueError, match="delete the older one"):
        merge_caches(plain, dict(plain, frames=12))


def test_recipe_overrides_and_a_changed_recipe_is_refused_on_resume(tmp_path):
    from streamdit.train.toy import record_stage

    recipe = ToyRecipe(out=str(tmp_path / "run")).override(["appear_clips=600", "distill-steps=800", "lr=3e-4"])
    assert (recipe.appear_clips, recipe.distill_steps, recipe.lr) == (600, 800, 3e-4)
    with pytest.raises(ValueError, match="expected KEY=VALUE with KEY one of .*appear_clips"):
        recipe.override(["nonsense=1"])
    with pytest.raises(ValueError, match="distill_steps takes a int, got 'many'"):
        recipe.override(["distill_steps=many"])
    with pytest.raises(ValueError, match="cold_start_teacher must be 'tuned' or 'untuned', got 'old'"):
        recipe.override(["cold_start_teacher=old"])
    fast = ToyRecipe(out="x").override(["train_autocast=bfloat16", "train_compile=1"])
    assert (fast.train_autocast, fast.train_compile) == ("bfloat16", 1)
    with pytest.raises(ValueError, match="train_autocast must be '' .* got 'float16'"):
        fast.override(["train_autocast=float16"])
    assert fast.train_autocast == "bfloat16"  # a refused value leaves the recipe as it was
    assert ToyRecipe(out="x").override(["sprite_gate=context"]).sprite_gate == "context"
    assert ToyRecipe(out="x").override(["refine_jump_weight=3"]).refine_jump_weight == 3.0
    with pytest.raises(ValueError, match="refine_jump_weight must be 0 or more .* got -1.0"):
        fast.override(["refine_jump_weight=-1"])
    assert fast.refine_jump_weight == 1.0
    with pytest.raises(ValueError, match="sprite_gate must be 'frame' or 'context', got 'clip'"):
        fast.override(["sprite_gate=clip"])
    with pytest.raises(ValueError, match="device must name a torch device .* got 'gpu0'"):
        fast.override(["device=gpu0"])
    assert fast.device == "cpu"
    (tmp_path / "run").mkdir()
    record_stage(recipe, "cache", {"clips": 1})
    recipe.check_resumable()  # the same recipe resumes
    recipe.device = "cuda:1"
    recipe.check_resumable()  # on another device too: the device is where a run trains, not what it trains
    recipe.device = "cpu"
    other = ToyRecipe(out=str(tmp_path / "run")).override(["appear_clips=600", "distill_steps=400", "lr=3e-4"])
    with pytest.raises(ValueError, match="distill_steps: 800 there, 400 now.*use a new --out"):
        other.check_resumable()


def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(tmp_path):
    from streamdit.train.toy.stages import training_device

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    recipe = ToyRecipe.quick(str(tmp_path / "run"))
    recipe.device = f"cuda:{count}"
    with pytest.raises(ValueError, match=f"this machine has {count} CUDA device\\(s\\); train with --device cpu"):
        run(recipe)
    assert not (tmp_path / "run").exists()
    assert training_device(ToyRecipe.quick("x")) == torch.device("cpu")


def test_batches_move_to_the_training_device_and_modules_come_back_for_probes_and_exports():
    from streamdit.train.toy.export import on_cpu
    from streamdit.train.trainer import on_device

    batch = {"latents": torch.ones(2, 3), "masks": torch.zeros(2, dtype=torch.bool), "context": ["a pig", "a cat"]}
    moved = on_device(batch, torch.device("cpu"))
    assert moved["context"] == ["a pig", "a cat"] and torch.equal(moved["latents"], batch["latents"])
    assert moved["masks"].dtype == torch.bool
    module = torch.nn.Linear(2, 2)
    assert on_cpu(module) is module  # no copy on the CPU
    if torch.cuda.is_available():
        gpu = on_device(batch, torch.device("cuda"))
        assert gpu["latents"].is_cuda and gpu["context"] == batch["context"]
        back = on_cpu(module.cuda())
        assert back is not module and next(back.parameters()).device.type == "cpu"
        assert next(module.parameters()).is_cuda  # the training module stays where it trains


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_recipe_trains_on_a_gpu_and_exports_files_that_stream_on_the_cpu(tmp_path):
    from streamdit.pipeline import Pipeline

    recipe = ToyRecipe.quick(str(tmp_path / "gpu"))
    recipe.device = "cuda"
    recipe.train_autocast = "bfloat16"
    out = run(recipe)
    state = torch.load(str(tmp_path / "gpu" / "student" / "checkpoint-0000002.pt"), weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    for role in ("student", "teacher"):
        pipe = Pipeline.load(str(out[role]))
        assert pipe.stream("a pig walking right on grass").take(4).shape == (4, 64, 64, 3)
