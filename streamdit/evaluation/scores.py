"""The eval's three measurements, on a written-down seed set (toyworld.seed_sets: dev, sealed, ci):

- adherence: one 3-second clip per animal x action x background (48), judged per clip;
- long streams: 60-second streams, judged in their first and last 10 seconds (drift shows as a drop);
- prompt change pig -> cat: share of frames showing a cat from one second after the change.

Prompts are canonical captions on dev and ci, sealed captions (word orders training never saw) on sealed.
Judge v2 (default) also counts sprites: a clip is right on all four only with exactly one sprite. Plus a
motion score (mean sprite displacement per frame) beside the same number for the toy world's own renders
of the same scenes, because a model can look smooth by barely moving.
"""
from __future__ import annotations

import datetime
import math
import random
import time
from dataclasses import dataclass

import torch

from ..io.progress import Progress
from ..toyworld import MOTION_OF_ACTION, all_scenes, canonical_caption, centroid_distance, judge, judge_v2, render_clip
from ..toyworld.seed_sets import SEED_SETS, sealed_caption, seed_set
from ..toyworld.world import eval_seed  # noqa: F401  (tests check the seed sets against it)

JUDGES = {"v1": judge, "v2": judge_v2}
# the old eval's seed blocks per measurement; _seed maps them onto the seed set's lists (dev = those seeds)
_ADHERENCE, _LONG, _CHANGE = 0, 100_000, 200_000
NO_DRIFT = 0.9  # a long stream drifts unless its last window scores at least this on every measure


@dataclass
class EvalSettings:
    clips_per_scene: int = 1
    scenes: int | None = None  # None: all 48; fewer (a spread over animals, actions, backgrounds) for a quick look
    clip_seconds: float = 3.0
    long_streams: int = 12
    long_seconds: float = 60.0
    window_seconds: float = 10.0
    change_streams: int = 8
    change_before: float = 3.0
    change_after: float = 4.0
    change_delay: float = 1.0
    micro_steps: int | None = None  # None: the model's default
    cfg_scale: float = 1.0
    seed_set: str = "dev"  # seed_sets.py: "dev" (every decision), "sealed" (once per shipped model), "ci"
    judge: str = "v2"  # "v1" (toyworld/judge.py, the old tables) or "v2" (judge_v2.py, also counts sprites)

    def __post_init__(self):
        bad = []
        if self.seed_set not in SEED_SETS:
            bad.append(f"seed set {self.seed_set!r} is not one of {', '.join(SEED_SETS)}")
        if self.judge not in JUDGES:
            bad.append(f"judge {self.judge!r} is not one of {', '.join(JUDGES)}")
        if self.clips_per_scene < 1 or (self.scenes is not None and self.scenes < 1):
            bad.append(f"clips per scene {self.clips_per_scene} and scenes {self.scenes} must be at least 1")
        if self.clip_seconds <= 0 or self.change_before <= self.change_delay or self.change_after <= self.change_delay:
            bad.append(f"clips of {self.clip_seconds:g} s, changes {self.change_before:g} s before / "
                       f"{self.change_after:g} s after with a {self.change_delay:g} s delay: clips must be longer "
                       "than 0 s and both sides of a change longer than the delay")
        if self.long_streams < 0 or self.change_streams < 0:
            bad.append(f"stream counts must be 0 or more, got {self.long_streams} long and "
                       f"{self.change_streams} change")
        if self.long_streams and self.long_seconds < self.window_seconds:
            bad.append(f"long streams of {self.long_seconds:g} s are shorter than their "
                       f"{self.window_seconds:g} s windows")
        if not bad:
            seeds = seed_set(self.seed_set)
            asked = {"clip": self.clips_per_scene * len(scene_list(self)), "long-stream": self.long_streams,
                     "change-stream": self.change_streams}
            have = {"clip": len(seeds.clips), "long-stream": len(seeds.long_streams),
                    "change-stream": len(seeds.change_streams)}
            bad += [f"the {self.seed_set} set has {have[k]} {k} seeds, {n} asked: ask for at most {have[k]}"
                    + (" (clips per scene x scenes)" if k == "clip" else "") for k, n in asked.items() if n > have[k]]
        if bad:
            raise ValueError("eval settings: " + "; ".join(bad))


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sensible at 0 and 1, unlike the normal approximation)."""
    return wilson_share(hits / total if total else 0.0, total, z)


def wilson_share(p: float, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson interval of a share p observed over `total` independent samples."""
    if total == 0:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(hits: int, total: int) -> dict:
    lo, hi = wilson(hits, total)
    return {"hits": int(hits), "total": int(total), "value": hits / max(total, 1), "ci95": [lo, hi]}


