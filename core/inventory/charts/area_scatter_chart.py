"""Predicted against reference area of matched landslides, with the 1:1 line and residuals."""
from __future__ import annotations

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from ...palette import label_colours
from .schema import validate_chart
from .style import (
    _LABEL_SIZE,
    _MINOR_GRID,
    _TITLE_SIZE,
    DEFAULT_TITLES,
    _area_log_axis,
    _clear,
    _finish,
    _format_number,
    _legend,
    _no_data_note,
    _positive,
    _style_axes,
    _values,
)


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
