"""The eval results as the markdown tables of docs/eval.md: judge-v2 sections first, judge-v1 history below."""
from __future__ import annotations

from pathlib import Path

from ..io.plotting import pyplot
from .scores import NO_DRIFT, adherence_rates, change_rates, long_stream_rates

TARGETS = {"adherence": 0.90, "long": 0.85, "change": 0.90, "student_gap": 0.05}
_SET_ORDER = ("sealed", "dev", "ci")
_SET_TEXT = {
    "sealed": "seeds `seed_sets.SEALED`, scored once per shipped model (every scoring is a line of "
              "[eval-log.jsonl](eval-log.jsonl)); prompts in the sealed caption word orders, which training never used",
    "dev": "seeds `seed_sets.DEV`, the seeds every decision was made on (canonical captions)",
    "ci": "seeds `seed_sets.CI`, the regression test's (canonical captions)"}


def _pct(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{100 * r['value']:.1f}% [{100 * lo:.0f}-{100 * hi:.0f}]"


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def run_kind(r: dict) -> tuple[str, str]:
    """(judge, seed set) of a result; results written before judge v2 were judged by v1 on what is now dev."""
    s = r["settings"]
    seeds = s.get("seed_set", "test")
    return s.get("judge", "v1"), "dev" if seeds == "test" else seeds


def with_stream_intervals(r: dict) -> dict:
    """A result whose scores are recomputed from its per-clip and per-stream records (results written before
    stream-level intervals or the no-drift share carry frame-level intervals or lack them)."""
    r = dict(r)
    if r["adherence"].get("clips"):
        r["adherence"] = {**r["adherence"], **adherence_rates(r["adherence"]["clips"])}
    if r["long"].get("streams"):
        r["long"] = {**r["long"], **long_stream_rates(r["long"]["streams"])}
    if r["change"].get("streams"):
        r["change"] = {**r["change"], **change_rates(r["change"]["streams"])}
    return r


def result_key(name: str, judge: str, seeds: str, results: dict[str, dict]) -> str:
    """The key of a new result among `results` (the eval's JSON): the model's name for the default kind (judge
    v2 on dev), else the name and its kind, so a --merge keeps every kind of run of one model (an older kind
    that holds the plain name keeps it too)."""
    if (judge, seeds) == ("v2", "dev") and (name not in results or run_kind(results[name]) == (judge, seeds)):
        return name
    return kind_key(name, judge, seeds)


def kind_key(name: str, judge: str, seeds: str) -> str:
    """The key of a model's run of another kind than the default one."""
    return f"{name} ({seeds}, judge {judge})"


def model_name(key: str, r: dict) -> str:
    return key.removesuffix(kind_key("", *run_kind(r)))


def groups(results: dict[str, dict]) -> dict[tuple[str, str], dict[str, dict]]:
    """{(judge, seed set): {model name: result}}, judge v2 first, sealed before dev before ci."""
    out: dict[tuple[str, str], dict[str, dict]] = {}
    for key, r in results.items():
        out.setdefault(run_kind(r), {})[model_name(key, r)] = r
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0] != "v2", _SET_ORDER.index(kv[0][1]))))


def _per_stream(rate: dict) -> str:
    return " ".join(f"{100 * x:.0f}" for x in rate.get("per_stream", []))


def _pct_streams(r: dict) -> str:
    """A stream-level score; a frame-level interval (older results) is marked with a dagger."""
    return _pct(r) + ("" if r.get("interval") == "streams" else "†")


def _first_last(lg: dict, k: str) -> str:
    return f"{_pct_streams(lg['first'][k])} / {_pct_streams(lg['last'][k])}"


def _cost(r: dict) -> float:
    """Network passes per frame: micro steps, twice with guidance."""
    return r["settings"]["micro_steps"] * (2 if r["settings"]["cfg_scale"] != 1 else 1)


