"""Live streams, kept at module level and keyed by stream id, so they outlive node instances (hosts drop
those under some cache modes) and queued runs continue where the last one stopped.

A stream is freed by ComfyUI's free/unload request, after STREAMDIT_IDLE_SECONDS without a run
(default 600), or when more than STREAMDIT_MAX_STREAMS (default 4) are alive (least recently used
first). Eviction only drops the registry's reference: a run already holding the entry finishes.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import host

IDLE_SECONDS = float(os.environ.get("STREAMDIT_IDLE_SECONDS", "600"))
MAX_STREAMS = int(os.environ.get("STREAMDIT_MAX_STREAMS", "4"))


@dataclass
class Entry:
    """One live stream and what a later run needs to continue it."""

    key: str
    stream: Any  # streamdit.sampling.stream.Stream
    fingerprint: tuple  # (model identity, size/partition settings, seed): a change starts a new stream
    schedule: str  # the prompt schedule text last applied
    runs: int = 0  # runs started on this stream
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    busy: bool = False  # a run is generating frames right now (never evicted then)
    temp_files: list[str] = field(default_factory=list)  # spools of finished runs, deleted on free
    models: tuple = ()  # ModelPatchers of the stream's networks, loaded through ComfyUI before each run

    def touch(self) -> None:
        self.last_used = time.time()

    def cleanup(self) -> None:
        for path in self.temp_files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.temp_files.clear()

    def describe(self) -> dict:
        s = self.stream
        return {"key": self.key, "runs": self.runs, "frames": s.frames_emitted, "calls": s.calls,
                "seconds": round(s.frames_emitted / s.config.fps, 3), "idle_s": round(time.time() - self.last_used, 1),
                "size": f"{s.config.width}x{s.config.height}", "fps": s.config.fps, "busy": self.busy}


_lock = threading.RLock()
_streams: dict[str, Entry] = {}
_reaper: threading.Thread | None = None


def stream_key(stream_id: str, node_id: str | None) -> str:
    return f"{stream_id.strip() or 'default'}#{node_id or '?'}"


def get(key: str) -> Entry | None:
    with _lock:
        return _streams.get(key)


def put(entry: Entry) -> None:
    with _lock:
        old = _streams.pop(entry.key, None)
        if old is not None and old is not entry:
            old.cleanup()
        _streams[entry.key] = entry
        _evict_locked(keep=entry.key)
    _start_reaper()


def drop(key: str) -> bool:
    with _lock:
        entry = _streams.pop(key, None)
    if entry is not None:
        entry.cleanup()
    return entry is not None


def free_all() -> int:
    """Drop every stream that is not generating right now; returns how many were dropped."""
    with _lock:
        keys = [k for k, e in _streams.items() if not e.busy]
    n = sum(drop(k) for k in keys)
    if n:
        host.log.info("streamdit: freed %d stream(s)", n)
    return n


def alive() -> int:
    with _lock:
        return len(_streams)


def describe() -> list[dict]:
    with _lock:
        return [e.describe() for e in _streams.values()]


def evict_idle(now: float | None = None) -> int:
    with _lock:
        return _evict_locked(now=now)


def _evict_locked(keep: str | None = None, now: float | None = None) -> int:
    now = time.time() if now is None else now
    gone = [k for k, e in _streams.items() if k != keep and not e.busy and now - e.last_used > IDLE_SECONDS]
    spare = sorted((e.last_used, k) for k, e in _streams.items() if k != keep and not e.busy and k not in gone)
    excess = len(_streams) - len(gone) - MAX_STREAMS
    gone += [k for _, k in spare[:max(0, excess)]]
    for k in gone:
        _streams.pop(k).cleanup()
    if gone:
        host.log.info("streamdit: evicted %d idle stream(s)", len(gone))
    return len(gone)


def _start_reaper() -> None:
    """A daemon thread that evicts idle streams even when nothing is queued."""
    global _reaper
    if _reaper is not None and _reaper.is_alive():
        return

    def loop():
        while True:
            time.sleep(max(5.0, min(60.0, IDLE_SECONDS / 4)))
            evict_idle()

    _reaper = threading.Thread(target=loop, name="streamdit-reaper", daemon=True)
    _reaper.start()


def _free_everything() -> None:
    free_all()
    from .loader import clear_model_cache

    clear_model_cache()


def _routes(routes) -> None:
    from aiohttp import web

    @routes.get("/streamdit/streams")
    async def list_streams(request):
        return web.json_response({"alive": alive(), "streams": describe()})

    @routes.post("/streamdit/free")
    async def free_streams(request):
        return web.json_response({"freed": free_all(), "alive": alive()})


def install_host_hooks() -> None:
    host.on_free_request(_free_everything)
    try:
        host.add_routes(_routes)
    except Exception as exc:  # e.g. routes already frozen on an unusual host
        host.log.warning("streamdit: could not add routes: %s", exc)
