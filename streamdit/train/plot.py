"""Loss-curve PNGs from a trainer's log.csv (matplotlib, a development dependency: skipped without it)."""
from __future__ import annotations

from pathlib import Path

from ..io.plotting import pyplot
from .trainer import read_log


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_losses(logs: dict[str, str | Path], out: str | Path, title: str = "training loss",
                columns: tuple[str, ...] = ("loss",)) -> Path | None:
    """One line per (log, column), raw values faint and a moving average on top; log-scale y."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, path in logs.items():
        rows = read_log(path)
        for col in columns:
            pts = [(float(r["step"]), float(r[col])) for r in rows if r.get(col) not in (None, "")]
            if not pts:
                continue
            steps, vals = zip(*pts)
            label = name if len(columns) == 1 else f"{name}: {col}"
            line, = ax.plot(steps, vals, alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth(list(vals), max(1, len(vals) // 25)), color=line.get_color(), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
