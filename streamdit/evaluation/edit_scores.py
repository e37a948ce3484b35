"""Measured video-to-video editing: held-out renders of a pig edited into a cat at several strengths.

Per strength: the share of output frames the judge sees as the target animal; the background PSNR
against the source, on the raw decoder output, outside the union of the dilated sprite masks of source
(renderer truth) and output (judge); the mean distance between source and output sprite centroids.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..io.plotting import pyplot
from ..io.progress import Progress
from ..toyworld import ACTIONS, BACKGROUNDS, canonical_caption, centroid_distance, render_clip
from ..toyworld.seed_sets import seed_set
from .scores import JUDGES, stream_rate


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean masks [T, H, W] grown by `radius` pixels (a square neighbourhood)."""
    if radius <= 0:
        return masks
    return F.max_pool2d(masks.float()[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


def background_psnr(out: torch.Tensor, src: torch.Tensor, keep: torch.Tensor) -> float:
    """PSNR in dB over the pixels where keep [T, H, W] is true (frames [T, H, W, 3] in [0, 1])."""
    err = (out - src).pow(2).mean(-1)[keep]
    return float(10 * torch.log10(1 / err.mean().clamp(min=1e-10)))


def edit_sources(count: int, seconds: float, fps: float, size: tuple[int, int], seeds: str = "dev") -> list[dict]:
    """Held-out renders of a pig (every action x background, cycled) with their truth, on the edit sources of
    seed set `seeds` (toyworld/seed_sets.py: dev for every decision, sealed once per shipped model)."""
    frames = int(round(seconds * fps))
    chosen = seed_set(seeds)
    if count > len(chosen.edits):
        raise ValueError(f"the {seeds} seed set has {len(chosen.edits)} edit sources; asked for {count}")
    out = []
    for i in range(count):
        scene = ("pig", ACTIONS[i % 3], BACKGROUNDS[(i // 3) % 4])
        seed = chosen.edits[i]
        video, truth = render_clip(scene, frames, seed, size)
        out.append({"scene": scene, "seed": seed, "frames": video, "masks": truth.masks,
                    "centroids": truth.centroids})
    return out


def edit_scores(pipe, strengths: list[float], sources: list[dict], target: str = "cat", dilation: int = 2,
                seed: int | tuple[int, ...] = 0, cfg_scale: float = 1.0, negative: str = "source",
                judge: str = "v2") -> list[dict]:
    """One row per strength: identity, background PSNR, centroid distance, FPS; sources edited into `target`,
    each once per noise seed in `seed` (an edit = a source and a seed; the intervals count each edit once).

    With cfg_scale > 1 the edit is guided away from `negative`; "source" means each source clip's own
    caption (what a user would type as what the video shows). judge: "v2" (judge_v2.py) or "v1" (the old tables)."""
    if judge not in JUDGES:
        raise ValueError(f"judge {judge!r} is not one of {', '.join(JUDGES)}")
    judge_frames = JUDGES[judge].judge_frames
    rows = []
    d = pipe.bundle.defaults
    seeds = (seed,) if isinstance(seed, int) else tuple(seed)
    edits = [(s, n) for s in sources for n in seeds]
    total = len(strengths) * sum(s["frames"].shape[0] for s, _ in edits)
    with Progress(total, desc="edit sweep", unit="frame") as bar:
        for strength in strengths:
            hits, totals = [], []  # per edit: its frames are not independent
            psnrs, dists = [], []
            start, used = time.perf_counter(), strength
            for s, noise_seed in edits:
                prompt = canonical_caption((target, s["scene"][1], s["scene"][2]))
                neg = canonical_caption(s["scene"]) if negative == "source" else negative
                stream = pipe.edit(s["frames"], prompt, strength=strength, seed=noise_seed, fps=d.fps,
                                   cfg_scale=cfg_scale, negative_prompt=neg if cfg_scale != 1 else "")
                out = stream.take(s["frames"].shape[0])
                used = stream.strength
                fv = judge_frames(out)
                hits.append(sum(a == target for a in fv.animals))
                totals.append(out.shape[0])
                keep = ~(dilate(s["masks"], dilation) | dilate(fv.masks, dilation))
                psnrs.append(background_psnr(out, s["frames"], keep))
                ok = ~(fv.centroids.isnan().any(1) | s["centroids"].isnan().any(1))
                if bool(ok.any()):
                    dists.append(float(centroid_distance(fv.centroids[ok], s["centroids"][ok], d.width).mean()))
                bar.update(out.shape[0])
            rows.append({"strength": used, "asked": strength, "cfg": cfg_scale,
                         "negative": negative if cfg_scale != 1 else "", "judge": judge, "noise_seeds": len(seeds),
                         "target": stream_rate(hits, totals),
                         "background_psnr": sum(psnrs) / len(psnrs), "worst_psnr": min(psnrs),
                         "centroid_px": sum(dists) / len(dists) if dists else float("nan"),
                         "fps": sum(totals) / (time.perf_counter() - start)})
    return rows


EDIT_TARGETS = {"identity": 0.90, "psnr_db": 25.0, "centroid_px": 3.0}  # at 64x64 (centroid scales with size)


def guidance(r: dict) -> str:
    """How a row was guided, for tables and legends."""
    cfg = r.get("cfg", 1.0)
    if cfg == 1:
        return "none"
    neg = r.get("negative", "")
    return f"cfg {cfg:g}, away from " + ("the source caption" if neg == "source" else repr(neg) if neg else "no text")


def meets_targets(r: dict, width: int = 64) -> bool:
    """All three editing targets at once: identity, background kept, motion kept."""
    return (r["target"]["value"] >= EDIT_TARGETS["identity"] and r["background_psnr"] >= EDIT_TARGETS["psnr_db"]
            and r["centroid_px"] <= EDIT_TARGETS["centroid_px"] * width / 64)


def edit_markdown(rows: list[dict], model: str, sources: int, seconds: float, width: int = 64) -> str:
    judges = sorted({r.get("judge", "v1") for r in rows})
    seeds = sorted({r.get("seed_set", "dev") for r in rows})
    noise = ", ".join(sorted({str(r.get("noise_seeds", 1)) for r in rows}))
    lines = [f"Model `{model}`; judge {', '.join(judges)}; {', '.join(seeds)} seed set; {sources} held-out "
             f"source renders of a pig ({seconds:g} s each, every action x "
             "background), each edited into a cat (same action and background). Background PSNR on the raw "
             "decoder output against the source, outside the dilated (2 px) sprite masks of source and output; "
             "centroid distance between source and output sprites; FPS end to end (encode, network, decode). "
             f"Each source is edited with {noise} noise seed(s); the "
             "cat's interval counts each edit once (its frames are not independent). "
             f"Targets: cat on >= {100 * EDIT_TARGETS['identity']:.0f}% of frames, background >= "
             f"{EDIT_TARGETS['psnr_db']:g} dB, centroid <= {EDIT_TARGETS['centroid_px'] * width / 64:g} px.", "",
             "| guidance | strength | cat frames | background PSNR (mean / worst clip) | centroid distance | FPS "
             "| all three targets |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["target"]["ci95"]
        lines.append(f"| {guidance(r)} | {r['strength']:.3f} | {100 * r['target']['value']:.1f}% "
                     f"[{100 * lo:.0f}-{100 * hi:.0f}] | {r['background_psnr']:.1f} / {r['worst_psnr']:.1f} dB "
                     f"| {r['centroid_px']:.2f} px | {r['fps']:.1f} | {'yes' if meets_targets(r, width) else 'no'} |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows: list[dict], path) -> bool:
    """Identity change and background PSNR against strength, one line pair per guidance; one PNG;
    False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(guidance(r), []).append(r)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax2 = ax.twinx()
    for style, (name, rs) in zip(("-", "--", "-.", ":"), groups.items()):
        rs = sorted(rs, key=lambda r: r["strength"])
        name = "no guidance" if name == "none" else name
        x = [r["strength"] for r in rs]
        ax.plot(x, [100 * r["target"]["value"] for r in rs], "o" + style, color="tab:orange",
                label=f"cat frames, {name}")
        ax2.plot(x, [r["background_psnr"] for r in rs], "s" + style, color="tab:green",
                 label=f"background PSNR, {name}")
    ax.axhline(100 * EDIT_TARGETS["identity"], color="tab:orange", ls=":", lw=1)
    ax2.axhline(EDIT_TARGETS["psnr_db"], color="tab:green", ls=":", lw=1)
    ax.set_xlabel("edit strength (u at which denoising starts)")
    ax.set_ylabel("frames judged a cat (%)", color="tab:orange")
    ax.set_ylim(0, 102)
    ax2.set_ylabel("background PSNR (dB)", color="tab:green")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="center left")
    ax.set_title("Pig -> cat edit: identity change vs background kept")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
