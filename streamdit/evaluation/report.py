"""The eval results as the markdown tables of docs/eval.md."""
from __future__ import annotations

from ..io.plotting import pyplot
from .scores import change_rates, long_stream_rates

TARGETS = {"adherence": 0.90, "long": 0.85, "change": 0.90, "student_gap": 0.05}


def _pct(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{100 * r['value']:.1f}% [{100 * lo:.0f}-{100 * hi:.0f}]"


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def with_stream_intervals(r: dict) -> dict:
    """A result whose long-stream and prompt-change scores carry stream-level intervals, recomputed from
    its per-stream records (results written before those intervals existed carry frame-level ones)."""
    r = dict(r)
    if r["long"].get("streams"):
        r["long"] = {**r["long"], **long_stream_rates(r["long"]["streams"])}
    if r["change"].get("streams"):
        r["change"] = {**r["change"], **change_rates(r["change"]["streams"])}
    return r


def _per_stream(rate: dict) -> str:
    return " ".join(f"{100 * x:.0f}" for x in rate.get("per_stream", []))


def _pct_streams(r: dict) -> str:
    """A stream-level score; a frame-level interval (older results) is marked with a dagger."""
    return _pct(r) + ("" if r.get("interval") == "streams" else "†")


def render_markdown(results: dict[str, dict], header: str = "") -> str:
    """results: {model name: evaluate_model(...) result (plus 'path')}."""
    results = {name: with_stream_intervals(r) for name, r in results.items()}
    lines = [header] if header else []
    lines += ["## Prompt adherence (one 3-second clip per animal x action x background, held-out seeds)", "",
              "Percent of clips judged right, with 95% Wilson intervals.", "",
              "| model | micro steps / cfg | clips | animal | background | motion | all three "
              "| motion px/frame (renders) |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        a, st = r["adherence"], r["settings"]
        lines.append(f"| {name} | {st['micro_steps']} / {st['cfg_scale']:g} | {a['all']['total']} "
                     f"| {_pct(a['animal'])} | {_pct(a['background'])} | {_pct(a['motion'])} | {_pct(a['all'])} "
                     f"| {a['speed']:.2f} ({a['truth_speed']:.2f}) |")
    lines += ["", "## Long streams (60 s): first vs last 10 seconds", "",
              "Animal and background: percent of frames; motion: percent of 3-second pieces. The 95% intervals "
              "count each stream as one sample (Wilson, with the number of streams as the sample size): the frames "
              "of one stream are not independent (a lost sprite stays lost), and a few streams cannot pin a share "
              "down.", "",
              "| model | streams | animal first / last | animal last 10 s, per stream | background first / last "
              "| motion first / last | motion px/frame first / last |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lg = r["long"]
        f, la = lg["first"], lg["last"]
        lines.append(f"| {name} | {len(lg['streams'])} | {_pct_streams(f['animal'])} / {_pct_streams(la['animal'])} "
                     f"| {_per_stream(la['animal'])} "
                     f"| {_pct_streams(f['background'])} / {_pct_streams(la['background'])} "
                     f"| {_pct_streams(f['motion'])} / {_pct_streams(la['motion'])} "
                     f"| {f['speed']:.2f} / {la['speed']:.2f} |")
    lines += ["", "## Prompt change pig -> cat", "",
              "Percent of frames judged a cat from the delay after the change to the end of the stream; the pig "
              "before the change and the background after it as checks. Intervals over streams as above; † marks "
              "a frame-level Wilson interval (a run that did not record its streams one by one).", "",
              "| model | streams | delay | cat after | cat after, per stream | pig before | background kept |",
              "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        c = r["change"]
        n = len(c["streams"]) if c.get("streams") else "-"
        lines.append(f"| {name} | {n} | {c['delay_seconds']:g} s | {_pct_streams(c['cat_after'])} "
                     f"| {_per_stream(c['cat_after']) or '-'} | {_pct_streams(c['pig_before'])} "
                     f"| {_pct_streams(c['background_after'])} |")
    lines += ["", "## Against the targets", "", "| model | adherence >= 90% (each) | last 10 s >= 85% (each) "
              "| pig -> cat >= 90% |", "|---|---|---|---|"]
    for name, r in results.items():
        a, la, c = r["adherence"], r["long"]["last"], r["change"]
        lines.append(f"| {name} | {_mark(min(a[k]['value'] for k in ('animal', 'background', 'motion')) >= 0.9)} "
                     f"| {_mark(min(la[k]['value'] for k in ('animal', 'background', 'motion')) >= 0.85)} "
                     f"| {_mark(c['cat_after']['value'] >= 0.9)} |")
    if "student" in results and "teacher" in results:
        teacher, student, n = shared_streams(results["teacher"], results["student"])  # cut once, here
        gaps = _gaps(teacher, student)
        worst = max(gaps.values())
        on = f" (long streams compared on the {n} both ran)" if n else ""
        lines += ["", f"Student vs teacher: largest drop {100 * worst:.1f} points ({max(gaps, key=gaps.get)}){on}; "
                  f"target within 5 points: {_mark(worst <= TARGETS['student_gap'])}."]
    return "\n".join(lines) + "\n"


def scores(r: dict) -> dict[str, float]:
    """Every headline score of one result, as fractions."""
    a, la = r["adherence"], r["long"]["last"]
    out = {f"adherence {k}": a[k]["value"] for k in ("animal", "background", "motion")}
    out.update({f"last 10 s {k}": la[k]["value"] for k in ("animal", "background", "motion")})
    out["pig -> cat"] = r["change"]["cat_after"]["value"]
    return out


def shared_streams(a: dict, b: dict) -> tuple[dict, dict, int | None]:
    """Two results cut to the long streams both ran, and the number kept (None when nothing was cut).

    Stream i has the same seed and scene in every run, so a model judged on 4 streams compares with the
    first 4 of another's 12; pooled over different stream sets the two numbers would not be comparable."""
    sa, sb = a["long"].get("streams"), b["long"].get("streams")
    if not sa or not sb or len(sa) == len(sb):
        return a, b, None
    n = min(len(sa), len(sb))
    if any(x.get("scene") != y.get("scene") for x, y in zip(sa[:n], sb[:n])):
        return a, b, None

    def cut(r, st):
        return {**r, "long": {**r["long"], **long_stream_rates(st[:n]), "streams": st[:n]}}
    return cut(a, sa), cut(b, sb), n


def score_gaps(teacher: dict, student: dict) -> dict[str, float]:
    """How many points (as fractions) the student is below the teacher on each score (long streams compared
    on the streams both ran)."""
    return _gaps(*shared_streams(with_stream_intervals(teacher), with_stream_intervals(student))[:2])


def _gaps(teacher: dict, student: dict) -> dict[str, float]:
    t, s = scores(teacher), scores(student)
    return {k: t[k] - s[k] for k in t}


def plot_models(results: dict[str, dict], path) -> bool:
    """The headline scores of every model as grouped bars with 95% intervals, and how far the sprite moves
    (the paper's baselines looked smooth by standing still); one PNG, False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    keys = [("adherence", "animal"), ("adherence", "background"), ("adherence", "motion"), ("adherence", "all"),
            ("last", "animal"), ("last", "motion"), ("change", "cat_after")]
    labels = ["animal", "background", "motion", "all three", "last 10 s\nanimal", "last 10 s\nmotion", "pig -> cat"]

    def pick(r, group, k):
        return r["long"]["last"][k] if group == "last" else r[group][k]

    results = {name: with_stream_intervals(r) for name, r in results.items()}
    names = list(results)
    width = 0.8 / max(1, len(names))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110, gridspec_kw={"width_ratios": [4, 1]})
    for i, name in enumerate(names):
        vals = [pick(results[name], g, k) for g, k in keys]
        x = [j + (i - (len(names) - 1) / 2) * width for j in range(len(keys))]
        y = [100 * v["value"] for v in vals]
        # clamped: a Wilson bound can sit a rounding error inside the value at 0% or 100%
        err = [[max(0.0, 100 * (v["value"] - v["ci95"][0])) for v in vals],
               [max(0.0, 100 * (v["ci95"][1] - v["value"])) for v in vals]]
        ax.bar(x, y, width, yerr=err, capsize=2, label=name)
    ax.axhline(90, color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(keys)), labels, fontsize=8)
    ax.set_ylabel("% judged right (95% CI; streams: per stream)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncol=len(names), loc="lower left")
    ax.set_title("Held-out eval: adherence (3-s clips), 60-s streams, prompt change")
    speeds = [results[n]["adherence"]["speed"] for n in names]
    ax2.bar(range(len(names)), speeds, color=[f"C{i}" for i in range(len(names))])
    truth = sum(results[n]["adherence"]["truth_speed"] for n in names) / len(names)
    ax2.axhline(truth, color="black", ls="--", lw=1, label=f"renders {truth:.2f}")
    ax2.set_xticks(range(len(names)), names, fontsize=8, rotation=30)
    ax2.set_ylabel("sprite motion (px/frame)")
    ax2.legend(fontsize=8, loc="lower center")
    ax2.set_title("motion score")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
