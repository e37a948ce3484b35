"""The eval's append-only log (docs/eval-log.jsonl): one JSON line per scoring run, and the sealed set's rule.

The sealed seed set is scored once per shipped model: a model file (by sha256) that already has a sealed
entry is refused unless the caller says it means to score it again (--rescore-sealed).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
from pathlib import Path


def file_sha256(path: str | Path) -> str | None:
    """The file's sha256 (hex); None for a model that is no file ("random:toy")."""
    if not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> str | None:
    """HEAD of the checkout this runs from (read only); None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_sealed(path: str | Path, sha256: str | None, model: str, rescore: bool = False, kind: str = "t2v") -> None:
    """Refuse a sealed-set scoring of a file the log already holds a sealed entry of this kind for (unless
    rescore). Kinds: "t2v" (python -m streamdit eval; entries without a kind) and "edit" (eval-edit)."""
    if rescore or sha256 is None:
        return
    earlier = [e for e in read_log(path) if e.get("seed_set") == "sealed" and e.get("sha256") == sha256
               and e.get("kind", "t2v") == kind]
    if earlier:
        e = earlier[0]
        raise ValueError(f"{model} (sha256 {sha256[:12]}...) was scored on the sealed set already ({e.get('date')}, "
                         f"commit {str(e.get('commit'))[:10]}, see {path}); the sealed set is scored once per "
                         "shipped model: use --seed-set dev for decisions, or --rescore-sealed to score it again")


def headline(result: dict) -> dict[str, float]:
    """The numbers a reader compares runs by, as fractions."""
    a, lg, c = result["adherence"], result["long"], result["change"]
    out = {f"adherence {k}": a[k]["value"] for k in ("animal", "background", "motion", "one_sprite", "all") if k in a}
    if lg.get("streams"):
        out.update({f"last window {k}": v["value"] for k, v in lg["last"].items() if isinstance(v, dict)})
        out["no drift"] = lg["no_drift"]["value"]
    if c.get("streams"):
        out.update({f"change {k}": v["value"] for k, v in c.items() if isinstance(v, dict) and "value" in v})
    return {k: round(v, 4) for k, v in out.items()}


def _entry(name: str, path: str, sha256: str | None, seeds: str, judge: str | None) -> dict:
    """What every line of the log starts with: when, from which commit, which file, which seed set and judge."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "model": name, "path": str(path), "sha256": sha256, "seed_set": seeds,
            "judge": judge}


def log_entry(name: str, path: str, sha256: str | None, result: dict) -> dict:
    """One line of the log for a scored model."""
    s = result["settings"]
    return {**_entry(name, path, sha256, s["seed_set"], s["judge"]), "settings": s,
            "counts": {"clips": result["adherence"]["all"]["total"], "long_streams": len(result["long"]["streams"]),
                       "change_streams": len(result["change"]["streams"])},
            "seconds": round(result["seconds"], 1), "headline": headline(result)}


def append_log(path: str | Path, entry: dict) -> None:
    """Append one line (never rewrites what is there)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


def edit_log_entry(name: str, path: str, sha256: str | None, seeds: str, sources: int, seconds: float,
                   rows: list[dict]) -> dict:
    """One line of the log for an edit sweep (eval-edit): every row's identity, background, centroid and FPS."""
    return {**_entry(name, path, sha256, seeds, rows[0].get("judge", "v1") if rows else None), "kind": "edit",
            "counts": {"sources": sources, "seconds": seconds,
                       "noise_seeds": rows[0].get("noise_seeds", 1) if rows else None},
            "rows": [{"strength": r["strength"], "cfg": r.get("cfg", 1.0), "negative": r.get("negative", ""),
                      "target": round(r["target"]["value"], 4), "background_psnr": round(r["background_psnr"], 2),
                      "centroid_px": round(r["centroid_px"], 3), "fps": round(r["fps"], 2)} for r in rows]}
