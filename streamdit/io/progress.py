"""A small dependency-free progress bar (a tqdm subset) for generation and training loops.

On a terminal it redraws one line in place (at most ``min_interval`` apart, 10 per second by default); when the
output is not a terminal (CI logs, files) it prints a plain line at each new 10 % of the total or after
``log_interval`` seconds, whichever comes first. Disabled by ``disable=True`` or, when ``disable`` is None, by
the environment variable STREAMDIT_NO_PROGRESS=1 (counts and rates are still kept).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


def _hms(seconds: float) -> str:
    h, m, s = int(seconds + 0.5) // 3600, int(seconds + 0.5) // 60 % 60, int(seconds + 0.5) % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``with Progress(total=40, desc="generate") as p: ... p.update(4); p.set_postfix(fps=12.5)``."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "frame", file: TextIO | None = None,
                 disable: bool | None = None, *, min_interval: float = 0.1, log_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.file = sys.stderr if file is None else file
        if disable is None:
            disable = os.environ.get("STREAMDIT_NO_PROGRESS", "").strip().lower() in ("1", "true", "yes")
        self.disable = disable
        isatty = getattr(self.file, "isatty", None)
        self.tty = bool(isatty and not getattr(self.file, "closed", False) and isatty())
        self.min_interval, self.log_interval, self.clock = min_interval, log_interval, clock
        self.start = self._last_draw = clock()
        self._last_decile, self._width, self._closed, self._drawn_n = 0, 0, False, -1
        self.postfix: dict[str, Any] = {}

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    @property
    def rate(self) -> float | None:
        """Average units per second since the start (None before the first unit)."""
        elapsed = self.elapsed
        return self.n / elapsed if self.n and elapsed > 0 else None

    def format(self) -> str:
        """The progress line: ``desc: 37%|#######      | 15/40 frame [00:03<00:05, 4.12 frame/s, loss=0.1]``."""
        rate, elapsed = self.rate, self.elapsed
        if self.total:
            frac = min(self.n / self.total, 1.0)
            bar = "#" * int(frac * 20)
            head = f"{frac * 100:3.0f}%|{bar:<20}| {self.n}/{self.total} {self.unit}"
            eta = _hms((self.total - self.n) / rate) if rate and self.n < self.total else "00:00" if rate else "?"
            times = f"{_hms(elapsed)}<{eta}"
        else:
            head, times = f"{self.n} {self.unit}", _hms(elapsed)
        speed = (f"? {self.unit}/s" if rate is None else f"{rate:.2f} {self.unit}/s" if rate >= 1
                 else f"{1 / rate:.2f} s/{self.unit}")
        post = "".join(f", {k}={v:.4g}" if isinstance(v, float) else f", {k}={v}" for k, v in self.postfix.items())
        return f"{self.desc + ': ' if self.desc else ''}{head} [{times}, {speed}{post}]"

    def _draw(self, final: bool = False) -> None:
        line = self.format()
        if self.tty:
            self.file.write("\r" + line + " " * max(0, self._width - len(line)) + ("\n" if final else ""))
            self._width = len(line)
        else:
            self.file.write(line + "\n")
        self.file.flush()
        self._last_draw, self._drawn_n = self.clock(), self.n

    def refresh(self, force: bool = False) -> None:
        """Redraw if due (terminal: after min_interval; log: at a new 10 % step or after log_interval)."""
        if self.disable or self._closed:
            return
        since = self.clock() - self._last_draw
        decile = int(10 * self.n / self.total) if self.total else 0
        due = since >= self.min_interval if self.tty else (decile > self._last_decile or since >= self.log_interval)
        if due or force:
            self._last_decile = max(self._last_decile, decile)
            self._draw()

    def update(self, n: int = 1) -> None:
        """Count n more units done."""
        self.n += n
        self.refresh(force=self.n == n)  # the first update is always shown

    def set_postfix(self, **kv: Any) -> None:
        """Values shown after the rate, e.g. ``set_postfix(fps=12.5, loss=0.031)``."""
        self.postfix.update(kv)
        self.refresh()

    def write(self, message: str) -> None:
        """Print a message without garbling the bar."""
        if self.tty and self._width and not self.disable:
            self.file.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.file.write(message + "\n")
        if self.tty and not self.disable and not self._closed:
            self._draw()
        self.file.flush()

    def close(self) -> None:
        """Draw the final state and end the line; safe to call more than once."""
        if not self._closed and not self.disable and (self.tty or self.n != self._drawn_n):
            self._draw(final=True)  # in a log, the last line is not repeated
        self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
