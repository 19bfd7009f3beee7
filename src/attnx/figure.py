"""Figures without pyplot: matplotlib ``Figure`` objects rendered by the Agg canvas, so drawing a report never
changes the caller's matplotlib backend or global figure state (a notebook's inline backend stays as it is).

Mirrors the four pyplot calls attnx used: ``subplots``, ``colorbar``, ``close`` and ``Rectangle``.
"""

from __future__ import annotations

from typing import Any

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["Rectangle", "close", "colorbar", "get_cmap", "subplots"]


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None, **kwargs: Any):  # noqa: ANN201
    """``(figure, axes)`` like ``pyplot.subplots``, on a figure no global state knows about."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # its own Agg canvas: text extents and savefig work, the global backend is untouched
    return fig, fig.subplots(nrows, ncols, **kwargs)


def colorbar(mappable: Any, ax: Any, **kwargs: Any):  # noqa: ANN201
    return ax.figure.colorbar(mappable, ax=ax, **kwargs)


def get_cmap(name: str):  # noqa: ANN201
    return colormaps[name]


def close(fig: Figure) -> None:
    """Nothing to release: the figure is not registered anywhere (kept so call sites read like pyplot's)."""
