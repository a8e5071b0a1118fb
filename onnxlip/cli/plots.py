"""Figures written to files with matplotlib's Agg canvas (no display, no pyplot state)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import InputError


def _figure(width: float = 6.4, height: float = 4.4):  # -> matplotlib.figure.Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:  # noqa: ANN001
    where = os.fspath(path)
    try:
        fig.savefig(where)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"{where}: cannot write the figure ({reason})") from None


def sweep_plot(path: str | os.PathLike, eps: Sequence[float], bounds: Sequence[float], global_value: float,
               lower: Sequence[float] | None = None, title: str = "", estimate: bool = False) -> None:
    """Local bound L(x0, ε) and lower bound against ε (log-log), global bound as a line."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(eps, bounds, "o-", color="C0", markersize=3, label="local bound L(x0, ε)" + (" (estimate)" if estimate else ""))
    if lower is not None:
        ax.plot(eps, lower, "s--", color="C2", markersize=3, label="empirical lower bound (attack)")
    ax.axhline(global_value, color="C3", linestyle=":", label=f"global bound {global_value:.4g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ε (L2 ball radius)")
    ax.set_ylabel("Lipschitz constant (L2)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def histogram_legend(shown: int, wrong: int, labelled: bool) -> str:
    """What the bars count: inputs with their certified radius (for the true label when labelled)."""
    if not labelled:
        return f"{shown} inputs, radius of their predicted label (no labels given)"
    return f"{shown} correctly classified inputs" + (f" ({wrong} misclassified, not shown)" if wrong else "")


def radius_histogram(path: str | os.PathLike, radii: Sequence[float], correct: Sequence[bool],
                     thresholds: Sequence[float] = (), title: str = "", labelled: bool = True) -> None:
    """Histogram of certified radii of correctly classified inputs (misclassified counted in the
    legend); ``labelled``: False when the labels are the model's own predictions."""
    from matplotlib.ticker import MaxNLocator

    r = np.asarray(radii, dtype=float)[np.asarray(correct, dtype=bool)]
    wrong = len(radii) - len(r)
    fig = _figure()
    ax = fig.add_subplot()
    bins = min(max(len(r) // 2, 5), 50)
    ax.hist(r, bins=bins, color="C0", label=histogram_legend(len(r), wrong, labelled))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of inputs
    for t in thresholds:
        ax.axvline(t, color="C3", linestyle=":", linewidth=1)
    ax.set_xlabel("certified L2 radius")
    ax.set_ylabel("inputs")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
