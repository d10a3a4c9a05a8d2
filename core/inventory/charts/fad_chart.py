"""The frequency-area distribution chart: binned densities, fitted pdfs, x_min and a
reference slope, per year."""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..fad import FEW_TAIL_AREAS
from ...palette import label_colours
from .schema import validate_chart
from .style import (
    _ALL_FITS_UP_TO,
    _LABEL_SIZE,
    _OTHER_FIT_STYLE,
    _REFERENCE_STYLE,
    _TITLE_SIZE,
    _XMIN_STYLE,
    AREA_AXIS_LABEL,
    DEFAULT_TITLES,
    DENSITY_AXIS_LABEL,
    FIT_NAMES,
    FIT_STYLES,
    _area_log_axis,
    _clear,
    _finish,
    _is_finite,
    _legend,
    _no_data_note,
    _positive,
    _style_axes,
    _values,
)


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
