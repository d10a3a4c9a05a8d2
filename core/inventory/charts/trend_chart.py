"""The trend chart: landslide counts as bars and total area as a line, through the years."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory, offset_copy

from .schema import validate_chart
from .style import (
    _LABEL_SIZE,
    _LEGEND_SIZE,
    _MAX_FILLED_YEARS,
    _TICK_SIZE,
    _TITLE_SIZE,
    DEFAULT_TITLES,
    _clear,
    _finish,
    _format_number,
    _legend,
    _no_data_note,
    _style_axes,
    _values,
)


def _area_unit(max_m2: float) -> tuple[str, float]:
    if max_m2 >= 1e6:
        return "km²", 1e6
    if max_m2 >= 1e4:
        return "ha", 1e4
    return "m²", 1.0


def _trend_categories(years: list[int]) -> list[int]:
    """The x categories: the given years, with missing calendar years in between filled in
    (drawn as visible gaps) unless that would make too many categories."""
    if not years:
        return []
    lo, hi = min(years), max(years)
    if hi - lo + 1 <= _MAX_FILLED_YEARS:
        return list(range(lo, hi + 1))
    return sorted(years)


def _series_colours(j: int) -> tuple:
    """(bar face, line and edge) colours of the j-th trend series: a light/dark pair."""
    pairs = matplotlib.colormaps["tab20"].colors
    k = (j % 10) * 2
    return pairs[k + 1], pairs[k]


_TREND_LINES = ["-", "--", "-.", ":"]


def draw_trend(fig: Figure, data: dict, legend: str | None = None) -> None:
    """Draw landslide counts (bars, left axis) and total area (line, right axis) per year onto
    ``fig`` (cleared first). Years absent from the data or null values show as gaps."""
    data = validate_chart(data, kind="trend")
    _clear(fig)
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.xaxis.grid(False)

    years = [int(y) for y in data["years"]]
    order = np.argsort(years, kind="stable")
    categories = _trend_categories(years)
    slot = {y: i for i, y in enumerate(categories)}
    where = np.array([slot[years[i]] for i in order], dtype=int)
    k = len(categories)
    series = data["series"] if years else []
    n_series = max(len(series), 1)
    width = 0.8 / n_series

    areas = [_values(s.get("area_m2"))[order] if s.get("area_m2") is not None else None
             for s in series]
    finite_areas = [a[np.isfinite(a)] for a in areas if a is not None]
    max_area = max((a.max() for a in finite_areas if len(a)), default=0.0)
    unit, factor = _area_unit(max_area)

    ax2 = None
    if any(len(a) for a in finite_areas):
        ax2 = ax.twinx()
        ax2.spines["top"].set_visible(False)
        ax2.tick_params(labelsize=_TICK_SIZE)

    handles, labels = [], []
    max_count = 0.0
    any_count = False
    label_bars = k * n_series <= 24
    bar_labels = []
    for j, s in enumerate(series):
        face, dark = _series_colours(j)
        counts = np.full(k, np.nan)
        counts[where] = _values(s["count"])[order]
        offset = (j - (len(series) - 1) / 2) * width
        have = np.isfinite(counts)
        positions = np.arange(k) + offset
        if have.any():
            ax.bar(positions[have], counts[have], width * 0.92, color=face, edgecolor=dark,
                          linewidth=0.7, zorder=2)
            max_count = max(max_count, float(counts[have].max()))
            any_count = True
            if label_bars:
                bar_labels.append((positions[have], counts[have]))
        for i in np.flatnonzero(~have & np.isin(np.arange(k), where)):  # a null in a given year
            ax.text(positions[i], 0.02, "n/a", transform=blended_transform_factory(ax.transData, ax.transAxes),
                    ha="center", va="bottom", fontsize=7, color=dark, rotation=90)
        handles.append(Patch(facecolor=face, edgecolor=dark, linewidth=0.7))
        labels.append(f"{s['label']}: number of landslides")

        if areas[j] is not None and ax2 is not None:
            line = np.full(k, np.nan)
            line[where] = areas[j] / factor
            style = _TREND_LINES[j % len(_TREND_LINES)]
            ax2.plot(np.arange(k), line, color=dark, linestyle=style, linewidth=2.0, marker="o",
                     markersize=5, markeredgecolor="white", markeredgewidth=0.7, zorder=3)
            handles.append(Line2D([], [], color=dark, linestyle=style, linewidth=2.0, marker="o",
                                  markersize=5, markeredgecolor="white"))
            labels.append(f"{s['label']}: total area ({unit})")

    given = set(years)
    hidden = {int(y) for y in data.get("hidden_years") or []}   # years a viewer switched off
    for i, year in enumerate(categories):
        if year not in given:
            ax.axvspan(i - 0.5, i + 0.5, color="#f0f0f0", zorder=0, linewidth=0)
            ax.text(i, 0.5, "hidden" if year in hidden else "no data", transform=blended_transform_factory(ax.transData, ax.transAxes),
                    ha="center", va="center", rotation=90, fontsize=8, color="#999999")

    # Counts written above the bars, on the top axes on a white patch so the area line
    # never hides them.
    above_bar = offset_copy(ax.transData, fig=fig, y=1.5, units="points")
    for xs, cs in bar_labels:
        for x, c in zip(xs, cs):
            (ax2 or ax).text(x, c, f"{int(c):,}", transform=above_bar, ha="center", va="bottom",
                             fontsize=7, color="#333333", zorder=5,
                             bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none",
                                       alpha=0.85))

    ncol = 2 if len(handles) > 2 else 1
    rows = math.ceil(len(handles) / ncol)
    headroom = 1.22 + 0.09 * rows  # room above the tallest bar for the bar labels and the legend
    ax.set_ylim(0, max(max_count, 1.0) * headroom)
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(_format_number))
    ax.set_ylabel("Number of landslides", fontsize=_LABEL_SIZE)
    if ax2 is not None:
        ax2.set_ylim(0, (max_area / factor if max_area > 0 else 1.0) * headroom)
        ax2.yaxis.set_major_formatter(ticker.FuncFormatter(_format_number))
        ax2.set_ylabel(f"Total landslide area ({unit})", fontsize=_LABEL_SIZE)
    ax.set_xlim(-0.6, max(k, 1) - 0.4)
    ax.set_xticks(np.arange(k))
    ax.set_xticklabels([str(y) for y in categories], rotation=45 if k > 12 else 0,
                       ha="right" if k > 12 else "center")
    for tick, year in zip(ax.get_xticklabels(), categories):
        if year not in given:
            tick.set_color("#999999")
    ax.set_xlabel("Year", fontsize=_LABEL_SIZE)
    ax.set_title(data.get("title") or DEFAULT_TITLES["trend"], fontsize=_TITLE_SIZE)
    if years and not series:
        _no_data_note(ax, "No series to plot.")
    elif not any_count and ax2 is None:
        _no_data_note(ax, "No landslide counts to plot.")
    elif max_count == 0 and ax2 is None:
        _no_data_note(ax, "No landslides in any of these years.")
    if handles and legend is not None:
        _legend(ax2 or ax, handles, labels, place=legend, below_offset=0.2 if k > 12 else 0.14)
    elif handles:  # on the top axes so the area line never covers it
        (ax2 or ax).legend(handles, labels, loc="upper left", ncol=ncol, fontsize=_LEGEND_SIZE,
                           framealpha=0.92, edgecolor="#cccccc", handlelength=2.6)
    _finish(fig)
