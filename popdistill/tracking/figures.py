"""Figures logged to MLflow (matplotlib on the Agg canvas; no pyplot, no display)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["generation_figure"]


def generation_figure(series: Mapping[str, Mapping[int, float]], metric: str = "J"):
    """A matplotlib Figure of ``metric`` by generation, one line per name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, values in series.items():
        gens = sorted(values)
        ax.plot(gens, [values[g] for g in gens], marker="o", label=name)
    gens_all = sorted({g for values in series.values() for g in values})
    if gens_all:
        ax.set_xticks(gens_all)
    ax.set_xlabel("generation")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by generation")
    if series:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