def motion_by_action(clips: list[dict]) -> str:
    """Clips whose motion the judge got right, walks and jumps apart: "20/32 walks, 2/16 jumps" ("-" without clips)."""
    if not clips:
        return "-"
    walks = [c["motion"] for c in clips if c["scene"][1] != "jumping"]
    jumps = [c["motion"] for c in clips if c["scene"][1] == "jumping"]
    return f"{sum(walks)}/{len(walks)} walks, {sum(jumps)}/{len(jumps)} jumps"


def _adherence_table(results: dict[str, dict], v2: bool) -> list[str]:
    cols = ("animal | background | motion | motion by action | "
            + ("one sprite | all four | one-sprite frames" if v2 else "all three"))
    lines = ["| model | micro steps / cfg | clips | " + cols + " | motion px/frame (renders) |",
             "|" + "---|" * (10 if v2 else 8) + "---|"]
    for name, r in results.items():
        a, st = r["adherence"], r["settings"]
        keys = ("animal", "background", "motion") + (("one_sprite", "all", "one_sprite_frames") if v2 else ("all",))
        start = f" (start {st['cold_micro_steps']})" if st.get("cold_micro_steps") else ""
        cells = [_pct(a[k]) if k in a else "-" for k in keys]
        cells.insert(3, motion_by_action(a.get("clips", [])))
        lines.append(f"| {name} | {st['micro_steps']}{start} / {st['cfg_scale']:g} | {a['all']['total']} | "
                     + " | ".join(cells) + f" | {a['speed']:.2f} ({a['truth_speed']:.2f}) |")
    return lines


def _long_table(results: dict[str, dict], v2: bool) -> list[str]:
    most = max((len(r["long"]["streams"]) for r in results.values()), default=0)
    cheapest = min((_cost(r) for r in results.values()), default=1)
    lines = ["| model | streams | animal first / last | animal last 10 s, per stream | background first / last "
             "| motion first / last | " + ("one-sprite frames first / last | no drift | " if v2 else "")
             + "motion px/frame first / last |", "|" + "---|" * (9 if v2 else 7)]
    for name, r in results.items():
        lg = r["long"]
        n = len(lg["streams"])
        if not n:
            continue
        count = str(n)
        if v2 and n < most:  # a costlier model runs fewer streams: say so where its numbers are
            count = f"{n}: the first {n} of {most} ({_cost(r) / cheapest:g}x the cost per frame)"
        f, la = lg["first"], lg["last"]
        extra = ""
        if v2:
            nd = lg["no_drift"]
            extra = (f"{_first_last(lg, 'one_sprite') if 'one_sprite' in la else '-'} "
                     f"| {nd['hits']} of {nd['total']}: {_pct(nd)} | ")
        lines.append(f"| {name} | {count} | {_first_last(lg, 'animal')} | {_per_stream(la['animal'])} "
                     f"| {_first_last(lg, 'background')} | {_first_last(lg, 'motion')} | {extra}"
                     f"{f['speed']:.2f} / {la['speed']:.2f} |")
    return lines


def _has_change_streams(c: dict) -> bool:
    """False for a run made without change streams (an empty list); older results carry no list and count."""
    return bool(c.get("streams")) or "streams" not in c


def _change_table(results: dict[str, dict], v2: bool) -> list[str]:
    lines = ["| model | streams | delay | cat after | cat after, per stream | pig before | background kept |"
             + (" one sprite after |" if v2 else ""), "|" + "---|" * (8 if v2 else 7)]
    for name, r in results.items():
        c = r["change"]
        if not _has_change_streams(c):  # as the long table skips a run without long streams
            continue
        n = len(c["streams"]) if c.get("streams") else "-"
        one = f" {_pct_streams(c['one_sprite_after'])} |" if "one_sprite_after" in c else " - |"
        lines.append(f"| {name} | {n} | {c['delay_seconds']:g} s | {_pct_streams(c['cat_after'])} "
                     f"| {_per_stream(c['cat_after']) or '-'} | {_pct_streams(c['pig_before'])} "
                     f"| {_pct_streams(c['background_after'])} |" + (one if v2 else ""))
    return lines


