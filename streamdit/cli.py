"""Command line: python -m streamdit generate | demo | edit | eval | train | finetune-wan | info."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from .network.config import DTYPES


def _prompt_text(args) -> str:
    if args.prompt_file:
        return Path(args.prompt_file).read_text()
    if not args.prompt:
        raise SystemExit("error: give --prompt TEXT (or a schedule like '0s: a pig ...\\n3s: a cat ...') "
                         "or --prompt-file FILE")
    return args.prompt.replace("\\n", "\n")


def add_compile_arg(p: argparse.ArgumentParser, note: str = "") -> None:
    p.add_argument("--compile", action="store_true", help="torch.compile the network: compiling first (about 45 s "
                   "on a 2-core CPU, seconds once cached on disk), then about 1.4x faster; eager if it fails" + note)


def add_model_file_args(p: argparse.ArgumentParser) -> None:
    """How a model file is read: its family, a LoRA, a decoder and a text encoder (Wan files)."""
    p.add_argument("--family", help="how a Wan-architecture file streams: wan (bidirectional buffer), self-forcing, "
                                    "causvid, causal-forcing, causal-forcing-frame, rolling-forcing, longlive (see "
                                    "'info'); default: the file's own (our metadata) or wan")
    p.add_argument("--lora", help="a LoRA file merged into the model at load (LongLive's lora.pt with "
                                  "longlive_base.pt and --family longlive)")
    p.add_argument("--decoder", help="a Wan 2.1 VAE or TAEHV file for a Wan 2.1 model (ComfyUI: models/vae, "
                                     "models/vae_approx)")
    p.add_argument("--text-encoder", help="text embeddings for a model without its own encoder (Wan): ComfyUI's "
                                          "umT5 file (umt5_xxl_fp16.safetensors or umt5_xxl_fp8_e4m3fn_scaled."
                                          "safetensors, with its tokenizer inside), or 'hashed': a deterministic "
                                          "stand-in of the right width (smoke runs without umT5 weights)")


def load_pipeline(args):
    """The model of --model with --decoder, --family, --lora and --text-encoder; load notes printed."""
    from .pipeline import Pipeline

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = Pipeline.load(args.model, decoder=args.decoder, device=args.device, dtype=DTYPES.get(args.dtype),
                             attention_backend=args.attention, compile=args.compile, family=args.family,
                             lora=args.lora)
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    if args.text_encoder is not None:
        pipe = pipe.with_text_encoder(_text_encoder(args.text_encoder, pipe))
    return pipe


def add_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", help="a prompt, or 'time: prompt' lines (e.g. '0s: a pig walking right on grass')")
    p.add_argument("--prompt-file", help="read the prompt or schedule from a file")
    p.add_argument("--negative", default="", help="negative prompt for classifier-free guidance")
    p.add_argument("--cfg", type=float, default=1.0, help="guidance scale (1 = off, one network pass per call)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="checkpoint (.safetensors); default: the embedded model; 'random:<preset>' "
                                   "for an untrained model of a preset; a Wan 2.1 file (any layout, .pt too)")
    add_model_file_args(p)
    p.add_argument("--recache", action=argparse.BooleanOptionalAction, default=None,
                   help="causal families: on a prompt change, re-run the cached frames under the new prompt "
                        "(LongLive's re-cache; its default) or only switch the cross-attention (the others' default)")
    p.add_argument("--window", type=int, help="causal families: latent frames the KV cache lets a chunk attend to "
                                              "(default: the family's, 21 for Self-Forcing)")
    p.add_argument("--sink", type=int, help="causal families: first latent frames kept in the cache for ever")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--fps", type=float)
    p.add_argument("--buffer-frames", type=int, help="latent frames denoised in the buffer (N*c)")
    p.add_argument("--chunk-frames", type=int, help="frames per chunk c")
    p.add_argument("--micro-steps", type=int, help="network calls per emitted chunk s")
    p.add_argument("--ref-frames", type=int, help="clean reference frames K kept as context")
    p.add_argument("--shift", type=float, help="sigma schedule shift")
    p.add_argument("--transition", type=float, default=0.0, help="seconds over which prompt changes blend")
    p.add_argument("--cold-start", choices=["uniform", "noise"], default="uniform")
    p.add_argument("--cold-steps", type=int, help="network calls per band in the uniform cold start (default: the "
                                                  "model's; the toy model starts with 4, then streams with 1)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=list(DTYPES), default=None)
    p.add_argument("--attention", default="auto", help="attention backend (see 'info')")
    add_compile_arg(p)


def open_stream(args):
    pipe = load_pipeline(args)
    stream = pipe.stream(_prompt_text(args), seed=args.seed, width=args.width, height=args.height, fps=args.fps,
                         buffer_frames=args.buffer_frames, chunk_frames=args.chunk_frames,
                         micro_steps=args.micro_steps, ref_frames=args.ref_frames, shift=args.shift,
                         cfg_scale=args.cfg, negative_prompt=args.negative, transition_seconds=args.transition,
                         cold_start=args.cold_start, window=args.window, sink=args.sink, recache=args.recache,
                         cold_micro_steps=args.cold_steps)
    return pipe, stream


def _text_encoder(name: str, pipe):
    """'hashed' (a deterministic stand-in for smoke runs) or ComfyUI's umT5 file (umt5_xxl_fp16.safetensors,
    umt5_xxl_fp8_e4m3fn_scaled.safetensors), which carries its tokenizer."""
    from .network.text import hashed_text_encoder

    c = pipe.bundle.config
    if name == "hashed":
        return hashed_text_encoder(c.text_dim, c.text_len)
    from .network.umt5 import load_umt5_text_encoder

    try:
        return load_umt5_text_encoder(name, device=pipe.device, text_len=c.text_len)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise ValueError(f"--text-encoder {name}: {exc}") from None


def cmd_generate(args) -> int:
    from .io.png import PngDirWriter
    from .io.progress import Progress
    from .io.video import VideoWriter

    if not args.out and not args.frames_dir:
        raise SystemExit("error: give --out FILE.mp4 (or .webm) and/or --frames-dir DIR")
    pipe, stream = open_stream(args)
    cfg = stream.config
    total = int(round(args.seconds * cfg.fps))
    print(f"model: {pipe.describe()}" + ("  [UNTRAINED: random weights]" if pipe.untrained else ""), file=sys.stderr)
    print(f"stream: {cfg.width}x{cfg.height} @ {cfg.fps:g} fps, family {pipe.family.describe()}, "
          f"{cfg.partition.describe()}, seed {cfg.seed}", file=sys.stderr)
    writers = []
    if args.out:
        writers.append(VideoWriter(args.out, cfg.fps, metadata={"comment": f"streamdit: {_prompt_text(args)}"}))
    if args.frames_dir:
        writers.append(PngDirWriter(args.frames_dir))
    start = time.perf_counter()
    first_frame = None
    done = 0
    try:
        with Progress(total, desc="generate", unit="frame") as bar:
            for frames in stream.frames(total):
                if first_frame is None:
                    first_frame = time.perf_counter() - start
                for w in writers:
                    w.write(frames)
                done += frames.shape[0]
                elapsed = time.perf_counter() - start
                bar.set_postfix(fps=f"{done / elapsed:.1f}")
                bar.update(frames.shape[0])
    finally:
        for w in writers:
            w.close()
    elapsed = time.perf_counter() - start
    where = " and ".join(str(x) for x in (args.out, args.frames_dir) if x)
    print(f"wrote {done} frames ({done / cfg.fps:.2f} s of video at {cfg.fps:g} fps) to {where} in {elapsed:.2f} s: "
          f"{done / elapsed:.1f} FPS, first frame after {first_frame or 0:.2f} s, {stream.calls} network calls")
    return 0


def cmd_demo(args) -> int:
    from .demo import SHOWCASE, run_demo
    from .io.progress import Progress

    if not args.prompt and not args.prompt_file:
        args.prompt = SHOWCASE
    pipe, stream = open_stream(args)
    cfg = stream.config
    print(f"model: {pipe.describe()}" + ("  [UNTRAINED: random weights]" if pipe.untrained else ""), file=sys.stderr)
    print(f"schedule:\n{_prompt_text(args).strip()}", file=sys.stderr)
    start = time.perf_counter()
    with Progress(int(round(args.seconds * cfg.fps)), desc="demo", unit="frame") as bar:
        info = run_demo(stream, args.seconds, args.out, args.strip, every=args.strip_every,
                        on_frames=lambda f: bar.update(f.shape[0]))
    elapsed = time.perf_counter() - start
    print(f"wrote {info['frames']} frames to {args.out} and a {info['strip_frames']}-frame strip to {args.strip} "
          f"in {elapsed:.2f} s: {info['frames'] / elapsed:.1f} FPS")
    return 0


class _InOrder(argparse.Action):
    """A repeatable flag kept with its place among the others of its kind in args.merge_ops (only there), where
    the order matters: eval's --rename applies to the files merged before it."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.merge_ops = [*namespace.merge_ops, (self.dest, values)]


