"""Renaming models among merged eval results (`eval --merge ... --rename OLD=NEW`), for when a shipped file is
replaced: the old rows keep their place under a new name and the new file's rows take the old name, listed first."""
from __future__ import annotations

from pathlib import Path

from .log import file_sha256
from .report import kind_key, model_name, run_kind


def rename_spec(spec: str) -> tuple[str, str]:
    old, sep, new = spec.partition("=")
    if not sep or not old.strip() or not new.strip() or old.strip() == new.strip():
        raise ValueError(f"--rename {spec!r}: give OLD=NEW, two different model names (e.g. student=v11-student)")
    return old.strip(), new.strip()


def _replaced_path(r: dict, shas: dict[str, str | None]) -> str:
    """The result's path, marked as replaced where a different file (another sha256) now lies there, so the
    tables never name the new file for the old one's scores; `shas` caches each file's hash (kinds share files)."""
    path, sha = r.get("path"), r.get("sha256")
    if not path or not sha or not Path(path).is_file():
        return path
    if path not in shas:
        shas[path] = file_sha256(path)
    return path if shas[path] == sha else f"{path} (replaced; sha256 {sha[:8]})"


def rename_model(results: dict[str, dict], old: str, new: str) -> dict[str, dict]:
    """`results` with every kind of run of model `old` renamed `new`, each in its place."""
    hits = [k for k, r in results.items() if model_name(k, r) == old]
    if not hits:
        names = sorted({model_name(k, r) for k, r in results.items()})
        raise ValueError(f"--rename {old}={new}: no model named {old!r} in the results merged before it (models: "
                         f"{', '.join(names) or 'none'}); put --rename after the --merge it applies to")
    taken = {(model_name(k, r), run_kind(r)) for k, r in results.items()}
    for k in hits:
        if (new, run_kind(results[k])) in taken:
            judge, seeds = run_kind(results[k])
            raise ValueError(f"--rename {old}={new}: {new!r} already has a {seeds}-set, judge {judge} run; "
                             f"rename that one first or choose another name")
    out, shas = {}, {}
    for k, r in results.items():
        if k in hits:
            r = dict(r, path=_replaced_path(r, shas))
            k = new if k == old else kind_key(new, *run_kind(r))
        out[k] = r
    return out


def current_first(results: dict[str, dict], renames: list[tuple[str, str]]) -> dict[str, dict]:
    """Each run of a model named `old` moved just before the same kind of run of the model renamed from it."""
    order = list(results)
    for old, new in renames:
        for k in [k for k in order if model_name(k, results[k]) == old]:
            kind = run_kind(results[k])
            to = next((j for j in order if model_name(j, results[j]) == new and run_kind(results[j]) == kind), None)
            if to is not None:
                order.remove(k)
                order.insert(order.index(to), k)
    return {k: results[k] for k in order}