def _targets(results: dict[str, dict]) -> list[str]:
    lines = ["| model | adherence >= 90% (each) | last 10 s >= 85% (each) | pig -> cat >= 90% |", "|---|---|---|---|"]
    for name, r in results.items():
        a, la, c = r["adherence"], r["long"]["last"], r["change"]
        keys = [k for k in ("animal", "background", "motion", "one_sprite") if k in a]
        long_ok = _mark(min(la[k]["value"] for k in keys if k in la) >= 0.85) if r["long"]["streams"] else "-"
        change_ok = _mark(c["cat_after"]["value"] >= 0.9) if _has_change_streams(c) else "-"
        lines.append(f"| {name} | {_mark(min(a[k]['value'] for k in keys) >= 0.9)} | {long_ok} | {change_ok} |")
    if "student" in results and "teacher" in results:
        teacher, student, n = shared_streams(results["teacher"], results["student"])  # cut once, here
        gaps = _gaps(teacher, student)
        worst = max(gaps.values())
        on = f" (long streams compared on the {n} both ran)" if n else ""
        lines += ["", f"Student vs teacher: largest drop {100 * worst:.1f} points ({max(gaps, key=gaps.get)}){on}; "
                  f"target within 5 points: {_mark(worst <= TARGETS['student_gap'])}."]
    return lines


_BESIDE = (("clips: animal", "adherence", "animal"), ("clips: background", "adherence", "background"),
           ("clips: motion", "adherence", "motion"), ("clips: one sprite", "adherence", "one_sprite"),
           ("clips: all (v2 four, v1 three)", "adherence", "all"), ("last 10 s: animal", "last", "animal"),
           ("last 10 s: background", "last", "background"), ("last 10 s: motion", "last", "motion"),
           ("last 10 s: one-sprite frames", "last", "one_sprite"), ("streams without drift", "long", "no_drift"),
           ("pig -> cat: cat after", "change", "cat_after"),
           ("pig -> cat: one sprite after", "change", "one_sprite_after"))


def same_file(a: dict, b: dict) -> bool:
    """Whether two results judged the same model file (by sha256; a result without one matches nothing)."""
    return a.get("sha256") is not None and a.get("sha256") == b.get("sha256")


def _beside_v1(new: dict[str, dict], old: dict[str, dict], seeds: str) -> list[str]:
    """Each model's judge-v2 numbers beside its judge-v1 numbers: the same file, or (marked) an earlier run."""
    pairs = [(n, r, old[n]) for n, r in new.items() if n in old]
    if not pairs:
        return []

    def cell(r, group, k):
        part = r["long"]["last"] if group == "last" else r[group]
        if not part or k not in part or (group in ("last", "long") and not r["long"].get("streams")):
            return "-"
        return _pct(part[k])

    lines = ["| measure | " + " | ".join(f"{n}: v2, {seeds} | {n}: v1, dev" + ("" if same_file(r, o) else
                                                                                  " (earlier run)")
                                         for n, r, o in pairs) + " |",
             "|---|" + "---|---|" * len(pairs)]
    for label, group, k in _BESIDE:
        lines.append(f"| {label} | " + " | ".join(f"{cell(r, group, k)} | {cell(o, group, k)}" for _, r, o in pairs)
                     + " |")
    return lines