def _read_merge(path: str, command: str, expected: str, valid):
    """An earlier `command --json` file for --merge, checked before anything is measured."""
    import json

    if not Path(path).is_file():
        raise ValueError(f"--merge {path}: no such file (give the --json file of an earlier {command} run)")
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--merge {path}: not an {command} results file (cannot read an {command} results "
                         f"file from text that is not JSON: {e})") from None
    if not valid(data):
        raise ValueError(f"--merge {path}: not an {command} results file (expected {expected} as written by --json)")
    return data


def _log_path(args) -> Path:
    """The eval log of eval / eval-edit: --log, else eval-log.jsonl beside --json, else docs/eval-log.jsonl."""
    return Path(args.log or (Path(args.json).with_name("eval-log.jsonl") if args.json else "docs/eval-log.jsonl"))


def cmd_eval(args) -> int:
    import json

    from .evaluation import EvalSettings, evaluate_model, render_markdown
    from .evaluation.log import append_log, check_sealed, file_sha256, log_entry
    from .evaluation.merging import current_first, rename_model, rename_spec
    from .evaluation.report import groups, model_name, plot_models, result_key
    from .pipeline import Pipeline, default_model_path, default_teacher_path

    results, renames = {}, []
    for flag, value in args.merge_ops:  # earlier runs' results (other processes or sessions), kept unless re-measured
        if flag == "merge":
            results.update(_read_merge(value, "eval", "{model: results}", lambda d: isinstance(d, dict) and all(
                isinstance(r, dict) and "adherence" in r for r in d.values())))
        else:  # applies to what was merged so far
            renames.append(rename_spec(value))
            results = rename_model(results, *renames[-1])
    models = dict(m.split("=", 1) for m in args.model) if args.model else {}
    if not models and not results:
        if default_model_path() is None:
            raise ValueError("no embedded default model in this checkout: give --model NAME=PATH")
        models["student"] = str(default_model_path())
        if default_teacher_path() is not None:
            models["teacher"] = str(default_teacher_path())
    seeds = "dev" if args.dev else args.seed_set
    log = _log_path(args)
    shas = {name: file_sha256(path) for name, path in models.items()}
    if seeds == "sealed":  # refuse before measuring anything
        for name, path in models.items():
            check_sealed(log, shas[name], f"{name} = {path}", args.rescore_sealed)
    for name, path in models.items():
        pipe = Pipeline.load(path, device=args.device, compile=args.compile)
        meta = pipe.bundle.meta
        cfg = args.cfg if args.cfg is not None else float(meta.get("cfg_scale", 1.0))
        s = EvalSettings(clips_per_scene=args.clips_per_scene, scenes=args.scenes, clip_seconds=args.seconds,
                         long_streams=args.long_streams, long_seconds=args.long_seconds,
                         change_streams=args.change_streams, cfg_scale=cfg, seed_set=seeds, judge=args.judge)
        r = evaluate_model(pipe, s, name)
        r.update(path=path, sha256=shas[name])
        results[result_key(name, args.judge, seeds, results)] = r
        append_log(log, log_entry(name, path, shas[name], r))
        a, last = r["adherence"], r["long"]["last"]
        print(f"{name} ({seeds}, judge {args.judge}): " + " ".join(
            f"{k} {a[k]['value']:.3f}" for k in ("animal", "background", "motion", "one_sprite", "all") if k in a)
            + f"; last 10 s animal {last['animal']['value']:.3f}; pig->cat {r['change']['cat_after']['value']:.3f} "
            f"({r['seconds']:.0f} s; logged to {log})")
    results = current_first(results, renames)
    files = {model_name(k, r): Path(r["path"]).name for k, r in results.items()}
    header = ("# Evaluation\n\nWritten by `python -m streamdit eval` (seed sets: `streamdit/toyworld/seed_sets.py`; "
              "every scoring run is a line of [eval-log.jsonl](eval-log.jsonl)). Models: "
              + ", ".join(f"{n} = `{f}`" for n, f in files.items()) + ".\n")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(render_markdown(results, header))
        print(f"wrote {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")
    if args.plot and results:  # the first section's models (judge v2 on sealed, when there)
        (judge, seed_name), first = next(iter(groups(results).items()))
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        if plot_models(first, args.plot, f"judge {judge}, {seed_name} set"):
            print(f"wrote {args.plot}")
    return 0