def stream_rate(hits: list[int], totals: list[int]) -> dict:
    """A share pooled over streams, with a 95% interval that counts each stream as one sample.

    Frames of one stream are not independent (a lost sprite stays lost: streams come out near 0% or 100%),
    so a frame-level interval would claim a precision a handful of streams cannot give. This is the Wilson
    interval of the pooled share with the number of streams as the sample size (the design effect of
    perfectly correlated frames): conservative, and sensible at 0% and 100%."""
    shares = [h / t for h, t in zip(hits, totals) if t > 0]
    value = sum(hits) / max(sum(totals), 1)
    lo, hi = wilson_share(value, len(shares))
    return {"hits": int(sum(hits)), "total": int(sum(totals)), "value": value, "ci95": [lo, hi],
            "per_stream": shares, "interval": "streams"}


def _window_shares(w: dict) -> dict[str, float]:
    """A window's share per measure (one sprite only where the judge counted sprites)."""
    out = {"animal": w["animal"] / w["frames"], "background": w["background"] / w["frames"],
           "motion": w["motion"] / max(w["pieces"], 1)}
    if "one_sprite" in w:
        out["one_sprite"] = w["one_sprite"] / w["frames"]
    return out


def long_stream_rates(streams: list[dict]) -> dict:
    """{"first"|"last": {"animal", "background", "motion", ["one_sprite",] "speed"}, "no_drift"} from
    long_streams' per-stream windows. No drift: the last window scores >= NO_DRIFT on every measure."""
    out = {}
    for part in ("first", "last"):
        w = [st[part] for st in streams]
        frames = [x["frames"] for x in w]
        out[part] = {k: stream_rate([x[k] for x in w], frames) for k in ("animal", "background")}
        out[part]["motion"] = stream_rate([x["motion"] for x in w], [x["pieces"] for x in w])
        if w and all("one_sprite" in x for x in w):
            out[part]["one_sprite"] = stream_rate([x["one_sprite"] for x in w], frames)
        out[part]["speed"] = sum(x["speed"] for x in w) / max(len(w), 1)
    out["no_drift"] = rate(sum(min(_window_shares(st["last"]).values()) >= NO_DRIFT for st in streams), len(streams))
    return out


def motion_speed(centroids: torch.Tensor, width: int) -> float:
    """Mean centroid displacement in pixels per frame over consecutive frames that both show an animal."""
    a, b = centroids[:-1], centroids[1:]
    ok = ~(a.isnan().any(1) | b.isnan().any(1))
    if not bool(ok.any()):
        return 0.0
    return float(centroid_distance(a[ok], b[ok], width).mean())


def _seed(s: EvalSettings, i: int) -> int:
    """Seed i of a measurement, i = _ADHERENCE + k, _LONG + k or _CHANGE + k: the seed set's k-th seed for it."""
    block, k = divmod(i, 100_000)
    seeds = seed_set(s.seed_set)
    return (seeds.clips, seeds.long_streams, seeds.change_streams)[block][k]


def _captions(s: EvalSettings, seed: int, *scenes) -> list[str]:
    """The prompts of one clip or stream: sealed captions on a set with its own templates (drawn from the
    seed, so a rerun asks the same), else canonical ones."""
    if not seed_set(s.seed_set).templates:
        return [canonical_caption(scene) for scene in scenes]
    rng = random.Random(seed)
    return [sealed_caption(scene, rng) for scene in scenes]


