"""The toy model's full recipe, one command, resumable stage by stage (STAGES, in order):

1. autoencoder codec on rendered frames      -> OUT/autoencoder.safetensors
2. latent cache of rendered clips             -> OUT/cache.pt (not shipped)
3. teacher: buffered flow matching, mixed partitions, text dropout, sprite cells weighted -> OUT/teacher/
   (or, with teacher_from, an exported teacher taken as it is)
3a. teacher-refine (refine_steps > 0): the teacher continued on the full mix with the sprite weight on clean
   frames only, which takes out the weighting's bias towards a second sprite -> OUT/teacher-refine/
3b. teacher-tune (tune_steps > 0): the teacher tuned on streaming partitions only, jumping clips drawn
   more often -> OUT/teacher-tune/ (docs/training.md: the hop's continuation)
4. student: segment-wise distillation (s -> 1, guidance folded in) -> OUT/student/; with the tune, the
   cold-start (uniform-layout) samples take their targets from the teacher before it
5. export: OUT/streamdit-toy.safetensors (student); OUT/streamdit-toy-teacher.safetensors is written as soon as
   the teacher's stages are done (with the teacher stage or the export stage)

Each stage skips itself when its output exists and resumes from its last checkpoint otherwise. The student
and export stages load a finished teacher (and student) from OUT; they never train one they were not asked
for. Baselines (ToyRecipe.baseline) stop at the teacher and export it. The DiT stages train on recipe.device; the
autoencoder, the cache, the probes and the exports run on the CPU.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ...codecs.autoencoder import AutoencoderCodec
from ..autoencoder import measure_latent_stats, reconstruction_psnr, train_autoencoder
from ..flow import PartitionMix
from ..trainer import checkpoint_path, on_device
from .cache import stage_cache
from .clips import caption, frame_source
from .export import export
from .probes import probe_adherence
from .recipe import STAGES, ToyRecipe, record_stage


def check_stages(recipe: ToyRecipe, stages: tuple[str, ...]) -> None:
    """Refuse unknown stage names, and a later stage whose earlier one is neither asked for nor finished in OUT.

    A stage's final training checkpoint marks it finished (Trainer resumes from it without training)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; use a comma-separated subset of {','.join(STAGES)}")
    later = [s for s in ("student", "export") if s in stages]
    needs = []  # (the stage that makes it, what it is, the file a finished one leaves)
    if later and "teacher" not in stages:
        if not recipe.teacher_from:
            needs.append(("teacher", "teacher", checkpoint_path(Path(recipe.out) / "teacher", recipe.teacher_steps)))
        if recipe.refine_steps > 0:
            needs.append(("teacher", "teacher refinement",
                          checkpoint_path(Path(recipe.out) / "teacher-refine", recipe.refine_steps)))
        if recipe.tune_steps > 0:
            needs.append(("teacher", "teacher tune",
                          checkpoint_path(Path(recipe.out) / "teacher-tune", recipe.tune_steps)))
    if "export" in stages and "student" not in stages and recipe.variant == "streamdit":
        needs.append(("student", "student", checkpoint_path(Path(recipe.out) / "student", recipe.distill_steps)))
    missing = [(stage, what, path) for stage, what, path in needs if not path.is_file()]
    if not missing:
        return
    makers = sorted({stage for stage, _, _ in missing}, key=STAGES.index)
    together = sorted(set(makers) | set(stages), key=STAGES.index)
    files = " and ".join(f"a finished {what} ({path})" for _, what, path in missing)
    plural = len(makers) > 1
    raise ValueError(f"the {later[0]} stage needs {files}: run the {' and '.join(makers)} "
                     f"stage{'s' if plural else ''} first (--stages {','.join(makers)}) "
                     f"or include {'them' if plural else 'it'} (--stages {','.join(together)})")


def training_device(recipe: ToyRecipe) -> torch.device:
    """recipe.device, refused with what to do when this machine has no such device."""
    device = torch.device(recipe.device)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(f"device {recipe.device!r}: this machine has {count} CUDA device(s); train with "
                             f"--device cpu, or run on a machine with the GPU")
    return device


