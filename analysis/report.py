"""Markdown for reports: tables of numbers formatted for reading, and figure links.

pandas' own ``to_markdown`` needs the optional ``tabulate`` package; reports need only plain
pipe tables, so they are written here.
"""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

MISSING = "n/a"


def format_value(value: object, digits: int = 4) -> str:
    """Numbers with ``digits`` significant digits, NaN as n/a, everything else as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return MISSING
        return f"{value:.{digits}g}"
    if value is None or (hasattr(value, "dtype") and pd.isna(value)):
        return MISSING
    if hasattr(value, "item"):
        return format_value(value.item(), digits)
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A pipe table of ``frame`` (its index is not shown; reset it first if it matters)."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(format_value(v, digits) for v in row) + " |"
            for row in frame.itertuples(index=False, name=None)]
    return "\n".join([header, rule, *rows])


def figure_links(names: Iterable[str], captions: Iterable[str]) -> str:
    """Markdown image links to ``NAME.png`` with a caption line under each."""
    return "\n\n".join(f"![{caption}]({name}.png)\n\n*{caption}* ([PDF]({name}.pdf))"
                       for name, caption in zip(names, captions))