def _stream(pipe, prompt: str, seed: int, s: EvalSettings):
    return pipe.stream(prompt, seed=seed, micro_steps=s.micro_steps, cfg_scale=s.cfg_scale)


def scene_list(s: EvalSettings) -> list:
    scenes = all_scenes()
    if s.scenes is None or s.scenes >= len(scenes):
        return scenes
    # stride 17 (coprime to 48): a few scenes already cover every animal, action and background
    return [scenes[(17 * i) % len(scenes)] for i in range(s.scenes)]


def _one_sprite_frames(v) -> int:
    return sum(c == 1 for c in v.sprite_counts)


def adherence(pipe, s: EvalSettings, bar: Progress | None = None) -> dict:
    """Per clip: does the judge see the prompted animal, background and motion (v2: and one sprite)?"""
    d, judged = pipe.bundle.defaults, JUDGES[s.judge]
    frames = int(round(s.clip_seconds * d.fps))
    clips, i = [], 0
    for _ in range(s.clips_per_scene):
        for scene in scene_list(s):
            seed = _seed(s, _ADHERENCE + i)
            prompt = _captions(s, seed, scene)[0]
            video = _stream(pipe, prompt, seed, s).take(frames)
            v = judged.judge_clip(video)
            truth, _ = render_clip(scene, frames, seed, (d.height, d.width))
            clip = {"scene": list(scene), "seed": seed, "prompt": prompt, "animal": v.animal == scene[0],
                    "background": v.background == scene[2], "motion": v.motion == MOTION_OF_ACTION[scene[1]],
                    "speed": motion_speed(v.centroids, d.width),
                    "truth_speed": motion_speed(judged.judge_frames(truth).centroids, d.width),
                    "judged": [v.animal, v.background, v.motion]}  # what the judge saw, to read failures by
            if s.judge == "v2":
                clip.update(one_sprite=v.checks(scene)["sprites"], one_sprite_frames=_one_sprite_frames(v),
                            animal_frames=sum(a == scene[0] for a in v.animals), frames=frames)
            clips.append(clip)
            i += 1
            if bar is not None:
                bar.update(frames)
    return {**adherence_rates(clips), "clips": clips}


def adherence_rates(clips: list[dict]) -> dict:
    """Per-clip shares with Wilson intervals over clips; "all": every measure the judge made held."""
    n = len(clips)
    keys = ("animal", "background", "motion") + (("one_sprite",) if clips and "one_sprite" in clips[0] else ())
    out = {k: rate(sum(c[k] for c in clips), n) for k in keys}
    out["all"] = rate(sum(all(c[k] for k in keys) for c in clips), n)
    if "one_sprite" in keys:  # frames with exactly one sprite, pooled, intervals over clips
        out["one_sprite_frames"] = stream_rate([c["one_sprite_frames"] for c in clips], [c["frames"] for c in clips])
    out["speed"] = sum(c["speed"] for c in clips) / max(n, 1)
    out["truth_speed"] = sum(c["truth_speed"] for c in clips) / max(n, 1)
    return out


def _window(video: torch.Tensor, scene, fps: float, width: int, judged) -> dict:
    """Frame shares of the right animal and background (v2: and of one sprite), motion on 3-second pieces."""
    fv = judged.judge_frames(video)
    piece = int(round(3 * fps))
    pieces = [video[j:j + piece] for j in range(0, video.shape[0] - piece + 1, piece)]
    out = {"animal": sum(a == scene[0] for a in fv.animals), "background": sum(b == scene[2] for b in fv.backgrounds),
           "frames": video.shape[0],
           "motion": sum(judged.judge_clip(p).motion == MOTION_OF_ACTION[scene[1]] for p in pieces),
           "pieces": len(pieces), "speed": motion_speed(fv.centroids, width)}
    if hasattr(fv, "sprite_counts"):
        out["one_sprite"] = _one_sprite_frames(fv)
    return out


