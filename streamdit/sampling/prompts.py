"""Prompt schedules ("0s: a pig ..." / "4s: a cat ..."), live prompt changes, and embedding blends.

Times refer to the stream's playback clock: the video frames already finished. A change made at clock
t is used by every later network call for all chunks; nearly finished chunks barely change, so it
shows fully once the buffer has turned over. A transition blends the old and new text embeddings
linearly over `transition_frames` video frames (our addition, for smooth morphs).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds)?\s*:\s*(.*)$", re.IGNORECASE)


def parse_schedule(text: str) -> list[tuple[float, str]]:
    """Parse "time: prompt" lines into [(seconds, prompt)], sorted by time.

    A text with no time prefixes at all is one prompt from 0 s (its lines joined). Blank lines and
    lines starting with '#' are ignored. The first prompt also covers the time before its start.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise ValueError("the prompt is empty; write a prompt, or lines like '0s: a pig walking right on grass'")
    matches = [_LINE.match(ln) for ln in lines]
    if not any(matches):
        return [(0.0, " ".join(lines))]
    events = []
    for number, (line, m) in enumerate(zip(lines, matches), 1):
        if m is None:
            raise ValueError(f"prompt schedule line {number} ({line!r}) has no time; write it as "
                             "'<seconds>s: <prompt>', e.g. '4s: a cat walking right on grass'")
        if not m.group(3).strip():
            raise ValueError(f"prompt schedule line {number} ({line!r}) has a time but no prompt")
        events.append((float(m.group(1)), m.group(3).strip()))
    times = [t for t, _ in events]
    if len(set(times)) != len(times):
        raise ValueError(f"prompt schedule has two prompts at the same time: {sorted(times)}")
    return sorted(events)


@dataclass
class PromptTrack:
    """Which prompt(s), with which weights, apply at a given clock (in video frames)."""

    events: list[tuple[float, str]]  # (clock in video frames, prompt), sorted
    transition_frames: float = 0.0

    @classmethod
    def from_text(cls, text: str, fps: float, transition_frames: float = 0.0) -> PromptTrack:
        return cls([(t * fps, p) for t, p in parse_schedule(text)], transition_frames)

    def _index(self, clock: float) -> int:
        i = 0
        for j, (t, _) in enumerate(self.events):
            if t <= clock:
                i = j
        return i

    def weights(self, clock: float) -> tuple[tuple[str, float], ...]:
        """((prompt, weight), ...) at this clock: one prompt, or two while a transition runs."""
        i = self._index(clock)
        start, prompt = self.events[i]
        if i == 0 or self.transition_frames <= 0 or clock >= start + self.transition_frames:
            return ((prompt, 1.0),)
        a = max(0.0, (clock - start) / self.transition_frames)
        previous = self.events[i - 1][1]
        if previous == prompt or a >= 1.0:
            return ((prompt, 1.0),)
        return ((previous, 1.0 - a), (prompt, a))

    def change(self, prompt: str, clock: float) -> None:
        """A live change at `clock`; later scheduled prompts are dropped (the user took over)."""
        self.events = _dedupe([(0.0, self.weights(clock)[-1][0]), (clock, prompt)])

    def replace(self, events: list[tuple[float, str]], clock: float) -> None:
        """Swap in an edited schedule; if that changes the prompt playing now, transition at `clock`."""
        before = self.weights(clock)[-1][0]
        new = sorted(events)
        now = PromptTrack(new, self.transition_frames).weights(clock)[-1][0]
        if now == before:
            self.events = new
        else:
            self.events = _dedupe([(0.0, before), (clock, now)] + [(t, p) for t, p in new if t > clock])

    def state_dict(self) -> dict:
        return {"events": [list(e) for e in self.events], "transition_frames": self.transition_frames}

    @classmethod
    def from_state(cls, state: dict) -> PromptTrack:
        return cls([(float(t), str(p)) for t, p in state["events"]], float(state["transition_frames"]))


def _dedupe(events: list[tuple[float, str]]) -> list[tuple[float, str]]:
    out: dict[float, str] = {}
    for t, p in events:
        out[t] = p
    return sorted(out.items())
