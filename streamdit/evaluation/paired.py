"""Two models on the same clips, clip by clip: which one is right where the other is not, and whether that split
could be chance (an exact two-sided sign test on the clips where they differ, i.e. McNemar's exact test).

Counting clips per model ("36 of 48 against 36") hides that the two may be right on different clips; a model
decision reads the pairs. `paired_clips` takes the `adherence["clips"]` lists of two eval runs on one seed set.
"""
from __future__ import annotations

from math import comb

MEASURES = ("animal", "background", "motion", "one_sprite")
ROWS = MEASURES + ("all",)  # "all": right on all four at once, as the eval tables' "all four"


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if either side were equally likely."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses count clips: got {wins} and {losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _right(clip: dict, measure: str) -> bool:
    return all(bool(clip[m]) for m in MEASURES) if measure == "all" else bool(clip[measure])


def _key(clip: dict) -> tuple:
    return tuple(clip["scene"]), clip["seed"]


def paired_clips(a: list[dict], b: list[dict]) -> dict:
    """Per measure (and "all": all four at once): clips where only a is right ("a"), only b ("b"), both,
    neither, and the sign test's p; for one-sprite frames per clip: clips where a shows more, fewer, the same,
    the frame totals and the sign test's p.

    Clips are matched by scene and seed; runs on different clips are refused (a paired test needs the same clips)."""
    ka, kb = {_key(c): c for c in a}, {_key(c): c for c in b}
    if len(ka) != len(a) or len(kb) != len(b):
        raise ValueError("a run lists the same scene and seed twice; pass one eval run's clips per model")
    if ka.keys() != kb.keys():
        only = sorted(ka.keys() ^ kb.keys())[:3]
        raise ValueError(f"the two runs judged different clips (e.g. {only}): compare runs on one seed set with "
                         "the same scenes")
    out: dict = {"clips": len(ka)}
    for m in ROWS:
        pairs = [(_right(ka[k], m), _right(kb[k], m)) for k in ka]
        wa = sum(x and not y for x, y in pairs)
        wb = sum(y and not x for x, y in pairs)
        out[m] = {"a": wa, "b": wb, "both": sum(x and y for x, y in pairs),
                  "neither": sum(not x and not y for x, y in pairs), "p": round(sign_test(wa, wb), 4)}
    diff = [ka[k]["one_sprite_frames"] - kb[k]["one_sprite_frames"] for k in ka]
    more, fewer = sum(d > 0 for d in diff), sum(d < 0 for d in diff)
    out["one_sprite_frames"] = {"a": more, "b": fewer, "same": len(diff) - more - fewer,
                                "frames_a": sum(ka[k]["one_sprite_frames"] for k in ka),
                                "frames_b": sum(kb[k]["one_sprite_frames"] for k in kb),
                                "frames": sum(ka[k]["frames"] for k in ka), "p": round(sign_test(more, fewer), 4)}
    return out


def paired_markdown(result: dict, name_a: str, name_b: str) -> str:
    """The paired result as a table: one row per measure."""
    rows = [f"| measure ({result['clips']} clips) | only {name_a} | only {name_b} | both | neither | sign test p |",
            "|---|---|---|---|---|---|"]
    for m in ROWS:
        r = result[m]
        label = "all four" if m == "all" else m.replace("_", " ")
        rows.append(f"| {label} | {r['a']} | {r['b']} | {r['both']} | {r['neither']} | {r['p']:.2f} |")
    f = result["one_sprite_frames"]
    rows.append(f"| one-sprite frames ({f['frames_a']} vs {f['frames_b']} of {f['frames']}) | {f['a']} clips more | "
                f"{f['b']} clips more | {f['same']} level | - | {f['p']:.2f} |")
    return "\n".join(rows) + "\n"