def _edit_source(args):
    """The edit's FrameSource: a video file, raw rgb24 frames on stdin ('-'), or a folder of numbered images
    (live: read as it grows). Bad or missing --input-size / --input-fps say what to pass."""
    from .io.live import parse_size
    from .sampling.sources import FrameSource

    fps = None
    if args.input_fps is not None:
        try:
            fps = float(args.input_fps)
        except ValueError:
            fps = float("nan")
        if not 0 < fps < float("inf"):
            raise ValueError(f"--input-fps {args.input_fps!r} is not a frame rate: give the input's frames per "
                             "second, e.g. --input-fps 30")
    if args.queue_frames < 1:
        raise ValueError(f"--queue-frames {args.queue_frames}: give at least 1 (frames held for the edit)")
    if not args.stall_timeout > 0:
        raise ValueError(f"--stall-timeout {args.stall_timeout:g}: give a number of seconds > 0, e.g. 10")
    live = dict(when_behind=args.when_behind, queue_frames=args.queue_frames, stall_timeout=args.stall_timeout)
    if args.input == "-":
        missing = [o for o, v in (("--input-size WxH", args.input_size), ("--input-fps F", fps)) if v is None]
        if missing:
            raise ValueError("--input - reads raw rgb24 frames from stdin, which carry no size or frame rate: give "
                             f"{' and '.join(missing)}, e.g. --input-size 640x480 --input-fps 30 (the size and rate "
                             "of what you pipe in, e.g. ffmpeg ... -f rawvideo -pix_fmt rgb24 -)")
        return FrameSource.from_stdin(*parse_size(args.input_size), fps, **live)
    if args.input_size is not None:
        raise ValueError("--input-size is for raw frames on stdin (--input -); a video file or an image folder "
                         "has its own frame size")
    if Path(args.input).is_dir():
        if fps is None:
            raise ValueError(f"--input {args.input} is a folder of images, which carry no frame rate: give "
                             "--input-fps F, e.g. --input-fps 16")
        return FrameSource.from_folder(args.input, fps, **live)
    if fps is not None:
        raise ValueError("--input-fps is for stdin (--input -) and image folders; a video file has its own rate")
    return FrameSource.from_path(args.input)


