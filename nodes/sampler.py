"""StreamDiT Stream Sampler and the lazy run handle (STREAMDIT_FRAMES) its consumers pull from.

ComfyUI runs a node only after all of its inputs have returned, so a sampler that generated the
frames itself would show nothing until it ended. Instead the sampler only prepares the stream (new,
or continued from the registry) and returns a StreamRun: "the next `frames` frames of stream X".
The first consumer node that executes pulls it, which generates the frames chunk by chunk and hands
every chunk at once to a sink per consumer found in the prompt graph: Live Preview nodes send it
to the browser over the websocket, Save Video nodes append it to their file, any other consumer
gets it through a temporary raw spool file. Nothing keeps the whole run in memory, and the file and
the previews advance while the run is still going. Later consumers find their results ready.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from ..streamdit.io.video import to_uint8
from . import host, registry
from .prompts import text_identity, text_pipeline
from .settings import check_size_for_model

FRAMES_TYPE = "STREAMDIT_FRAMES"


class Sink(Protocol):
    def write(self, frames: torch.Tensor, index: int, run: StreamRun) -> None: ...

    def close(self, ok: bool, run: StreamRun) -> Any: ...


# consumer class name -> factory(run, node_id, node_inputs) -> Sink | None (None: it reads the spool instead)
SINK_FACTORIES: dict[str, Callable[[StreamRun, str, dict], Sink | None]] = {}


def register_sink(class_name: str):
    def deco(factory):
        SINK_FACTORIES[class_name] = factory
        return factory

    return deco


class Spool:
    """The run's frames as raw uint8 RGB in a temporary file, for consumers that need them after the run."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        fd, self.path = tempfile.mkstemp(prefix="streamdit_spool_", suffix=".rgb", dir=directory)
        self._file = os.fdopen(fd, "wb")
        self.frames = 0
        self.shape: tuple[int, int] | None = None

    def write(self, frames: torch.Tensor, index: int, run: StreamRun) -> None:
        arr = to_uint8(frames)
        self.shape = arr.shape[1:3]
        self._file.write(arr.tobytes())
        self.frames += arr.shape[0]

    def close(self, ok: bool, run: StreamRun) -> str:
        self._file.close()
        return self.path

    def read(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """uint8 [t, H, W, 3]."""
        h, w = self.shape or (0, 0)
        count = self.frames - start if count is None else count
        frame = h * w * 3
        with open(self.path, "rb") as f:
            f.seek(start * frame)
            data = f.read(count * frame)
        return np.frombuffer(data, dtype=np.uint8).reshape(-1, h, w, 3)


def find_consumers(graph: dict | None, node_id: str | None) -> list[tuple[str, str, dict]]:
    """(node id, class_type, inputs) of every node in the API prompt fed by output 0 of node_id."""
    out = []
    for nid, node in (graph or {}).items():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        if any(isinstance(v, list) and len(v) == 2 and str(v[0]) == str(node_id) and v[1] == 0
               for v in inputs.values()):
            out.append((str(nid), str(node.get("class_type")), inputs))
    return out


class StreamRun:
    """What flows on a STREAMDIT_FRAMES link: the next `frames` frames of a live stream, made on first pull."""

    def __init__(self, entry: registry.Entry, model, frames: int, sampler_id: str | None, stream_id: str,
                 graph: dict | None, extra_pnginfo: dict | None, new_stream: bool):
        stream = entry.stream
        self.entry, self.model = entry, model
        self.frames, self.sampler_id, self.stream_id = int(frames), sampler_id, stream_id
        self.graph, self.extra_pnginfo, self.new_stream = graph, extra_pnginfo, new_stream
        self.run_index = entry.runs  # 1 for the first run of a stream
        self.start_frame = stream.frames_emitted  # index of this run's first frame in the stream
        self.fps = float(stream.config.fps)
        self.width, self.height = stream.config.width, stream.config.height
        self.state = "pending"  # -> "done" | "failed"
        self.error: str | None = None
        self.frames_done = 0
        self.seconds = 0.0  # wall time of generation
        self.results: dict[str, Any] = {}  # consumer node id -> what its sink returned on close
        self.spool: Spool | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # shows in ComfyUI's error reports
        return (f"StreamRun(stream={self.stream_id!r}, run={self.run_index}, frames={self.frames}, "
                f"start={self.start_frame}, state={self.state})")

    @property
    def gen_fps(self) -> float:
        return self.frames_done / self.seconds if self.seconds > 0 else 0.0

    def info(self) -> dict:
        """Numbers for the UI and for /history."""
        return {"stream_id": self.stream_id, "run": self.run_index, "frames": self.frames_done,
                "start_frame": self.start_frame, "fps": self.fps, "gen_fps": round(self.gen_fps, 2),
                "width": self.width, "height": self.height, "new_stream": self.new_stream,
                "streams_alive": registry.alive()}

    # -- pulling ---------------------------------------------------------------------------------
    def pull(self) -> None:
        """Make sure the frames were generated; the first consumer to call this generates them."""
        with self._lock:
            if self.state == "done":
                return
            if self.state == "failed":
                raise RuntimeError(f"this StreamDiT run did not finish ({self.error}); queue the prompt again to "
                                   "continue the stream")
            self._generate()

    def _open_sinks(self) -> dict[str, Sink]:
        sinks: dict[str, Sink] = {}
        needs_spool = False
        for node_id, class_type, inputs in find_consumers(self.graph, self.sampler_id):
            factory = SINK_FACTORIES.get(class_type)
            sink = factory(self, node_id, inputs) if factory is not None else None
            if sink is None:
                needs_spool = True
            else:
                sinks[node_id] = sink
        if needs_spool or not self.graph:
            self.spool = Spool(host.temp_directory())
            self.entry.temp_files.append(self.spool.path)
        return sinks

    def _generate(self) -> None:
        entry, stream = self.entry, self.entry.stream
        sinks = self._open_sinks()
        if self.spool is not None:
            sinks["__spool__"] = self.spool
        progress = host.Progress(self.frames)
        stream.before_call = host.interrupt_check()
        self.model.pipeline.bundle.model.attention_backend = self.model.attention
        entry.busy = True
        ok = False
        start = time.perf_counter()
        chunks = stream.frames(self.frames)
        try:
            for chunk in chunks:
                index = self.start_frame + self.frames_done
                self.frames_done += chunk.shape[0]
                self.seconds = time.perf_counter() - start
                for sink in sinks.values():
                    sink.write(chunk, index, self)
                progress.update(self.frames_done, self.frames)  # also raises if the user cancelled
            ok = True
        except BaseException as exc:
            self.error = ("cancelled" if host.is_interrupt(exc) else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            chunks.close()  # frames decoded but not handed out stay in the stream for the next run
            stream.before_call = None
            self.seconds = time.perf_counter() - start
            entry.busy = False
            entry.touch()
            self.state = "done" if ok else "failed"
            failures = []
            for node_id, sink in sinks.items():
                try:
                    self.results[node_id] = sink.close(ok, self)
                except Exception as exc:
                    failures.append(f"{exc}")
            if ok and failures:
                raise RuntimeError("; ".join(failures))
        host.log.info("streamdit: %s: %d frames in %.2f s (%.1f fps)", self.stream_id, self.frames_done,
                      self.seconds, self.gen_fps)

    def read_frames(self) -> torch.Tensor:
        """All frames of the run as an IMAGE batch [t, H, W, 3] float32 (from the spool)."""
        self.pull()
        if self.spool is None:
            raise RuntimeError("this run kept no frames (no spool was opened); this is a bug in the StreamDiT pack")
        arr = self.spool.read()
        return torch.from_numpy(arr.copy()).float().div_(255.0)


class StreamDiTSampler:
    DESCRIPTION = ("Generates the next few seconds of a live video stream. Queue again to continue the same "
                   "stream seamlessly (with auto-queue it runs endlessly); edit the prompt schedule between runs to "
                   "change the video live. Connect its frames to Live Preview and/or Save Video: they receive the "
                   "frames while they are being made.")
    CATEGORY = "StreamDiT"
    RETURN_TYPES = (FRAMES_TYPE,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("This run's frames, made while the connected Live Preview / Save Video nodes run.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("STREAMDIT_MODEL", {"tooltip": "From StreamDiT Model Loader."}),
                "settings": ("STREAMDIT_SETTINGS", {"tooltip": "From StreamDiT Buffer Settings."}),
                "prompt": ("STREAMDIT_PROMPT", {"tooltip": "From StreamDiT Prompt Schedule."}),
                "seconds": ("FLOAT", {"default": 5.0, "min": 0.0625, "max": 3600.0, "step": 0.5, "tooltip":
                            "Seconds of video made per queued run. Short runs with auto-queue give a live, "
                            "steerable stream; each run continues where the last one stopped."}),
                "stream_id": ("STRING", {"default": "default", "tooltip": "Name of the stream to continue. Two "
                              "samplers, or two ids, keep separate streams."}),
                "reset": ("BOOLEAN", {"default": False, "label_on": "start over", "label_off": "continue",
                          "tooltip": "Start the stream over on the next run (and every run while it is on)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "graph": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")  # every queue is a new run of the stream

    def sample(self, model, settings, prompt, seconds, stream_id, reset, unique_id=None, graph=None,
               extra_pnginfo=None):
        pipe = text_pipeline(model, prompt)
        frames = max(1, round(float(seconds) * settings.fps))
        key = registry.stream_key(stream_id, unique_id)
        fingerprint = (model.identity, settings.fingerprint(), text_identity(prompt))
        entry = registry.get(key)
        new = bool(reset) or entry is None or entry.fingerprint != fingerprint
        if new:
            bundle = model.pipeline.bundle
            check_size_for_model(settings, bundle.codec.spatial_factor, tuple(bundle.config.patch_size))
            kwargs = settings.stream_kwargs()
            if pipe.family.causal:  # the family's own sampler: only the size, frame rate and seed apply
                kwargs = {k: kwargs[k] for k in ("seed", "width", "height", "fps")}
                host.log.info("streamdit: %s", pipe.family.describe())
            stream = pipe.stream(prompt.schedule, cfg_scale=prompt.cfg,
                                           negative_prompt=prompt.negative_prompt,
                                           transition_seconds=prompt.transition_seconds, **kwargs)
            entry = registry.Entry(key, stream, fingerprint, prompt.schedule)
            registry.put(entry)
        else:
            apply_live_changes(entry, prompt)
            entry.cleanup()  # spools of earlier runs
        entry.runs += 1
        entry.touch()
        return (StreamRun(entry, model, frames, unique_id, stream_id.strip() or "default", graph, extra_pnginfo,
                          new),)


def apply_live_changes(entry: registry.Entry, prompt) -> None:
    """Prompt edits between runs change the running stream instead of starting a new one."""
    stream = entry.stream
    if prompt.schedule != entry.schedule:
        stream.set_schedule(prompt.schedule)
        entry.schedule = prompt.schedule
    denoise = stream.denoise
    if prompt.negative_prompt != getattr(denoise, "negative_prompt", prompt.negative_prompt):
        if stream.check_prompt is not None:
            stream.check_prompt(prompt.negative_prompt)
        denoise.negative_prompt = prompt.negative_prompt
    if stream.config.cache is not None and float(prompt.cfg) != 1.0:
        raise ValueError("this model's family is guidance-distilled: it streams at cfg 1; set cfg back to 1")
    if hasattr(denoise, "cfg_scale"):
        denoise.cfg_scale = float(prompt.cfg)
    stream.prompts.transition_frames = prompt.transition_seconds * stream.config.fps
