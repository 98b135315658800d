"""One look for every manylora figure: fonts, colours, markers, layout, and how files are saved.

Figures are built as ``matplotlib.figure.Figure`` objects on the Agg canvas (never pyplot), so
plotting holds no global state, works without a display and can be inspected by tests. Colours
are the Okabe-Ito palette (distinguishable with colour-blindness and in greyscale with the
markers). Layout is matplotlib's constrained layout, which keeps labels and legends from
overlapping; a legend goes outside the axes, framed (:func:`legend_outside`), so no line runs
through it, and a long title is wrapped to the axes' width (:func:`fit_left_title`) so it
does not reach the legend. Every figure is saved as PNG (for reading) and PDF (for papers), each written to a
temporary name and renamed into place.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from manylora.traces.atomic_io import atomic_file

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
           "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
REFERENCE_COLOR = "#555555"   # target lines (the 90% attainment line, y = x)
PNG_DPI = 150
LEGEND_ROWS = 16   # entries per legend column: a long legend grows sideways, not off the page
MIN_TITLE_CHARS = 20

RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "legend.frameon": False,
    "pdf.fonttype": 42,        # embed TrueType so PDF text stays editable and searchable
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
}


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """rcParams of the house style while artists are created (they read rcParams then)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 6.0,
               height: float = 3.8) -> tuple[Figure, list]:
    """A constrained-layout figure of ``nrows x ncols`` panels; call inside :func:`styled`.
    ``width``/``height`` are per panel, in inches."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def series_style(i: int) -> dict[str, Any]:
    """Colour, marker and line style of the i-th series (cycles after 8 / 32 series)."""
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)]}


def legend_outside(fig: Figure, ax: Axes) -> Legend | None:
    """A framed legend of ``ax``'s labelled artists to the right of the axes, outside them, so
    it never covers a line, a band or the title, however many series there are. The figure is
    widened by the legend's width, so the axes keep the size they would have without it."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    columns = -(-len(handles) // LEGEND_ROWS)
    legend = fig.legend(handles, labels, loc="outside right upper", frameon=True, ncols=columns)
    width = legend.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi  # inches
    fig.set_figwidth(fig.get_figwidth() + width)
    return legend


def _wrap(parts: Sequence[str], width: int) -> str:
    """``parts`` joined by ", ", a line break between two parts where a line would exceed
    ``width`` characters (never inside a part: "host cache=8G" stays on one line)."""
    lines = [""]
    for part in parts:
        joined = f"{lines[-1]}, {part}" if lines[-1] else part
        if len(joined) > width and lines[-1]:
            lines[-1] += ","
            lines.append(part)
        else:
            lines[-1] = joined
    return "\n".join(lines)


def fit_left_title(fig: Figure, ax: Axes, parts: Sequence[str], width: int = 80) -> None:
    """``parts`` (``"alpha=1"``, ...) as ``ax``'s left title, wrapped so that no line is wider
    than the axes: a wider title would run past them into a legend placed beside them. Call
    after the legend is placed, when the axes have their final width."""
    while True:
        title = ax.set_title(_wrap(parts, width), loc="left")
        fig.draw_without_rendering()          # lays the figure out: final axes width
        renderer = fig.canvas.get_renderer()
        room, used = ax.get_window_extent(renderer).width, title.get_window_extent(renderer).width
        if used <= room or width <= MIN_TITLE_CHARS:
            return
        width = max(MIN_TITLE_CHARS, min(width - 1, int(width * room / used)))


def save_figure(fig: Figure, folder: str | Path, name: str) -> list[Path]:
    """Write ``folder/name.png`` and ``folder/name.pdf``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with styled():
        for fmt in ("png", "pdf"):
            path = folder / f"{name}.{fmt}"
            with atomic_file(path) as staged:
                fig.savefig(staged, format=fmt, dpi=PNG_DPI)
            paths.append(path)
    return paths