def cmd_edit(args) -> int:
    from .io.progress import Progress
    from .io.video import VideoWriter

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = _edit_source(args)  # before the model: a bad input fails fast, and stdin is read from now on
        pipe = load_pipeline(args)
        size = {k: getattr(args, k) for k in ("width", "height", "buffer_frames", "chunk_frames")
                if getattr(args, k) is not None}
        stream = pipe.edit(source, _prompt_text(args), strength=args.strength, seed=args.seed,
                           cfg_scale=args.cfg, negative_prompt=args.negative, micro_steps=args.micro_steps,
                           lookahead=not (args.live or source.live), transition_seconds=args.transition,
                           cold_micro_steps=args.cold_steps, **size)
        cfg = stream.config
        print(f"model: {pipe.describe()}" + ("  [UNTRAINED: random weights]" if pipe.untrained else ""),
              file=sys.stderr)
        print(f"edit: {args.input} ({source.length or '?'} frames @ {source.fps:g} fps) -> {cfg.width}x{cfg.height}, "
              f"strength {stream.strength:g} ("
              + (f"asked {args.strength:g}" if args.strength is not None else "the default") + "; allowed: "
              f"{', '.join(f'{x:g}' for x in stream.allowed_strengths())}), latency {stream.latency_frames} frames"
              + (f", family {pipe.family.name}" if pipe.family.causal else ""), file=sys.stderr)
        # a video file's audio goes along (stdin and image folders have none); the writer takes the source's first
        # audio track if it has one, re-encoded, from time 0 (output frame k is source frame k), cut to the frames
        audio_from = None if args.no_audio or args.input == "-" or not Path(args.input).is_file() else args.input
        start, done = time.perf_counter(), 0
        with VideoWriter(args.out, cfg.fps, metadata={"comment": f"streamdit edit: {_prompt_text(args)}"},
                         audio_from=audio_from) as w, \
                Progress(source.length, desc="edit", unit="frame") as bar:
            print("audio: " + ("dropped (--no-audio)" if args.no_audio else "none (live input)" if audio_from is None
                               else "none in the source" if w.audio is None else
                               f"the source's ({w.audio['codec']} {w.audio['sample_rate']} Hz "
                               f"{w.audio['channels']}), re-encoded"), file=sys.stderr)
            for frames in stream.frames():
                w.write(frames)
                done += frames.shape[0]
                bar.set_postfix(fps=f"{done / (time.perf_counter() - start):.1f}")
                bar.update(frames.shape[0])
    for msg in dict.fromkeys(str(w.message) for w in caught):
        print(f"note: {msg}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"wrote {done} frames to {args.out} in {elapsed:.2f} s: {done / elapsed:.1f} FPS, "
          f"{stream.calls} network calls")
    return 0


