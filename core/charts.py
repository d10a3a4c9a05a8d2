"""Charts of a multi-temporal landslide inventory, drawn from plain JSON-serialisable dicts.

Three kinds of chart, each described by a dict whose ``"kind"`` says which:

``"fad"``
    Frequency-area distribution per year on log-log axes: the binned probability density as
    markers, the fitted pdfs (power-law tail, Double Pareto simplified, inverse gamma) as lines
    in the year's colour with one line style per fit, the power-law x_min as a thin dashed
    vertical line, and optionally a reference slope for a known exponent.
``"trend"``
    The inventory through the years (the paper's Fig. 4): landslide counts as bars on the
    left axis, total area as a line on a twin right axis (km², ha or m², chosen by magnitude).
``"area_scatter"``
    Predicted against reference area of matched landslides on log-log axes with the 1:1 line
    (the paper's Fig. 10), and a residual panel below.

The same ``draw_*`` function draws onto any :class:`matplotlib.figure.Figure`: the one
:func:`write_chart` makes for the PNG/SVG files, or the QGIS chart panel's own. This module
never imports pyplot, Qt or qgis. The exact schemas are written out in :func:`validate_chart`.
"""
from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Iterable

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory, offset_copy

from .errors import InputError, OutputError
from .fad import FEW_TAIL_AREAS
from .json_values import plain
from .palette import label_colours

__all__ = ["DPI", "KINDS", "ChartDataError", "draw_fad", "draw_trend", "draw_area_scatter",
           "draw_chart", "write_chart", "load_chart", "validate_chart", "figure_size"]

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


