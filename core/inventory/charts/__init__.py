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

from .area_scatter_chart import draw_area_scatter
from .fad_chart import draw_fad
from .files import draw_chart, figure_size, load_chart, write_chart
from .schema import validate_chart
from .style import DPI, KINDS, ChartDataError
from .trend_chart import draw_trend

__all__ = ["DPI", "KINDS", "ChartDataError", "draw_fad", "draw_trend", "draw_area_scatter",
           "draw_chart", "write_chart", "load_chart", "validate_chart", "figure_size"]