def cmd_eval_edit(args) -> int:
    import json

    from .evaluation.edit_scores import edit_markdown, edit_scores, edit_sources, guidance, plot_sweep
    from .evaluation.log import append_log, check_sealed, edit_log_entry, file_sha256
    from .pipeline import Pipeline, default_model_path

    earlier_rows = []
    for path in args.merge or []:  # rows of an earlier run of the same model, kept unless measured again
        earlier_rows += _read_merge(path, "eval-edit", "[rows]", lambda d: isinstance(d, list) and all(
            isinstance(r, dict) and "background_psnr" in r for r in d))
    path = args.model or (str(default_model_path()) if default_model_path() else None)
    if path is None:
        raise ValueError("no embedded default model in this checkout: give --model PATH")
    log = _log_path(args)
    sha = file_sha256(path)
    if args.seed_set == "sealed":  # refuse before measuring anything
        check_sealed(log, sha, path, args.rescore_sealed, kind="edit")
    pipe = Pipeline.load(path, device=args.device, compile=args.compile)
    d = pipe.bundle.defaults
    strengths = [float(x) for x in args.strengths.split(",")]
    sources = edit_sources(args.sources, args.seconds, d.fps, (d.height, d.width), args.seed_set)
    rows = []
    for cfg in (float(x) for x in args.cfg.split(",")):
        rows += edit_scores(pipe, strengths, sources, cfg_scale=cfg, negative=args.negative, judge=args.judge,
                            seed=tuple(range(args.noise_seeds)))
    append_log(log, edit_log_entry(Path(path).name, path, sha, args.seed_set, args.sources, args.seconds, rows))
    for r in rows:
        r["seed_set"] = args.seed_set
        print(f"{guidance(r)}, strength {r['strength']:.3f}: cat {r['target']['value']:.3f}, background "
              f"{r['background_psnr']:.1f} dB (worst {r['worst_psnr']:.1f}), centroid {r['centroid_px']:.2f} px, "
              f"{r['fps']:.1f} FPS")
    measured = {(guidance(r), r["strength"]) for r in rows}
    rows += [r for r in earlier_rows if (guidance(r), r["strength"]) not in measured]
    rows.sort(key=lambda r: (r.get("cfg", 1.0), r["strength"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(edit_markdown(rows, Path(path).name, args.sources, args.seconds, d.width))
        print(f"wrote {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.plot and plot_sweep(rows, args.plot):
        print(f"wrote {args.plot}")
    return 0


def cmd_info(args) -> int:
    from .network import attention
    from .network.config import PRESETS
    from .pipeline import default_model_path

    print(f"embedded default model: {default_model_path() or 'none in this checkout (a random toy model is used)'}")
    print("presets:")
    for p in PRESETS.values():
        print(f"  {p.name:18s} dim {p.model.dim:5d} layers {p.model.num_layers:3d}  {p.note}")
    from .sampling.families import FAMILIES
    print("families (--family):")
    for f in FAMILIES.values():
        print(f"  {f.describe()}")
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        print(f"attention backends on {dev}: {', '.join(attention.available_backends(torch.device(dev)))}")
    return 0


def cmd_finetune_wan(args) -> int:
    from .network.config import ModelConfig
    from .train.wan_finetune import WanFinetune, run

    config = ModelConfig.from_dict(json.loads(args.config)) if args.config else None
    init = args.init
    if args.stage == "student" and init is None and config is None:
        init = str(Path(args.out).parent / "teacher" / "streamdit-wan-teacher.safetensors")
    default_lr = 1e-5 if args.stage == "teacher" else 5e-6
    recipe = WanFinetune(data=args.data, out=args.out, stage=args.stage, init=init, config=config,
                         steps=args.steps, lr=args.lr if args.lr is not None else default_lr,
                         batch=args.batch, precision=args.precision, checkpointing=not args.no_checkpointing,
                         parallel=args.parallel, checkpoint_every=args.checkpoint_every,
                         teacher_micro_steps=args.teacher_micro_steps, cfg_scale=args.cfg, chunks=args.chunks,
                         chunk_frames=args.chunk_frames)
    path = run(recipe)
    if path is not None:
        print(f"wrote {path}")
    return 0


def cmd_train(args) -> int:
    from .train import distributed
    from .train.toy import STAGES, ToyRecipe, run

    if args.preset != "toy":
        raise ValueError(f"the built-in recipe trains the 'toy' preset; for {args.preset!r} see docs/training.md "
                         "(streamdit.train.Trainer with your latents)")
    distributed.init_from_env()
    if args.variant != "streamdit":
        if args.teacher_from:
            raise ValueError("--teacher-from continues the StreamDiT recipe; baselines train their own teacher")
        recipe = ToyRecipe.baseline(args.variant, args.out, codec_from=args.codec_from)
        if args.quick:
            quick = ToyRecipe.quick(args.out)
            for k in ("ae_steps", "ae_batch", "cache_clips", "teacher_steps", "batch", "warmup"):
                setattr(recipe, k, getattr(quick, k))
    else:
        recipe = ToyRecipe.quick(args.out) if args.quick else ToyRecipe(out=args.out)
        recipe.codec_from = args.codec_from
        recipe.teacher_from = args.teacher_from
    if args.teacher_steps:
        recipe.teacher_steps = args.teacher_steps
    recipe.override([f"device={args.device}", *(args.set or [])])
    stages = tuple(args.stages.split(",")) if args.stages else STAGES
    written = run(recipe, stages, probe_every=args.probe_every)
    for role, path in written.items():
        print(f"{role}: {path}")
    distributed.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m streamdit", description="StreamDiT streaming video generation")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="stream a video from a prompt (or a prompt schedule) to a file")
    add_stream_args(g)
    g.add_argument("--seconds", type=float, default=5.0)
    g.add_argument("--out", help="output video (.mp4 or .webm), written as frames arrive")
    g.add_argument("--frames-dir", help="also write numbered PNG frames here")
    g.set_defaults(func=cmd_generate)
    d = sub.add_parser("demo", help="a short showcase: several prompts and prompt changes -> mp4 + frame strip PNG")
    add_stream_args(d)
    d.add_argument("--seconds", type=float, default=15.0)
    d.add_argument("--out", default="demo.mp4", help="output video (.mp4 or .webm)")
    d.add_argument("--strip", default="demo-strip.png", help="frame strip PNG (one frame per --strip-every s)")
    d.add_argument("--strip-every", type=float, default=1.0)
    d.set_defaults(func=cmd_demo)
    e = sub.add_parser("eval", help="judge a toy-world model on a held-out seed set and write the tables")
    e.add_argument("--model", action="append", help="NAME=PATH (repeat); default: the embedded student and teacher")
    e.add_argument("--cfg", type=float, help="guidance scale (default: the model's own, 1 for the student)")
    e.add_argument("--clips-per-scene", type=int, default=1, help="clips per animal x action x background (48 scenes)")
    e.add_argument("--scenes", type=int, help="judge only this many of the 48 scenes (a quick look)")
    e.add_argument("--seconds", type=float, default=3.0, help="length of each adherence clip")
    e.add_argument("--long-streams", type=int, default=12)
    e.add_argument("--long-seconds", type=float, default=60.0)
    e.add_argument("--change-streams", type=int, default=8)
    e.add_argument("--seed-set", choices=("dev", "sealed", "ci"), default="dev",
                   help="streamdit/toyworld/seed_sets.py: dev (every decision), sealed (once per shipped model, "
                        "sealed captions; refused for a file already in the log), ci (the regression test's)")
    e.add_argument("--dev", action="store_true", help="the same as --seed-set dev")
    e.add_argument("--judge", choices=("v1", "v2"), default="v2", help="v2 also counts sprites (docs/judge-v2.md)")
    e.add_argument("--log", help="append-only log, one line per scored model (default: eval-log.jsonl beside --json)")
    e.add_argument("--rescore-sealed", action="store_true",
                   help="score a model file on the sealed set again although the log has it scored there")
    e.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_compile_arg(e, " (same scores to float rounding)")
    e.add_argument("--out", default="docs/eval.md")
    e.add_argument("--json", default="docs/eval.json")
    e.add_argument("--plot", default="docs/img/eval-models.png", help="bar chart of every model's scores ('' = none)")
    e.add_argument("--merge", action=_InOrder, help="an earlier run's --json file (repeat): its models join the "
                                                   "tables unless measured again here; with no --model, nothing "
                                                   "is measured and the tables are rewritten from these files")
    e.add_argument("--rename", action=_InOrder, metavar="OLD=NEW", help="rename model OLD (every kind of run) in "
                   "the files merged before this flag, e.g. when a shipped file is replaced: --merge docs/eval.json "
                   "--rename student=v11-student --merge new-dev.json --rename v12-student=student; the rows of a "
                   "model renamed to OLD are listed just before NEW's, and a path that now holds another file is "
                   "marked replaced")
    e.set_defaults(func=cmd_eval, merge_ops=[])
    ed = sub.add_parser("edit", help="edit a video toward a prompt in the moving buffer (e.g. a pig into a cat)")
    from .io.live import QUEUE_FRAMES, STALL_TIMEOUT, WHEN_BEHIND

    ed.add_argument("--input", required=True, help="source: a video file (any format ffmpeg reads); '-' for raw "
                    "rgb24 frames on stdin (with --input-size, --input-fps); or a folder of numbered png/jpg "
                    "frames, read in numeric order as it grows (with --input-fps); see docs/editing.md")
    ed.add_argument("--prompt", help="target prompt or 'time: prompt' schedule")
    ed.add_argument("--prompt-file")
    ed.add_argument("--strength", type=float, default=None, help="how much to change: 0.3 keeps most, 1 ignores the "
                    "source (rounded onto the model's u grid); default 0.875, which changes the animal with no "
                    "negative prompt and one network pass (docs/editing.md)")
    ed.add_argument("--out", required=True)
    ed.add_argument("--no-audio", action="store_true", help="drop the source's audio (by default a video file's "
                                                            "first audio track is kept, in sync, cut to the output)")
    ed.add_argument("--seed", type=int, default=0)
    ed.add_argument("--cfg", type=float, default=1.0, help="guidance; 2 with --negative naming the source steers "
                                                           "the edit away from it (two network passes per call)")
    ed.add_argument("--negative", default="", help="what the source shows, e.g. 'a pig walking right on grass'")
    ed.add_argument("--micro-steps", type=int)
    ed.add_argument("--cold-steps", type=int, help="network calls per band in the edit's start (default: as "
                                                   "--micro-steps)")
    ed.add_argument("--transition", type=float, default=0.0)
    ed.add_argument("--live", action="store_true", help="read the source as late as possible (no lookahead): "
                                                        "what a live feed does; lower latency (always on for "
                                                        "stdin and folders)")
    ed.add_argument("--input-size", metavar="WxH", help="--input -: size of the raw rgb24 frames, e.g. 640x480")
    ed.add_argument("--input-fps", metavar="F", help="--input - or a folder: frames per second of the input "
                                                     "(the output keeps it)")
    ed.add_argument("--when-behind", choices=WHEN_BEHIND, default="throttle",
                    help="stdin or a folder arriving faster than the edit runs: throttle = stop reading until the "
                         "edit catches up (the writer waits; nothing lost); drop = keep the newest "
                         "--queue-frames frames, drop (and count) older ones")
    ed.add_argument("--queue-frames", type=int, default=QUEUE_FRAMES,
                    help="stdin or a folder: most input frames waiting for the edit (the memory bound)")
    ed.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT, metavar="SECONDS",
                    help="stdin or a folder: when no frame comes for this long, the input ends there (the output "
                         "is finalised as at the end of a file)")
    ed.add_argument("--model", help="checkpoint; default: the embedded model; a Wan 2.1 file (any layout, .pt too) "
                                    "with --decoder and --text-encoder")
    add_model_file_args(ed)
    ed.add_argument("--width", type=int, help="output width (default: the model's)")
    ed.add_argument("--height", type=int, help="output height (default: the model's)")
    ed.add_argument("--buffer-frames", type=int, help="latent frames in the buffer (N c)")
    ed.add_argument("--chunk-frames", type=int, help="latent frames per chunk c")
    ed.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ed.add_argument("--dtype", choices=list(DTYPES), default=None)
    ed.add_argument("--attention", default="auto")
    add_compile_arg(ed)
    ed.set_defaults(func=cmd_edit)
    ee = sub.add_parser("eval-edit", help="measure pig -> cat editing on held-out renders over a strength sweep")
    ee.add_argument("--model", help="default: the embedded model")
    ee.add_argument("--strengths", default="0.25,0.375,0.5,0.625,0.75,0.875,1.0")
    ee.add_argument("--sources", type=int, default=12, help="held-out pig renders (every action x background: 12)")
    ee.add_argument("--seconds", type=float, default=3.0)
    ee.add_argument("--cfg", default="1", help="guidance scales to sweep, comma-separated (e.g. 1,2): above 1 the "
                                               "edit is steered away from --negative, at twice the network calls")
    ee.add_argument("--negative", default="source", help="negative prompt when cfg > 1; 'source': each source "
                                                         "clip's own caption (what the video shows)")
    ee.add_argument("--seed-set", choices=("dev", "sealed", "ci"), default="dev",
                    help="whose pig sources (streamdit/toyworld/seed_sets.py): dev for every choice of strength or "
                         "guidance, sealed once per shipped model")
    ee.add_argument("--judge", choices=("v1", "v2"), default="v2", help="toyworld's judge (v1: the old tables)")
    ee.add_argument("--noise-seeds", type=int, default=3, help="edits per source, each with its own noise seed")
    ee.add_argument("--log", help="the append-only log (default: eval-log.jsonl beside --json)")
    ee.add_argument("--rescore-sealed", action="store_true", help="score a model on the sealed set again")
    ee.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_compile_arg(ee, " (same scores to float rounding)")
    ee.add_argument("--out", default="docs/edit-eval.md")
    ee.add_argument("--json", default="docs/edit-eval.json")
    ee.add_argument("--plot", default="docs/img/edit-sweep.png")
    ee.add_argument("--merge", action="append", help="an earlier run's --json file of the same model (repeat): "
                                                     "its rows join the table unless measured again here")
    ee.set_defaults(func=cmd_eval_edit)
    i = sub.add_parser("info", help="presets, attention backends and the default model")
    i.set_defaults(func=cmd_info)
    from .train.toy import STAGES as TOY_STAGES

    t = sub.add_parser("train", help="train the toy model from scratch (resumes from OUT's checkpoints)")
    t.add_argument("preset", nargs="?", default="toy")
    t.add_argument("--out", default="runs/toy", help="run folder: checkpoints, logs, loss curves, exports")
    t.add_argument("--stages", help=f"comma-separated subset of {','.join(TOY_STAGES)} (student and export load a "
                                    "finished teacher from OUT unless teacher is included)")
    t.add_argument("--teacher-steps", type=int, help="override the recipe's teacher steps")
    t.add_argument("--probe-every", type=int, default=1000, help="judge a few sampled clips every N teacher steps")
    t.add_argument("--quick", action="store_true", help="a few steps of every stage (smoke test)")
    t.add_argument("--variant", default="streamdit", choices=["streamdit", "diagonal", "extension"],
                   help="the shipped recipe, or a baseline of the paper's comparison (teacher only)")
    t.add_argument("--codec-from", help="reuse the autoencoder of this checkpoint (e.g. the shipped model)")
    t.add_argument("--teacher-from", help="start from this exported teacher instead of training one (its DiT and "
                                          "text encoder; the refinement, tune and student follow)")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where the DiT stages train (the autoencoder, cache, probes and exports stay on the CPU)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a number of the recipe (repeat), e.g. --set appear_clips=600 --set distill_steps=800")
    t.set_defaults(func=cmd_train)
    w = sub.add_parser("finetune-wan", help="fine-tune a Wan 2.1 DiT into StreamDiT (teacher), or distil it "
                                            "(student), on a folder of precomputed latents; runs under torchrun")
    w.add_argument("--data", required=True, help="dataset folder: clips/*.safetensors with latents and context")
    w.add_argument("--out", required=True, help="stage folder: checkpoints, log, loss curve, export")
    w.add_argument("--stage", default="teacher", choices=["teacher", "student"])
    w.add_argument("--init", help="teacher: the Wan 2.1 DiT file (any layout); student: the teacher export "
                                  "(default OUT/../teacher/streamdit-wan-teacher.safetensors)")
    w.add_argument("--config", help="JSON ModelConfig to start from random weights instead (tests)")
    w.add_argument("--steps", type=int, default=10_000)
    w.add_argument("--lr", type=float, help="default 1e-5 (teacher), 5e-6 (student)")
    w.add_argument("--batch", type=int, default=1, help="clips per process and step")
    w.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    w.add_argument("--no-checkpointing", action="store_true", help="keep activations (more memory, ~30%% faster)")
    w.add_argument("--parallel", default="fsdp", choices=["fsdp", "ddp"], help="under torchrun")
    w.add_argument("--checkpoint-every", type=int, default=200)
    w.add_argument("--chunks", type=int, default=8, help="N: chunks in the buffer")
    w.add_argument("--chunk-frames", type=int, default=2, help="c: latent frames per chunk (deployed partition)")
    w.add_argument("--teacher-micro-steps", type=int, default=4, help="s of the guided teacher partition")
    w.add_argument("--cfg", type=float, default=5.0, help="guidance of the teacher (student stage)")
    w.set_defaults(func=cmd_finetune_wan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the output file holds the frames written so far", file=sys.stderr)
        return 130