def run(recipe: ToyRecipe, stages: tuple[str, ...] = STAGES, probe_every: int = 1000) -> dict[str, Path]:
    """Run the stages in order (each resumes or skips itself); returns the files written."""
    recipe.check_resumable()
    check_stages(recipe, stages)  # before any training or folder: a refused run leaves OUT as it was
    training_device(recipe)
    Path(recipe.out).mkdir(parents=True, exist_ok=True)
    torch.set_float32_matmul_precision("high")
    codec = stage_autoencoder(recipe)
    if stages == ("autoencoder",):
        return {"autoencoder": Path(recipe.out) / "autoencoder.safetensors"}
    cache = stage_cache(recipe, codec)
    written: dict[str, Path] = {}
    if "teacher" in stages or "student" in stages or "export" in stages:
        # without "teacher" in stages, check_stages made sure these only load finished checkpoints
        teacher = stage_teacher(recipe, codec, cache, probe_every)
        if recipe.refine_steps > 0:
            teacher = stage_teacher_refine(recipe, codec, cache, teacher)
        cold_start_teacher = None
        if recipe.tune_steps > 0:
            if recipe.cold_start_teacher == "untuned":
                cold_start_teacher = copy.deepcopy(teacher)  # stage_student freezes it
            teacher = stage_teacher_tune(recipe, codec, cache, teacher)
        t_steps = recipe.teacher_partition.micro_steps
        if recipe.variant != "streamdit":  # baselines are compared as teachers: no distillation
            if "export" in stages:
                written["teacher"] = export(recipe, teacher, codec, f"streamdit-toy-{recipe.variant}.safetensors",
                                            t_steps, {"role": "baseline", "variant": recipe.variant,
                                                      "cfg_scale": recipe.cfg_scale,
                                                      "recipe": json.dumps(recipe.to_dict())})
            return written
        if "teacher" in stages or "export" in stages:
            # written as soon as the teacher's stages are done: a teacher can be judged before (or without) the
            # student stage, e.g. `--stages teacher`
            written["teacher"] = export(recipe, teacher, codec, "streamdit-toy-teacher.safetensors", t_steps,
                                        {"role": "teacher", "cfg_scale": recipe.cfg_scale,
                                         "recipe": json.dumps(recipe.to_dict())})
        if "student" in stages or "export" in stages:
            student = stage_student(recipe, codec, cache, teacher, cold_start_teacher)
            if "export" in stages:
                written["student"] = export(recipe, student, codec, "streamdit-toy.safetensors", 1,
                                            {"role": "student", "distilled_from": "streamdit-toy-teacher",
                                             "recipe": json.dumps(recipe.to_dict())})
    return written


def stage_autoencoder(recipe: ToyRecipe) -> AutoencoderCodec:
    path = Path(recipe.out) / "autoencoder.safetensors"
    if recipe.codec_from:
        from ...io.checkpoint import load_checkpoint

        codec = load_checkpoint(recipe.codec_from).codec
        if not isinstance(codec, AutoencoderCodec):
            raise ValueError(f"{recipe.codec_from} has no autoencoder codec to reuse")
        return codec.float().eval()
    codec = AutoencoderCodec(recipe.ae_channels, recipe.ae_widths)
    if path.is_file():
        codec.load_state_dict(load_file(str(path)))
        return codec.eval()
    torch.manual_seed(recipe.seed)
    start = time.perf_counter()
    source = frame_source(recipe)
    losses = train_autoencoder(codec, source, recipe.ae_steps, recipe.ae_batch, seed=recipe.seed,
                               sprite_weight=recipe.ae_sprite_weight)
    measure_latent_stats(codec, source)
    psnr = reconstruction_psnr(codec, *source(256, torch.Generator().manual_seed(10**6 + recipe.seed)))
    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(path))
    record_stage(recipe, "autoencoder", {"steps": recipe.ae_steps, "final_loss": losses[-1], "psnr_db": psnr,
                                         "seconds": time.perf_counter() - start, "losses": losses[::10]})
    return codec.eval()


def final_module(trainer, weights: str):
    """The weights a stage hands on: "raw" (the trained weights) or "ema" (their moving average)."""
    if weights not in ("raw", "ema"):
        raise ValueError(f"weights must be 'raw' or 'ema', got {weights!r}")
    return trainer.raw_module() if weights == "raw" else trainer.ema_module()