def long_streams(pipe, s: EvalSettings, bar: Progress | None = None) -> dict:
    """First and last window of long streams: the last must hold up (no drift)."""
    d, judged = pipe.bundle.defaults, JUDGES[s.judge]
    total, win = int(round(s.long_seconds * d.fps)), int(round(s.window_seconds * d.fps))
    scenes = all_scenes()
    streams = []
    for i in range(s.long_streams):
        scene = scenes[(11 * i + 5) % len(scenes)]
        seed = _seed(s, _LONG + i)
        prompt = _captions(s, seed, scene)[0]
        video = []
        for frames in _stream(pipe, prompt, seed, s).frames(total):
            video.append(frames)
            if bar is not None:
                bar.update(frames.shape[0])
        video = torch.cat(video)
        streams.append({"scene": list(scene), "seed": seed, "prompt": prompt,
                        "first": _window(video[:win], scene, d.fps, d.width, judged),
                        "last": _window(video[-win:], scene, d.fps, d.width, judged)})
    return {**long_stream_rates(streams), "streams": streams}


def prompt_change(pipe, s: EvalSettings, bar: Progress | None = None) -> dict:
    """'a pig ...' then 'a cat ...' (same action and background): share of cat frames after the delay."""
    d, judged = pipe.bundle.defaults, JUDGES[s.judge]
    before, after = int(round(s.change_before * d.fps)), int(round(s.change_after * d.fps))
    delay = int(round(s.change_delay * d.fps))
    scenes = [sc for sc in all_scenes() if sc[0] == "pig" and sc[1] != "jumping"]
    streams = []
    for i in range(s.change_streams):
        pig = scenes[i % len(scenes)]
        cat = ("cat", pig[1], pig[2])
        seed = _seed(s, _CHANGE + i)
        pig_prompt, cat_prompt = _captions(s, seed, pig, cat)
        schedule = f"0s: {pig_prompt}\n{s.change_before:g}s: {cat_prompt}"
        video = _stream(pipe, schedule, seed, s).take(before + after)
        fv = judged.judge_frames(video)
        late = range(before + delay, before + after)
        st = {"scene": list(pig), "seed": seed, "prompts": [pig_prompt, cat_prompt],
              "cat": sum(fv.animals[t] == "cat" for t in late), "kept": sum(fv.backgrounds[t] == pig[2] for t in late),
              "after": len(late), "pig": sum(fv.animals[t] == "pig" for t in range(delay, before)),
              "before": before - delay}
        if hasattr(fv, "sprite_counts"):
            st["one_sprite"] = sum(fv.sprite_counts[t] == 1 for t in late)
        streams.append(st)
        if bar is not None:
            bar.update(before + after)
    return {**change_rates(streams), "delay_seconds": s.change_delay, "streams": streams}


def change_rates(streams: list[dict]) -> dict:
    """Cat after / pig before / background kept (v2: one sprite after), pooled over the change streams
    (stream-level intervals)."""
    after, before = [st["after"] for st in streams], [st["before"] for st in streams]
    out = {"cat_after": stream_rate([st["cat"] for st in streams], after),
           "pig_before": stream_rate([st["pig"] for st in streams], before),
           "background_after": stream_rate([st["kept"] for st in streams], after)}
    if streams and all("one_sprite" in st for st in streams):
        out["one_sprite_after"] = stream_rate([st["one_sprite"] for st in streams], after)
    return out


def evaluate_model(pipe, s: EvalSettings, name: str = "model") -> dict:
    """All three measurements of one model; a progress bar over the frames generated."""
    d = pipe.bundle.defaults
    frames = (s.clips_per_scene * len(scene_list(s)) * round(s.clip_seconds * d.fps)
              + s.long_streams * round(s.long_seconds * d.fps)
              + s.change_streams * round((s.change_before + s.change_after) * d.fps))
    start = time.perf_counter()
    with Progress(frames, desc=f"eval {name}", unit="frame") as bar:
        result = {"adherence": adherence(pipe, s, bar), "long": long_streams(pipe, s, bar),
                  "change": prompt_change(pipe, s, bar)}
    result["seconds"] = time.perf_counter() - start
    result["date"] = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    micro = s.micro_steps or d.micro_steps
    result["settings"] = {**s.__dict__, "micro_steps": micro, "cold_micro_steps": pipe.cold_steps(micro)}
    return result
