"""One colour per year, the same everywhere: the map's layers, the charts and their legends.

The colour follows the year's number, not its position in a run, so a year keeps its
colour in every run, in the FAD of all landslides and in the FAD of new ones (which lacks
the first year). Ten distinct hues (matplotlib's tab10, grey
replaced: grey vanishes on imagery) by the year's last digit; the
decades alternate between the dark and the light variant, so any 20 consecutive years
differ. Plain hex strings: matplotlib and Qt both take them.
"""
from __future__ import annotations

import re
from typing import Sequence

DARK = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
        "#8c564b", "#e377c2", "#a6761d", "#bcbd22", "#17becf")     # tab10, gold for its grey
LIGHT = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
         "#c49c94", "#f7b6d2", "#e6ab02", "#dbdb8d", "#9edae5")
_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")


def year_colour(year: int) -> str:
    """The colour of ``year`` (hex)."""
    year = int(year)
    return (DARK if (year // 10) % 2 else LIGHT)[year % 10] if year >= 0 else DARK[0]


def label_colours(labels: Sequence[str]) -> list[str]:
    """Colours for chart series labelled with their year ("2017", "new 2018"); a label
    without a year takes the hue of its position."""
    out = []
    for i, label in enumerate(labels):
        match = _YEAR.search(str(label))
        out.append(year_colour(int(match.group(1))) if match else DARK[i % len(DARK)])
    return out