def _loop(recipe: ToyRecipe, name: str, model, loss_fn, data, steps: int, lr: float, warmup: int, ema: float,
          probe_every: int = 0, probe=None, weights: str = "ema"):
    """Train one stage in OUT/<name>/ with resume; returns the trainer. Probes judge `weights` ("raw"/"ema")."""
    from ..plot import plot_losses
    from ..trainer import TrainConfig, Trainer

    out = Path(recipe.out) / name
    device = training_device(recipe)
    model.to(device)  # in place: the stage's caller holds the same module

    def step_loss(m, batch, g):
        return loss_fn(m, on_device(batch, device), g)

    cfg = TrainConfig(out=str(out), steps=steps, lr=lr, warmup=warmup, ema=ema, seed=recipe.seed,
                      checkpoint_every=max(1, min(200, steps)), desc=name, autocast=recipe.train_autocast,
                      compile=bool(recipe.train_compile))

    def on_checkpoint(tr):
        plot_losses({name: out / "log.csv"}, out / "loss.png", title=f"toy {name} loss")
        if probe is not None and probe_every and (tr.step % probe_every == 0 or tr.step == steps):
            rows = out / "probe.jsonl"
            done = {json.loads(line)["step"] for line in rows.read_text().splitlines()} if rows.is_file() else set()
            if tr.step not in done:
                with open(rows, "a") as fh:
                    fh.write(json.dumps({"step": tr.step, "weights": weights,
                                         **probe(final_module(tr, weights))}) + "\n")

    trainer = Trainer(model, step_loss, data, cfg, on_checkpoint=on_checkpoint)
    start = time.perf_counter()
    resumed = trainer.resume()
    if trainer.step < steps:
        trainer.run()
    if not resumed or trainer.step == steps:
        record_stage(recipe, name, {"steps": steps, "seconds_this_run": time.perf_counter() - start})
    return trainer


def _flow_stage(recipe: ToyRecipe, codec: AutoencoderCodec, name: str, model, mix: PartitionMix, data, steps: int,
                lr: float, warmup: int, ema: float, probe_every: int, weights: str, sprite_weight: float,
                sprite_sigma_max: float = 1.0):
    """Buffered flow matching of `model` on `data` with `mix` in OUT/<name>/, sprite cells weighing
    1 + sprite_weight on the frames recipe.sprite_gate selects by sprite_sigma_max; returns the `weights` module."""
    from ...sampling.partition import Schedule
    from ..flow import flow_matching_loss

    schedule = Schedule(1.0)

    def loss_fn(m, batch, g):
        return flow_matching_loss(m, batch, mix, schedule, g, recipe.text_dropout, sprite_weight, sprite_sigma_max,
                                  recipe.sigma_boost, (recipe.sigma_boost_lo, recipe.sigma_boost_hi),
                                  recipe.sprite_gate)

    probe = partial(probe_adherence, recipe=recipe, codec=codec, micro_steps=recipe.teacher_partition.micro_steps,
                    cfg_scale=recipe.cfg_scale)
    trainer = _loop(recipe, name, model, loss_fn, data, steps, lr, warmup, ema, probe_every, probe, weights)
    return final_module(trainer, weights).eval()


def build_teacher(recipe: ToyRecipe, codec: AutoencoderCodec):
    """The toy preset's DiT plus its word-level text encoder, trained together."""
    from ...network.config import get_preset
    from ...network.model import WanDiT
    from ...network.text import ToyTextEncoder
    from ...toyworld.captions import VOCABULARY
    from ..flow import TextConditionedDiT

    cfg = dataclasses.replace(get_preset("toy").model, head_conv=recipe.head_conv)
    torch.manual_seed(recipe.seed)
    dit = WanDiT(cfg)
    dit.init_weights(recipe.seed)
    text = ToyTextEncoder(list(VOCABULARY), cfg.text_dim, cfg.text_len)
    return TextConditionedDiT(dit, text), cfg


def stage_teacher(recipe: ToyRecipe, codec: AutoencoderCodec, cache: dict, probe_every: int = 1000):
    """Buffered flow matching with the partition mix and text dropout; returns recipe.teacher_weights.

    Raw by default: at 2,400 steps the model still improves fast and even a warmed-up 0.999 EMA
    averages weights from a thousand steps back (docs/training.md has the measurement)."""
    from ..toydata import LatentClips

    if recipe.teacher_from:
        from ...network.model import grow_refiner

        teacher = load_teacher(recipe.teacher_from)
        teacher.dit = grow_refiner(teacher.dit, recipe.head_conv, recipe.seed)
        return teacher
    model, _ = build_teacher(recipe, codec)
    data = LatentClips(cache, recipe.batch, recipe.crop_frames, caption)
    return _flow_stage(recipe, codec, "teacher", model, recipe.mix, data, recipe.teacher_steps, recipe.lr,
                       recipe.warmup, recipe.ema, probe_every, recipe.teacher_weights, recipe.sprite_weight_flow)