def _v2_section(seeds: str, results: dict[str, dict], v1: dict[str, dict]) -> list[str]:
    dates = sorted({r["date"] for r in results.values() if r.get("date")})
    date = f"{dates[0]} to {dates[-1]}" if len(dates) > 1 else "".join(dates)
    streams = any(r["long"]["streams"] for r in results.values())
    lines = [f"## Judge v2 on the {seeds} set" + (f" ({date})" if date else ""), "",
             f"Judge: `streamdit/toyworld/judge_v2.py`, frozen before these runs ([judge-v2.md](judge-v2.md)); "
             f"{_SET_TEXT[seeds]}. Beside animal, background and motion judge v2 counts sprites: a clip has "
             "\"one sprite\" if >= 90% of its frames show exactly one, and is right on \"all four\" only if all "
             "four hold. Percent of clips with 95% Wilson intervals over clips; stream scores pool frames "
             "(motion: 3-second pieces) with intervals over streams, never over frames.", "",
             "### Prompt adherence (one 3-second clip per animal x action x background)", "",
             *_adherence_table(results, True), "",
             "### Long streams (60 s): first vs last 10 seconds", "",
             *([f"No drift: the last 10 s of a stream score >= {100 * NO_DRIFT:.0f}% on every measure (animal, "
                "background and one-sprite frames, motion pieces); the share of streams that do, with its interval.",
                "", *_long_table(results, True)] if streams else ["(No long streams in these runs.)"]), "",
             "### Prompt change pig -> cat", "", *_change_table(results, True), "",
             "### Against the targets", "", *_targets(results)]
    beside = _beside_v1(results, v1, seeds)
    if beside:
        differ = ("Only the judge differs between the columns (same seeds and captions): v2 calls"
                  if seeds == "dev" else f"Two things differ between the columns: the {seeds} set's seeds"
                  + (" and captions" if seeds == "sealed" else "") + ", and the judge: v2 calls")
        rerun = [n for n, r in results.items() if n in v1 and not same_file(r, v1[n])]
        files = ("The same model files" + (f", except {' and '.join(rerun)} (marked \"earlier run\"): the files "
                                           "v1 judged were not kept, so the same recipe variant was trained again "
                                           "with this checkout's code; its v1 column is the earlier run"
                                           if rerun else "") + ".")
        lines += ["", "### Beside judge v1 on the dev seeds (the history tables below)", "",
                  f"{files} The v1 columns were judged by v1 on the dev seeds with canonical captions "
                  "(the seeds that chose these models); v1 had no sprite count (-), and its \"no drift\" is on its "
                  f"three measures. {differ} a blob or smear of the right colour no animal, counts sprites, and "
                  "its background can fail.", "", *beside]
    return lines + [""]


def _v1_section(seeds: str, results: dict[str, dict], v2: dict[str, dict]) -> list[str]:
    again = [n for n in results if n in v2 and same_file(results[n], v2[n])]
    rerun = [n for n in results if n in v2 and n not in again]
    missing = [f"{n} (`{results[n].get('path')}`)" for n in results
               if n not in v2 and not Path(str(results[n].get("path"))).is_file()]
    note = (f" Re-scored with judge v2 above: {', '.join(again)}." if again else "") + (
        f" Trained again and scored with judge v2 above (the files judged here were not kept): {', '.join(rerun)}."
        if rerun else "") + (
        " Not re-scored, because their files are not in this checkout (older versions were replaced; the baselines' "
        "`runs/` folder is not kept): " + ", ".join(missing) + "." if missing else "")
    return [f"## History: judge v1 on the {seeds} seeds", "",
            "Judged by judge v1 (`streamdit/toyworld/judge.py`: no sprite count, a background that could not fail) "
            f"on seeds that chose the models (then called the test set, now `seed_sets.{seeds.upper()}`), with "
            "canonical captions. Kept as history: these numbers are optimistic." + note, "",
            "### Prompt adherence (one 3-second clip per animal x action x background, held-out seeds)", "",
            "Percent of clips judged right, with 95% Wilson intervals.", "", *_adherence_table(results, False), "",
            "### Long streams (60 s): first vs last 10 seconds", "",
            "Animal and background: percent of frames; motion: percent of 3-second pieces. The 95% intervals "
            "count each stream as one sample (Wilson, with the number of streams as the sample size): the frames "
            "of one stream are not independent (a lost sprite stays lost), and a few streams cannot pin a share "
            "down.", "", *_long_table(results, False), "",
            "### Prompt change pig -> cat", "",
            "Percent of frames judged a cat from the delay after the change to the end of the stream; the pig "
            "before the change and the background after it as checks. Intervals over streams as above; † marks "
            "a frame-level Wilson interval (a run that did not record its streams one by one).", "",
            *_change_table(results, False), "", "### Against the targets", "", *_targets(results), ""]


