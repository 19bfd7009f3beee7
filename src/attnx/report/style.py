"""Conventions every attnx figure follows, in one place.

* Layer axes: layer 0 at the TOP of every layers x heads grid (``imshow(origin="upper")``), as in the CSV
  files read top to bottom.
* Cell annotations: white text on dark cells and black on light ones, chosen from the colour actually drawn
  (WCAG relative luminance), so a value is readable on any colour map and either side of a diverging one.
* Titles: every figure names the model, the data and n (``about``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LAYER_ORIGIN = "upper"  # layer 0 at the top everywhere


def relative_luminance(rgba: tuple[float, ...] | np.ndarray) -> float:
    """WCAG 2 relative luminance of an sRGB colour with channels in [0, 1]."""
    c = np.asarray(rgba, float)[:3]
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2])


def text_colour(rgba: tuple[float, ...] | np.ndarray) -> str:
    """``"white"`` or ``"black"``, whichever contrasts more with ``rgba`` (WCAG contrast ratio)."""
    lum = relative_luminance(rgba)
    return "white" if (1.05) / (lum + 0.05) > (lum + 0.05) / 0.05 else "black"


def annotate_cells(ax, image, values: np.ndarray, fmt: Callable[[float], str], fontsize: float = 6.0) -> None:  # noqa: ANN001
    """Write each finite value of ``values`` ``(rows, cols)`` on its cell of ``image`` (an ``imshow``), in
    the colour that contrasts with that cell's drawn colour."""
    rgba = image.cmap(image.norm(np.ma.masked_invalid(values)))
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, fmt(float(v)), ha="center", va="center", fontsize=fontsize, color=text_colour(rgba[i, j]))


def short_number(v: float) -> str:
    """Two decimals, the leading zero dropped for values in [0, 1) so cells stay narrow (``.42``)."""
    s = f"{v:.2f}"
    return s[1:] if 0 <= v < 1 and s.startswith("0") else s


def data_name(path: str | None) -> str | None:
    """A data file named by its folder and name (``glue_sst2_dev/dev.tsv``): names like dev.tsv say little."""
    if not path:
        return None
    from pathlib import Path

    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def about_line(model: str | None, data: str | None, n: int | str | None, unit: str = "records") -> str:
    """``model, data, n = ...``: the line every figure title carries."""
    parts = [str(model or "?"), str(data or "?")]
    return ", ".join(parts) + f", n = {n if n is not None else '?'} {unit}"


__all__ = [
    "LAYER_ORIGIN", "about_line", "annotate_cells", "data_name", "relative_luminance", "short_number", "text_colour",
]