def load_teacher(path: str):
    """An exported toy checkpoint's DiT and text encoder as a trainable float32 module (teacher_from)."""
    from ...io.checkpoint import load_checkpoint
    from ...network.model import WanDiT
    from ..flow import TextConditionedDiT

    bundle = load_checkpoint(path, dtype=torch.float32)
    if not isinstance(bundle.model, WanDiT) or bundle.text_encoder is None:
        raise ValueError(f"teacher_from: {path} is not a toy checkpoint with its own text encoder")
    return TextConditionedDiT(bundle.model, bundle.text_encoder.float()).train()


def stage_teacher_refine(recipe: ToyRecipe, codec: AutoencoderCodec, cache: dict, teacher):
    """Continue the teacher on the full mix at refine_lr, no EMA, sprite cells weighted on clean frames only
    (sigma <= refine_sprite_sigma_max); returns the raw weights. Per latent cell the minimiser of a loss that
    weighs the true sprite's cells 1 + w is E[w v | x] / E[w | x]: where the noisy input leaves the sprite's
    place open the model leans to drawing one at every likely place (a second sprite); where the place is
    decided the weight does not move the minimiser (docs/training.md has the measurements)."""
    from ..toydata import LatentClips

    w = recipe.refine_jump_weight  # 1: no weights at all, so runs from before the field draw the same clips
    data = LatentClips(cache, recipe.batch, recipe.crop_frames, caption,
                       weights=None if w == 1 else jump_weights(cache, w))
    return _flow_stage(recipe, codec, "teacher-refine", teacher.train(), recipe.mix, data, recipe.refine_steps,
                       recipe.refine_lr, max(1, recipe.refine_steps // 30), 0.0, recipe.refine_steps, "raw",
                       recipe.sprite_weight_flow, recipe.refine_sprite_sigma_max)


def jump_weights(cache: dict, weight: float) -> torch.Tensor:
    """Per cached clip: how often it is drawn, `weight` for a clip with a jumping scene (before or after a
    switch) and 1 for the others."""
    jumping = torch.tensor([float("jumping" in (s["before"][1], s["after"][1])) for s in cache["specs"]])
    return 1.0 + (weight - 1.0) * jumping


def stage_teacher_tune(recipe: ToyRecipe, codec: AutoencoderCodec, cache: dict, teacher):
    """Continue the teacher on streaming partitions only (tune_chunk_sizes, no c = B) with jumping clips drawn
    tune_jump_weight times as often, at tune_lr without EMA; returns the tuned raw weights. Measured: the
    teacher alone continues a hop for about one period from a rendered start and then damps; this stage is
    what holds the hop up (docs/training.md)."""
    from ..toydata import LatentClips

    mix = dataclasses.replace(recipe.mix, chunk_sizes=tuple(recipe.tune_chunk_sizes),
                              chunk_probs=tuple(recipe.tune_chunk_probs))
    data = LatentClips(cache, recipe.batch, recipe.crop_frames, caption,
                       weights=jump_weights(cache, recipe.tune_jump_weight))
    # stage_teacher hands over trainable weights
    return _flow_stage(recipe, codec, "teacher-tune", teacher.train(), mix, data, recipe.tune_steps, recipe.tune_lr,
                       max(1, recipe.tune_steps // 30), 0.0, recipe.tune_steps, "raw", recipe.sprite_weight_flow,
                       recipe.tune_sprite_sigma_max)


def stage_student(recipe: ToyRecipe, codec: AutoencoderCodec, cache: dict, teacher, cold_start_teacher=None):
    """Segment-wise distillation from the teacher (the student starts as a copy); returns its EMA (0.99).
    cold_start_teacher, if given, supplies the targets of the uniform (cold-start) samples."""
    from ...sampling.partition import Schedule
    from ..distill import DistillConfig, distill_loss
    from ..toydata import LatentClips

    for frozen in (teacher, cold_start_teacher):
        if frozen is not None:
            frozen.eval().requires_grad_(False).to(training_device(recipe))
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    data = LatentClips(cache, recipe.distill_batch, recipe.teacher_partition.buffer_frames, caption)
    config = DistillConfig(recipe.teacher_partition, recipe.cfg_scale, recipe.uniform_fraction)
    schedule = Schedule(1.0)

    def loss_fn(m, batch, g):
        return distill_loss(m, teacher, batch, config, schedule, g, uniform_teacher=cold_start_teacher)

    probe = partial(probe_adherence, recipe=recipe, codec=codec, micro_steps=1, cfg_scale=1.0)
    trainer = _loop(recipe, "student", student, loss_fn, data, recipe.distill_steps, recipe.distill_lr,
                    max(1, recipe.distill_steps // 20), 0.99, max(1, recipe.distill_steps // 2), probe)
    return trainer.ema_module().eval()
