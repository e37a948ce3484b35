"""The eval results as the markdown tables of docs/eval.md."""
from __future__ import annotations

TARGETS = {"adherence": 0.90, "long": 0.85, "change": 0.90, "student_gap": 0.05}


def _pct(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{100 * r['value']:.1f}% [{100 * lo:.0f}-{100 * hi:.0f}]"


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def render_markdown(results: dict[str, dict], header: str = "") -> str:
    """results: {model name: evaluate_model(...) result (plus 'path')}."""
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
              "Animal and background: percent of frames; motion: percent of 3-second pieces.", "",
              "| model | streams | animal first / last | background first / last | motion first / last "
              "| motion px/frame first / last |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lg = r["long"]
        f, la = lg["first"], lg["last"]
        lines.append(f"| {name} | {len(lg['streams'])} | {_pct(f['animal'])} / {_pct(la['animal'])} "
                     f"| {_pct(f['background'])} / {_pct(la['background'])} "
                     f"| {_pct(f['motion'])} / {_pct(la['motion'])} "
                     f"| {f['speed']:.2f} / {la['speed']:.2f} |")
    lines += ["", "## Prompt change pig -> cat", "",
              "Percent of frames judged a cat from the delay after the change to the end of the stream; the pig "
              "before the change and the background after it as checks.", "",
              "| model | delay | cat after | pig before | background kept |", "|---|---|---|---|---|"]
    for name, r in results.items():
        c = r["change"]
        lines.append(f"| {name} | {c['delay_seconds']:g} s | {_pct(c['cat_after'])} | {_pct(c['pig_before'])} "
                     f"| {_pct(c['background_after'])} |")
    lines += ["", "## Against the targets", "", "| model | adherence >= 90% (each) | last 10 s >= 85% (each) "
              "| pig -> cat >= 90% |", "|---|---|---|---|"]
    for name, r in results.items():
        a, la, c = r["adherence"], r["long"]["last"], r["change"]
        lines.append(f"| {name} | {_mark(min(a[k]['value'] for k in ('animal', 'background', 'motion')) >= 0.9)} "
                     f"| {_mark(min(la[k]['value'] for k in ('animal', 'background', 'motion')) >= 0.85)} "
                     f"| {_mark(c['cat_after']['value'] >= 0.9)} |")
    if "student" in results and "teacher" in results:
        gaps = score_gaps(results["teacher"], results["student"])
        worst = max(gaps.values())
        lines += ["", f"Student vs teacher: largest drop {100 * worst:.1f} points ({max(gaps, key=gaps.get)}); "
                  f"target within 5 points: {_mark(worst <= TARGETS['student_gap'])}."]
    return "\n".join(lines) + "\n"


def scores(r: dict) -> dict[str, float]:
    """Every headline score of one result, as fractions."""
    a, la = r["adherence"], r["long"]["last"]
    out = {f"adherence {k}": a[k]["value"] for k in ("animal", "background", "motion")}
    out.update({f"last 10 s {k}": la[k]["value"] for k in ("animal", "background", "motion")})
    out["pig -> cat"] = r["change"]["cat_after"]["value"]
    return out


def score_gaps(teacher: dict, student: dict) -> dict[str, float]:
    """How many points (as fractions) the student is below the teacher on each score."""
    t, s = scores(teacher), scores(student)
    return {k: t[k] - s[k] for k in t}
