"""Checks on drawn figures: axis labels, legends, and that no two pieces of text overlap."""
from __future__ import annotations

from itertools import combinations

from matplotlib.figure import Figure
from matplotlib.transforms import Bbox


def _tick_boxes(ax, renderer) -> list[tuple[str, Bbox]]:
    boxes = []
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        lo, hi = min(lo, hi), max(lo, hi)
        for tick in axis.get_major_ticks():
            label = tick.label1
            if label.get_visible() and label.get_text() and lo <= tick.get_loc() <= hi:
                boxes.append((f"tick {label.get_text()}", label.get_window_extent(renderer)))
    return boxes


def text_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """Every drawn text of the figure (tick labels, axis labels, titles, legends) and its box."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for i, ax in enumerate(fig.axes):
        group = []
        for name, text in (("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label),
                           ("title", ax.title), ("left title", ax._left_title)):
            if text.get_text():
                group.append((name, text.get_window_extent(renderer)))
        group += _tick_boxes(ax, renderer)
        if ax.get_legend() is not None:
            group.append(("legend", ax.get_legend().get_window_extent(renderer)))
        boxes += [(f"axes {i} {name}", box) for name, box in group]
    boxes += [(f"figure legend {i}", legend.get_window_extent(renderer))
              for i, legend in enumerate(fig.legends)]
    return boxes


def assert_no_overlapping_text(fig: Figure, slack_px: float = 1.0) -> None:
    boxes = [(name, box.expanded(1, 1).padded(-slack_px)) for name, box in text_boxes(fig)]
    clashes = [(a, b) for (a, ba), (b, bb) in combinations(boxes, 2) if ba.overlaps(bb)]
    assert not clashes, f"overlapping text: {clashes[:5]}"


def assert_labelled(fig: Figure) -> None:
    """Every panel has x and y labels (with units in parentheses or %) and a legend."""
    legends = list(fig.legends)
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel(), ax
        legends += [ax.get_legend()] if ax.get_legend() is not None else []
    assert legends, "figure has no legend"
