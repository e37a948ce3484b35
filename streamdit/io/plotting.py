"""matplotlib for the PNGs in docs/ (a development dependency: plots are skipped without it)."""
from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # no display: figures only go to files
    import matplotlib.pyplot as plt

    return plt