# --------------------------------------------------------------------------------------------
# Schema validation
# --------------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """Walks a chart dict and raises ChartDataError naming the source and the offending key."""

    def __init__(self, source: str | os.PathLike | None, kind: str = ""):
        self.source = source
        self.kind = kind

    def fail(self, message: str) -> None:
        schema = f" the '{self.kind}' chart schema" if self.kind else " the chart schema"
        where = f"The chart file {self.source}" if self.source is not None else "The chart data"
        raise ChartDataError(f"{where} does not match{schema}: {message}")

    @staticmethod
    def _name(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def obj(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            self.fail(f"'{path}' must be an object (a dict), not {type(value).__name__}.")
        return value

    def present(self, d: dict, key: str, path: str) -> Any:
        if key not in d:
            where = f"'{path}'" if path else "the top level"
            self.fail(f"{where} has no key '{key}' (missing key '{self._name(path, key)}').")
        return d[key]

    def string(self, d: dict, key: str, path: str, required: bool = True,
               allow_int: bool = False) -> None:
        if not required and d.get(key) is None:
            return
        value = self.present(d, key, path)
        ok = isinstance(value, str) or (allow_int and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            self.fail(f"'{self._name(path, key)}' must be text, not {value!r}.")

    def number(self, d: dict, key: str, path: str, minimum: float | None = None) -> None:
        """An optional number (None or absent allowed)."""
        value = d.get(key)
        if value is None:
            return
        if not _is_number(value):
            self.fail(f"'{self._name(path, key)}' must be a number or null, not {value!r}.")
        if minimum is not None and value < minimum:
            self.fail(f"'{self._name(path, key)}' must be at least {minimum}, not {value!r}.")

    def array(self, d: dict, key: str, path: str, required: bool = True,
              length: int | None = None, length_of: str = "", integer: bool = False) -> list | None:
        """A list of numbers or nulls; nulls (missing values) are skipped when drawing."""
        if not required and key not in d:
            return None
        name = self._name(path, key)
        values = self.present(d, key, path)
        if not isinstance(values, list):
            self.fail(f"'{name}' must be a list of numbers, not {type(values).__name__}.")
        for i, v in enumerate(values):
            if v is None:
                continue
            if not _is_number(v):
                self.fail(f"'{name}[{i}]' must be a number or null, not {v!r}.")
            if integer and v != int(v):
                self.fail(f"'{name}[{i}]' must be a whole number, not {v!r}.")
        if length is not None and len(values) != length:
            self.fail(f"'{name}' has {len(values)} values but '{length_of}' has {length}; "
                      "they must have the same length.")
        return values

    def items(self, d: dict, key: str, path: str, required: bool = True) -> list:
        if not required and key not in d:
            return []
        values = self.present(d, key, path)
        if not isinstance(values, list):
            self.fail(f"'{self._name(path, key)}' must be a list, not {type(values).__name__}.")
        return values


def validate_chart(data: Any, source: str | os.PathLike | None = None,
                   kind: str | None = None) -> dict:
    """Check ``data`` against the chart schema and return a JSON-ready copy of it.

    The copy has numpy arrays and scalars turned into lists and Python numbers and non-finite
    floats turned into ``None``. ``source`` (a file name) is named in the error message;
    ``kind``, when given, is the kind the caller expects. Raises :class:`ChartDataError`.

    Schemas (``title`` is optional everywhere; numbers may be ``null`` where a value is missing;
    keys not listed are kept and ignored)::

        {"kind": "fad", "title": str, "true_exponent": float | null,
         "series": [{"label": str, "n": int | null,
                     "bin_centers": [float], "density": [float],             # same length
                     "fits": [{"name": str, "label": str, "x": [float], "y": [float]}],
                     "rollover_m2": float | null, "x_min_m2": float | null,
                     "alpha": float | null, "mls": float | null}]}

        {"kind": "trend", "title": str, "years": [int],                       # unique
         "series": [{"label": str, "count": [int | null],                     # one per year
                     "area_m2": [float | null]}]}                             # optional

        {"kind": "area_scatter", "title": str,
         "pairs": [{"year": int | str, "reference_m2": [float], "predicted_m2": [float],
                    "residual_m2": [float],          # optional, same length; else predicted − reference
                    "missed_reference_m2": [float],  # optional: reference polygons with no match
                    "false_alarm_m2": [float]}]}     # optional: predicted polygons with no match

    In a FAD series only ``label``, ``bin_centers`` and ``density`` are required; a fit needs
    ``name``, ``x`` and ``y`` (its ``label`` defaults to a readable form of the name).
    """
    check = _Checker(source)
    data = plain(data)
    if not isinstance(data, dict):
        check.fail(f"the top level must be an object (a dict) with a 'kind' key, not {type(data).__name__}.")
    chart_kind = check.present(data, "kind", "")
    if chart_kind not in KINDS:
        check.fail(f"unknown chart kind {chart_kind!r}; expected one of {', '.join(KINDS)}.")
    if kind is not None and chart_kind != kind:
        check.fail(f"this is a '{chart_kind}' chart, not a '{kind}' chart.")
    check.kind = chart_kind
    check.string(data, "title", "", required=False)
    _VALIDATORS[chart_kind](check, data)
    return data


def _validate_fad(check: _Checker, data: dict) -> None:
    check.number(data, "true_exponent", "")
    for i, s in enumerate(check.items(data, "series", "")):
        path = f"series[{i}]"
        check.obj(s, path)
        check.string(s, "label", path, allow_int=True)
        check.number(s, "n", path, minimum=0)
        x = check.array(s, "bin_centers", path)
        check.array(s, "density", path, length=len(x), length_of=f"{path}.bin_centers")
        for key in ("rollover_m2", "x_min_m2", "alpha", "mls"):
            check.number(s, key, path)
        check.number(s, "n_tail", path, minimum=0)
        for j, fit in enumerate(check.items(s, "fits", path, required=False)):
            fpath = f"{path}.fits[{j}]"
            check.obj(fit, fpath)
            check.string(fit, "name", fpath)
            check.string(fit, "label", fpath, required=False)
            fx = check.array(fit, "x", fpath)
            check.array(fit, "y", fpath, length=len(fx), length_of=f"{fpath}.x")


def _validate_trend(check: _Checker, data: dict) -> None:
    years = check.array(data, "years", "", integer=True)
    if any(y is None for y in years):
        check.fail("'years' must not contain null.")
    if len(set(years)) != len(years):
        check.fail(f"'years' lists a year more than once: {years}.")
    for i, s in enumerate(check.items(data, "series", "")):
        path = f"series[{i}]"
        check.obj(s, path)
        check.string(s, "label", path)
        counts = check.array(s, "count", path, length=len(years), length_of="years", integer=True)
        if any(c is not None and c < 0 for c in counts):
            check.fail(f"'{path}.count' must not be negative.")
        check.array(s, "area_m2", path, required=False, length=len(years), length_of="years")


def _validate_area_scatter(check: _Checker, data: dict) -> None:
    for i, p in enumerate(check.items(data, "pairs", "")):
        path = f"pairs[{i}]"
        check.obj(p, path)
        check.string(p, "year", path, allow_int=True)
        ref = check.array(p, "reference_m2", path)
        check.array(p, "predicted_m2", path, length=len(ref), length_of=f"{path}.reference_m2")
        check.array(p, "residual_m2", path, required=False, length=len(ref),
                    length_of=f"{path}.reference_m2")
        check.array(p, "missed_reference_m2", path, required=False)
        check.array(p, "false_alarm_m2", path, required=False)


_VALIDATORS: dict[str, Callable[[_Checker, dict], None]] = {
    "fad": _validate_fad, "trend": _validate_trend, "area_scatter": _validate_area_scatter}


# --------------------------------------------------------------------------------------------
# Shared drawing helpers
# --------------------------------------------------------------------------------------------

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


def _is_finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


# --------------------------------------------------------------------------------------------
# FAD
# --------------------------------------------------------------------------------------------

def _fit_label(fit: dict) -> str:
    return fit.get("label") or FIT_NAMES.get(fit["name"], fit["name"].replace("_", " "))


def _shown_fits(series: list, fits: Any) -> list[list[dict]]:
    """The fits drawn for each series.

    ``fits``: ``None`` (automatic: every fit for up to three years, otherwise one per year,
    the power law where there is one), ``"all"``, or a name / list of names to show.
    """
    if fits is None:
        if len(series) <= _ALL_FITS_UP_TO:
            return [list(s.get("fits") or []) for s in series]
        shown = []
        for s in series:
            candidates = list(s.get("fits") or [])
            power = [f for f in candidates if f["name"] == "power_law"]
            shown.append(power[:1] or candidates[:1])
        return shown
    if fits == "all":
        return [list(s.get("fits") or []) for s in series]
    wanted = {fits} if isinstance(fits, str) else set(fits)
    return [[f for f in (s.get("fits") or []) if f["name"] in wanted] for s in series]


def _series_header(s: dict, with_alpha: bool, brief: bool = False) -> str:
    thin = _is_finite(s.get("n_tail")) and _is_finite(s.get("alpha")) and s["n_tail"] < FEW_TAIL_AREAS
    if brief:
        return f"{s['label']}{' ⚠' if thin else ''}"
    extras = []
    if _is_finite(s.get("n")):
        extras.append(f"n = {int(s['n']):,}")
    if with_alpha and _is_finite(s.get("alpha")):
        extras.append(f"α = {s['alpha']:.2f}")
    if _is_finite(s.get("mls")):
        extras.append(f"mLS = {s['mls']:.1f}")
    if thin:
        extras.append(f"⚠ power law on {int(s['n_tail'])} polygons")
    label = str(s["label"])
    return f"{label} ({', '.join(extras)})" if extras else label


def draw_fad(fig: Figure, data: dict, fits: Any = None, legend: str | None = None,
             brief_legend: bool = False) -> None:
    """Draw the frequency-area distribution of each year onto ``fig`` (cleared first).

    ``fits`` chooses the fitted curves: ``None`` shows all fits for up to three years and one
    fit per year (the power law) beyond, ``"all"`` shows every fit, a name or a list of names
    (``"power_law"``, ``"dps"``, ``"inverse_gamma"``) shows those. ``legend``: see _legend;
    ``brief_legend`` names the years and fits without their parameters (for a small panel
    whose table lists them).
    A year whose power law rests on fewer than FEW_TAIL_AREAS polygons says so in the legend.
    """
    data = validate_chart(data, kind="fad")
    _clear(fig)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    _style_axes(ax, log=True)
    _area_log_axis(ax.xaxis)

    series = data["series"]
    shown_fits = _shown_fits(series, fits)
    colours = label_colours([s["label"] for s in series])       # the map's year colours
    handles, labels = [], []
    xs, ys, tails = [], [], []
    any_xmin = False
    hidden = False
    for s, shown, colour in zip(series, shown_fits, colours):
        hidden |= len(shown) < len(s.get("fits") or [])
        x, y = _values(s["bin_centers"]), _values(s["density"])
        ok = _positive(x, y)
        marker = dict(marker="o", markersize=5, markerfacecolor=colour, markeredgecolor="white",
                      markeredgewidth=0.6)
        if ok.any():
            ax.plot(x[ok], y[ok], linestyle="none", color=colour, zorder=3, **marker)
            xs.append(x[ok])
            ys.append(y[ok])
        xmin = s.get("x_min_m2")
        has_xmin = _is_finite(xmin) and xmin > 0
        if ok.any():  # the tail, for placing the reference slope
            start = xmin if has_xmin else x[ok][np.argmax(y[ok])]
            tail = ok & (x >= start)
            tails.append((x[tail], y[tail]))
        if has_xmin:
            ax.axvline(xmin, color=colour, linestyle=_XMIN_STYLE, linewidth=1.0, alpha=0.8, zorder=1)
            any_xmin = True

        fit_entries = []
        for fit in shown:
            style, width = FIT_STYLES.get(fit["name"], _OTHER_FIT_STYLE)
            fx, fy = _values(fit["x"]), _values(fit["y"])
            fok = _positive(fx, fy)
            if fok.any():
                ax.plot(fx[fok], fy[fok], color=colour, linestyle=style, linewidth=width, zorder=2)
            fit_entries.append((Line2D([], [], color=colour, linestyle=style, linewidth=width),
                                FIT_NAMES.get(fit["name"], fit["name"]) if brief_legend else _fit_label(fit)))
        header = _series_header(s, with_alpha=not shown, brief=brief_legend)
        if not ok.any():
            header += " — no positive values to plot"
        if len(fit_entries) == 1:  # one line per year: marker and fit line in one entry
            handle, fit_text = fit_entries[0]
            handle.set(**marker)
            handles.append(handle)
            labels.append(f"{header}: {fit_text}")
        else:
            handles.append(Line2D([], [], linestyle="none", color=colour, **marker))
            labels.append(header)
            for handle, fit_text in fit_entries:
                handles.append(handle)
                labels.append(fit_text)

    if xs:
        allx, ally = np.concatenate(xs), np.concatenate(ys)
        ax.set_xlim(allx.min() / 1.8, allx.max() * 1.8)
        ax.set_ylim(ally.min() / 5, ally.max() * 5)
        exponent = data.get("true_exponent")
        tail_x = np.concatenate([t[0] for t in tails])
        tail_y = np.concatenate([t[1] for t in tails])
        if _is_finite(exponent) and len(tail_x):
            # parallel to the tail, just below it: compare slopes, not positions
            lx, ly = np.log10(tail_x).mean(), np.log10(tail_y).mean()
            rx = np.logspace(np.log10(tail_x.min()), np.log10(tail_x.max()), 50)
            ry = 10 ** (ly - exponent * (np.log10(rx) - lx)) / 4
            ax.plot(rx, ry, color="#444444", linestyle=_REFERENCE_STYLE, linewidth=1.3, zorder=2)
            handles.append(Line2D([], [], color="#444444", linestyle=_REFERENCE_STYLE, linewidth=1.3))
            labels.append(f"reference slope: true α = {exponent:g}")
    else:
        ax.set_xlim(10, 1e6)
        ax.set_ylim(1e-9, 1e-2)
        if not series:
            _no_data_note(ax, "No landslides in this inventory:\nnothing to plot.")
        else:
            _no_data_note(ax, "No landslides to plot\n(no positive, finite densities).")
    if any_xmin:
        handles.append(Line2D([], [], color="#555555", linestyle=_XMIN_STYLE, linewidth=1.0))
        labels.append("x_min" if brief_legend else "x_min of the power-law tail")

    ax.set_xlabel(AREA_AXIS_LABEL, fontsize=_LABEL_SIZE)
    ax.set_ylabel(DENSITY_AXIS_LABEL, fontsize=_LABEL_SIZE)
    ax.set_title(data.get("title") or DEFAULT_TITLES["fad"], fontsize=_TITLE_SIZE)
    _legend(ax, handles, labels, inside_loc="lower left",
            title="other fits hidden" if hidden else None, place=legend)
    _finish(fig)


# --------------------------------------------------------------------------------------------
# Trend
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Area scatter
# --------------------------------------------------------------------------------------------

def draw_area_scatter(fig: Figure, data: dict, legend: str | None = None) -> None:
    """Draw predicted against reference area (log-log, 1:1 line) with the residuals against
    reference area in a panel below, one colour per year, onto ``fig`` (cleared first).

    Missed reference polygons are marked ▽ along the bottom edge at their reference area,
    false alarms ◁ along the left edge at their predicted area; their counts are in the legend.
    """
    data = validate_chart(data, kind="area_scatter")
    _clear(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=(3.0, 1.3))
    ax = fig.add_subplot(grid[0])
    axr = fig.add_subplot(grid[1], sharex=ax)
    for a in (ax, axr):
        a.set_xscale("log")
    ax.set_yscale("log")
    _style_axes(ax, log=True)
    _style_axes(axr)
    axr.grid(True, which="minor", axis="x", **_MINOR_GRID)
    _area_log_axis(ax.xaxis)
    _area_log_axis(ax.yaxis)

    pairs = data["pairs"]
    colours = label_colours([str(p["year"]) for p in pairs])
    bottom = blended_transform_factory(ax.transData, ax.transAxes)
    left = blended_transform_factory(ax.transAxes, ax.transData)
    handles, labels = [], []
    extent, residual_max = [], 0.0
    n_missed_total = n_false_total = 0
    for p, colour in zip(pairs, colours):
        ref, pred = _values(p["reference_m2"]), _values(p["predicted_m2"])
        res = _values(p["residual_m2"]) if p.get("residual_m2") is not None else pred - ref
        ok = _positive(ref, pred)
        dot = dict(s=20, color=colour, alpha=0.75, edgecolors="white", linewidths=0.3, zorder=3)
        if ok.any():
            ax.scatter(ref[ok], pred[ok], **dot)
            extent += [ref[ok], pred[ok]]
        rok = _positive(ref) & np.isfinite(res)
        if rok.any():
            axr.scatter(ref[rok], res[rok], **dot)
            residual_max = max(residual_max, float(np.abs(res[rok]).max()))
            extent.append(ref[rok])
        text = f"{p['year']}: {int(ok.sum()):,} matched"
        if "missed_reference_m2" in p:
            missed = _values(p["missed_reference_m2"])
            text += f", {len(missed):,} missed"
            missed = missed[_positive(missed)]
            if len(missed):
                ax.plot(missed, np.full(len(missed), 0.012), transform=bottom, linestyle="none",
                        marker="v", markersize=6, markerfacecolor="none", markeredgecolor=colour,
                        markeredgewidth=1.1, clip_on=False, zorder=4)
                extent.append(missed)
                n_missed_total += len(missed)
        if "false_alarm_m2" in p:
            false = _values(p["false_alarm_m2"])
            text += f", {len(false):,} false alarm{'s' if len(false) != 1 else ''}"
            false = false[_positive(false)]
            if len(false):
                ax.plot(np.full(len(false), 0.012), false, transform=left, linestyle="none",
                        marker="<", markersize=6, markerfacecolor="none", markeredgecolor=colour,
                        markeredgewidth=1.1, clip_on=False, zorder=4)
                extent.append(false)
                n_false_total += len(false)
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=6,
                              markerfacecolor=colour, markeredgecolor="white", alpha=0.85))
        labels.append(text)

    if extent:
        values = np.concatenate(extent)
        lo, hi = values.min() / 1.8, values.max() * 1.8
    else:
        lo, hi = 10.0, 1e6
    ax.plot([lo, hi], [lo, hi], color="#333333", linestyle="--", linewidth=1.1, zorder=2)
    handles.append(Line2D([], [], color="#333333", linestyle="--", linewidth=1.1))
    labels.append("1:1 line")
    if n_missed_total:
        handles.append(Line2D([], [], linestyle="none", marker="v", markersize=6, markerfacecolor="none",
                              markeredgecolor="#555555", markeredgewidth=1.1))
        labels.append("missed reference (at its area, bottom edge)")
    if n_false_total:
        handles.append(Line2D([], [], linestyle="none", marker="<", markersize=6, markerfacecolor="none",
                              markeredgecolor="#555555", markeredgewidth=1.1))
        labels.append("false alarm (at its area, left edge)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    if not pairs:
        _no_data_note(ax, "No matched landslides to compare.")
    elif not extent:
        _no_data_note(ax, "No positive, finite areas to plot.")

    axr.axhline(0, color="#333333", linewidth=1.0, zorder=2)
    limit = residual_max * 1.15 if residual_max > 0 else 1.0
    axr.set_ylim(-limit, limit)
    axr.yaxis.set_major_locator(ticker.MaxNLocator(nbins=5, symmetric=True))
    axr.yaxis.set_major_formatter(ticker.FuncFormatter(_format_number))
    ax.tick_params(labelbottom=False, which="both")
    ax.set_ylabel("Predicted landslide area (m²)", fontsize=_LABEL_SIZE)
    axr.set_ylabel("Residual (m²)", fontsize=_LABEL_SIZE)
    axr.set_xlabel("Reference landslide area (m²)", fontsize=_LABEL_SIZE)
    ax.set_title(data.get("title") or DEFAULT_TITLES["area_scatter"], fontsize=_TITLE_SIZE)
    _legend(ax, handles, labels, inside_loc="upper left", place=None if legend == "below" else legend)
    _finish(fig)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

_DRAW: dict[str, Callable[..., None]] = {
    "fad": draw_fad, "trend": draw_trend, "area_scatter": draw_area_scatter}


def draw_chart(fig: Figure, data: dict, **options) -> None:
    """Draw any chart dict onto ``fig``, choosing the function by ``data["kind"]``."""
    data = validate_chart(data)
    _DRAW[data["kind"]](fig, data, **options)


def figure_size(data: dict) -> tuple[float, float]:
    """Width and height in inches of the chart without a legend beside the axes (write_chart
    widens the figure by that legend's width)."""
    kind = data.get("kind")
    if kind == "fad":
        return 8.0, 5.5
    if kind == "trend":
        years = data.get("years") or []
        k = len(_trend_categories([int(y) for y in years]))
        n = max(len(data.get("series") or []), 1)
        return float(min(16.0, max(8.0, 2.5 + 0.45 * k * n))), 5.0
    return 7.0, 8.0


def _target(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)


def write_chart(data: dict, stem: str | os.PathLike, **options) -> list[Path]:
    """Write the chart as ``<stem>.png`` (150 dpi), ``<stem>.svg`` and ``<stem>.json``.

    ``data["kind"]`` chooses the chart; ``options`` go to its ``draw_*`` function (e.g.
    ``fits="all"`` for a FAD). Each file is written under a hidden temporary name in the same
    folder and renamed into place only when all three are complete. Existing files are never
    overwritten: :class:`OutputError` if any of the three exists. Returns the three paths.
    """
    data = validate_chart(data)
    stem = Path(stem)
    targets = [_target(stem, suffix) for suffix in (".png", ".svg", ".json")]
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise OutputError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                          "refusing to overwrite. Choose another name or remove the old chart.")
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the folder {stem.parent} for the chart: "
                          f"{exc.strerror or exc}.") from None

    fig = Figure(figsize=figure_size(data), dpi=DPI)
    FigureCanvasAgg(fig)
    _DRAW[data["kind"]](fig, data, **options)
    _widen_for_outside_legend(fig)

    temps: list[Path] = []
    placed: list[Path] = []
    token = secrets.token_hex(4)
    try:
        for target in targets:
            tmp = target.parent / f".{target.name}.{token}.partial"
            temps.append(tmp)
            with open(tmp, "xb") as fh:
                if target.suffix == ".png":
                    fig.savefig(fh, format="png", dpi=DPI)
                elif target.suffix == ".svg":
                    # text stays text (searchable, editable); fixed ids make the file reproducible
                    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "landslide-mapper"}):
                        fig.savefig(fh, format="svg", dpi=DPI, metadata={"Date": None})
                else:
                    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)
                    fh.write(text.encode("utf-8") + b"\n")
        for target in targets:
            if target.exists():
                raise OutputError(f"{target} appeared while the chart was being written; "
                                  "refusing to overwrite it.")
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
            placed.append(target)
    except OSError as exc:
        for path in placed:
            path.unlink(missing_ok=True)
        raise OutputError(f"Cannot write the chart {stem}.png/.svg/.json: {exc.strerror or exc}.") from None
    except BaseException:
        for path in placed:
            path.unlink(missing_ok=True)
        raise
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return targets


def load_chart(path_json: str | os.PathLike) -> dict:
    """Read a chart JSON file written by :func:`write_chart` and check it against the schema.

    Raises :class:`InputError` when the file cannot be read and :class:`ChartDataError`
    (naming the file and the missing or wrong key) when it is not a valid chart.
    """
    path = Path(path_json)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"The chart file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the chart file {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChartDataError(f"The chart file {path} is not valid JSON: {exc.msg} "
                             f"(line {exc.lineno}, column {exc.colno}).") from None
    return validate_chart(data, source=path)
