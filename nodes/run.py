"""The run engine behind a STREAMDIT_FRAMES link: generate a run's frames once, hand each chunk to every consumer.

ComfyUI runs a node only after all of its inputs have returned, so a sampler that generated the
frames itself would show nothing until it ended. Instead the sampler (or the Video Edit node) only
prepares the stream and returns a StreamRun: "the next `frames` frames of stream X". The first
consumer node that executes pulls it, which generates the frames chunk by chunk and hands every chunk
at once to a sink per consumer found in the prompt graph (the factories the creator passes: Live
Preview nodes send it to the browser, Save Video nodes append it to their file); any other consumer
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
from . import host, memory, registry

FRAMES_TYPE = "STREAMDIT_FRAMES"


class Sink(Protocol):
    def write(self, frames: torch.Tensor, index: int, run: StreamRun) -> None: ...

    def close(self, ok: bool, run: StreamRun) -> Any: ...


# consumer class name -> factory(run, node_id, node_inputs) -> Sink | None (None: it reads the spool instead)
SinkFactory = Callable[["StreamRun", str, dict], "Sink | None"]


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

    def __init__(self, entry: registry.Entry, frames: int, sampler_id: str | None, stream_id: str,
                 graph: dict | None, extra_pnginfo: dict | None, new_stream: bool, sinks: dict[str, SinkFactory]):
        stream = entry.stream
        self.entry, self.sink_factories = entry, sinks
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
        self.audio_source: str | None = None  # a file whose audio goes with these frames (an edit's source)
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
            factory = self.sink_factories.get(class_type)
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
        memory.load(entry.models)  # listed as in use; core makes room for them (or reloads them if it unloaded them)
        sinks = self._open_sinks()
        if self.spool is not None:
            sinks["__spool__"] = self.spool
        progress = host.Progress(self.frames)
        stream.before_call = host.interrupt_check()
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