def render_markdown(results: dict[str, dict], header: str = "") -> str:
    """results: {result_key(...): evaluate_model(...) result plus its 'path'}."""
    by_kind = groups({k: with_stream_intervals(r) for k, r in results.items()})
    v1 = {n: r for (judge, seeds), rs in by_kind.items() if judge == "v1" and seeds == "dev" for n, r in rs.items()}
    lines = [header] if header else []
    v2 = {n: r for (judge, _), rs in by_kind.items() if judge == "v2" for n, r in rs.items()}
    for (judge, seeds), rs in by_kind.items():
        lines += _v2_section(seeds, rs, v1) if judge == "v2" else _v1_section(seeds, rs, v2)
    return "\n".join(lines).rstrip("\n") + "\n"


def scores(r: dict) -> dict[str, float]:
    """Every headline score of one result, as fractions (one sprite where the judge counted sprites)."""
    a, la = r["adherence"], r["long"]["last"]
    keys = [k for k in ("animal", "background", "motion", "one_sprite") if k in a]
    out = {f"adherence {k}": a[k]["value"] for k in keys}
    out.update({f"last 10 s {k}": la[k]["value"] for k in keys if k in la})
    if _has_change_streams(r["change"]):
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
    return {k: t[k] - s[k] for k in t if k in s}


def plot_models(results: dict[str, dict], path, title: str = "Held-out eval") -> bool:
    """The headline scores of every model as grouped bars with 95% intervals, and how far the sprite moves
    (the paper's baselines looked smooth by standing still); one PNG, False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    results = {name: with_stream_intervals(r) for name, r in results.items()}
    v2 = all("one_sprite" in r["adherence"] for r in results.values())
    keys = [("adherence", "animal"), ("adherence", "background"), ("adherence", "motion")]
    labels = ["animal", "background", "motion"]
    if v2:
        keys += [("adherence", "one_sprite")]
        labels += ["one sprite"]
    keys += [("adherence", "all"), ("last", "animal"), ("last", "motion"), ("change", "cat_after")]
    labels += ["all four" if v2 else "all three", "last 10 s\nanimal", "last 10 s\nmotion", "pig -> cat"]

    def pick(r, group, k):
        return r["long"]["last"][k] if group == "last" else r[group][k]

    names = list(results)
    width = 0.8 / max(1, len(names))
    colours = [plt.get_cmap("tab20")(i % 20) for i in range(len(names))]  # the default cycle repeats after 10
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110, gridspec_kw={"width_ratios": [4, 1]})
    for i, name in enumerate(names):
        vals = [pick(results[name], g, k) for g, k in keys]
        x = [j + (i - (len(names) - 1) / 2) * width for j in range(len(keys))]
        y = [100 * v["value"] for v in vals]
        # clamped: a Wilson bound can sit a rounding error inside the value at 0% or 100%
        err = [[max(0.0, 100 * (v["value"] - v["ci95"][0])) for v in vals],
               [max(0.0, 100 * (v["ci95"][1] - v["value"])) for v in vals]]
        ax.bar(x, y, width, yerr=err, capsize=2, label=name, color=colours[i])
    ax.axhline(90, color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(keys)), labels, fontsize=8)
    ax.set_ylabel("% judged right (95% CI; streams: per stream)")
    ax.set_ylim(0, 105)
    # below the axes, in rows: one row of every model overran the figure once there were more than a few
    ax.legend(fontsize=8, ncol=min(len(names), 6), loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax.set_title(f"{title}: adherence (3-s clips), 60-s streams, prompt change", fontsize=9)
    speeds = [results[n]["adherence"]["speed"] for n in names]
    ax2.bar(range(len(names)), speeds, color=colours)
    truth = sum(results[n]["adherence"]["truth_speed"] for n in names) / len(names)
    ax2.axhline(truth, color="black", ls="--", lw=1, label=f"renders {truth:.2f}")
    ax2.set_xticks(range(len(names)), names, fontsize=7, rotation=90)
    ax2.set_ylabel("sprite motion (px/frame)")
    ax2.legend(fontsize=8, loc="lower center")
    ax2.set_title("motion score")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
