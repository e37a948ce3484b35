"""Two eval runs on the same seed set, clip by clip (streamdit/evaluation/paired.py): where only one model is right,
and an exact sign test on those clips.

    python docs/scripts/paired_clips.py runs/v17-dev.json runs/v12-dev.json --json docs/bench/paired-v17-v12-dev.json

Each run is an `eval --json` file; FILE:MODEL picks a model where the file holds several.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streamdit.evaluation.paired import paired_clips, paired_markdown  # noqa: E402


def load(spec: str) -> tuple[str, list[dict]]:
    path, _, name = spec.partition(":")
    if not Path(path).is_file():
        sys.exit(f"{path}: no such file; pass the JSON that `python -m streamdit eval --json FILE` wrote")
    runs = json.loads(Path(path).read_text())
    names = [k for k, r in runs.items() if isinstance(r, dict) and r.get("adherence", {}).get("clips")]
    if not name:
        if len(names) != 1:
            sys.exit(f"{path} holds {len(names)} models with clips ({', '.join(names)}): give {path}:MODEL")
        name = names[0]
    if name not in names:
        sys.exit(f"{path} has no model {name!r} with clips (models: {', '.join(names) or 'none'})")
    return name, runs[name]["adherence"]["clips"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="eval --json file of the first model (FILE or FILE:MODEL)")
    ap.add_argument("b", help="eval --json file of the second model, the same seed set")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    (name_a, a), (name_b, b) = load(args.a), load(args.b)
    result = paired_clips(a, b)
    print(paired_markdown(result, name_a, name_b))
    if args.json:
        Path(args.json).write_text(json.dumps({"a": {"model": name_a, "run": args.a}, "b": {"model": name_b,
                                               "run": args.b}, **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
