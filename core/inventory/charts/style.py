"""What every chart shares: sizes, styles, names, the error type, and the drawing helpers
(axes, log ticks, legends beside or below the axes)."""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from ...errors import InputError

DPI = 150
KINDS = ("fad", "trend", "area_scatter")

AREA_AXIS_LABEL = "Landslide area A (m²)"
DENSITY_AXIS_LABEL = "Probability density p(A) (m⁻²)"
DEFAULT_TITLES = {"fad": "Frequency-area distribution",
                  "trend": "Landslides through the years",
                  "area_scatter": "Predicted vs reference landslide area"}

# Line style and width of each fitted pdf; any other fit name gets _OTHER_FIT_STYLE.
FIT_STYLES = {"power_law": ("-", 2.0), "dps": ("-.", 1.5), "inverse_gamma": (":", 1.8)}
_OTHER_FIT_STYLE = ((0, (6, 1.5, 1, 1.5, 1, 1.5)), 1.5)
FIT_NAMES = {"power_law": "power law", "dps": "double Pareto (simplified)",
             "inverse_gamma": "inverse gamma"}
_XMIN_STYLE = (0, (3, 3))
_REFERENCE_STYLE = (0, (8, 2, 1, 2))

# Above this many legend entries the legend goes outside the axes, to the right.
_MAX_INSIDE_LEGEND = 7
# With more years than this, a FAD shows one fit per year unless told otherwise.
_ALL_FITS_UP_TO = 3
# The trend chart fills in missing calendar years (as visible gaps) up to this many categories.
_MAX_FILLED_YEARS = 40

_OUTSIDE_LEGEND_ID = "legend-beside-axes"
_GRID = dict(color="#d6d6d6", linewidth=0.7)
_MINOR_GRID = dict(color="#eeeeee", linewidth=0.5)
_LABEL_SIZE = 9.5
_TICK_SIZE = 8.5
_LEGEND_SIZE = 8
_TITLE_SIZE = 11.5
_NOTE_COLOUR = "#666666"


class ChartDataError(InputError, ValueError):
    """A chart dict or chart JSON file does not match the chart schema.

    Both an :class:`~landslide_mapper.core.errors.InputError` (its message is for the user)
    and a ``ValueError``.
    """


def _values(values: Iterable | None) -> np.ndarray:
    """Float array with None as NaN."""
    if values is None:
        return np.zeros(0)
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _positive(*arrays: np.ndarray) -> np.ndarray:
    """Mask of the positions where every array is finite and > 0 (drawable on log axes)."""
    mask = np.ones(len(arrays[0]), bool)
    for a in arrays:
        with np.errstate(invalid="ignore"):
            mask &= np.isfinite(a) & (a > 0)
    return mask


def _format_number(value: float, pos: Any = None) -> str:
    """Thousands separators, at most two decimals, a true minus sign."""
    if value == 0:
        return "0"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return text.replace("-", "\u2212")


class _AreaLogFormatter(ticker.LogFormatterSciNotation):
    """Log-axis ticks for areas: 10, 100, 1,000 … 1,000,000 written out, 10ⁿ beyond."""

    def __call__(self, x, pos=None):
        text = super().__call__(x, pos)
        if text and 1 <= abs(x) < 1e7:
            return f"{x:,.0f}"
        return text


def _area_log_axis(axis) -> None:
    axis.set_major_formatter(_AreaLogFormatter())
    axis.set_minor_formatter(_AreaLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _style_axes(ax, log: bool = False) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=_TICK_SIZE)
    ax.tick_params(which="minor", labelsize=_TICK_SIZE - 1)
    ax.grid(True, which="major", **_GRID)
    if log:
        ax.grid(True, which="minor", **_MINOR_GRID)
    ax.set_axisbelow(True)


def _no_data_note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center",
            fontsize=11, color=_NOTE_COLOUR, wrap=True,
            bbox=dict(boxstyle="round,pad=0.6", facecolor="white", edgecolor="#cccccc"))


LEGEND_PLACES = (None, "beside", "below")   # None: inside unless it has many entries


def _legend(ax, handles: list, labels: list, inside_loc: str = "best", title: str | None = None,
            place: str | None = None, below_offset: float = 0.14):
    """The legend inside the axes (few entries), or outside them: ``place`` "beside" (to the
    right; also for many entries) or "below" (under the x axis label), never over the data."""
    if not handles:
        return None
    if place not in LEGEND_PLACES:
        raise ValueError(f"legend place must be one of {LEGEND_PLACES}, not {place!r}")
    kwargs = dict(fontsize=_LEGEND_SIZE, title=title, title_fontsize=_LEGEND_SIZE,
                  framealpha=0.92, edgecolor="#cccccc", handlelength=2.6)
    if place == "below":
        return ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -below_offset),
                         borderaxespad=0.0, ncol=2 if len(handles) > 3 else 1, **kwargs)
    if len(handles) <= _MAX_INSIDE_LEGEND and place is None:
        return ax.legend(handles, labels, loc=inside_loc, **kwargs)
    ncol = 1 if len(handles) <= 24 else 2
    legend = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       borderaxespad=0.0, ncol=ncol, **kwargs)
    legend.set_gid(_OUTSIDE_LEGEND_ID)
    return legend


def _widen_for_outside_legend(fig: Figure) -> None:
    """Make a figure of fixed size wider by the width of a legend placed beside the axes, so
    the axes keep their size however long the legend labels are."""
    legends = [ax.get_legend() for ax in fig.axes]
    legends = [leg for leg in legends if leg is not None and leg.get_gid() == _OUTSIDE_LEGEND_ID]
    if not legends:
        return
    renderer = fig.canvas.get_renderer()
    extra = max(leg.get_window_extent(renderer).width for leg in legends) / fig.dpi
    width, height = fig.get_size_inches()
    fig.set_size_inches(width + extra + 0.2, height)


def _clear(fig: Figure) -> None:
    """Empty the figure for a new chart. The axes are taken out first: clearing axes that
    share a log x axis would reset their limits to (0, 1) and warn."""
    for ax in list(fig.axes):
        fig.delaxes(ax)
    fig.clear()


def _finish(fig: Figure) -> None:
    fig.set_layout_engine("tight", pad=0.6)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)
