"""The chart panel on a real run folder: three years of polygons through ``run_subtract``
(fad, fad_new and trend charts, statistics.json), shown in a real QgsDockWidget offscreen.

Run with ``QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q tests/qgis/test_chart_panel.py``.
"""
from __future__ import annotations

import json
from pathlib import Path
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import shapely
from osgeo import osr

from landslide_mapper.core.inventory.analysis import run_subtract
from landslide_mapper.core.inventory.charts import write_chart
from landslide_mapper.core.jobs.specs import InventoryLayer, SubtractJob
from landslide_mapper.core.geodata.vector_io import VectorLayer, write_geopackage
from landslide_mapper.ui.chart_panel import ChartPanel, chart_years, filter_years

COUNTS = {2016: 60, 2017: 150, 2018: 100}


def _squares(n: int, rng) -> np.ndarray:
    """n squares in distinct cells of a 300 m grid, areas from a power law (α = 2.3) above 200 m²."""
    areas = np.minimum(200.0 * (1 - rng.random(n)) ** (-1 / 1.3), 60_000.0)
    cells = rng.choice(40 * 40, n, replace=False)
    x0 = 500_000.0 + (cells % 40) * 300.0
    y0 = 3_000_000.0 + (cells // 40) * 300.0
    side = np.sqrt(areas)
    return shapely.box(x0, y0, x0 + side, y0 + side)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chart_panel")
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32645)
    rng = np.random.default_rng(3)
    gpkg = tmp / "inventories.gpkg"
    write_geopackage(gpkg, {f"ls_{y}": VectorLayer(_squares(n, rng), {}, srs.ExportToWkt())
                            for y, n in COUNTS.items()})
    result = run_subtract(SubtractJob([InventoryLayer(y, str(gpkg), f"ls_{y}") for y in COUNTS],
                                      str(tmp / "out"), run_name="three_years"))
    return result.run_dir


@pytest.fixture
def panel(qgis_app):
    widget = ChartPanel()
    yield widget
    widget.close()
    widget.deleteLater()


def _legend_texts(panel) -> list[str]:
    legends = [ax.get_legend() for ax in panel.figure.axes if ax.get_legend() is not None]
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def _fad_marker_lines(panel) -> list:
    ax = panel.figure.axes[0]
    return [ln for ln in ax.lines if ln.get_linestyle() == "None" and ln.get_marker() == "o"]


def test_panel_lists_the_charts_and_years_of_the_run(panel, run_dir):
    panel.show_run(run_dir)
    assert panel.objectName() == "LandslideMapperChartPanel"
    assert panel.windowTitle() == "Landslide Mapper charts"
    assert str(panel.run_dir) == run_dir
    assert panel.chart_names() == ["Frequency–area distribution", "FAD of new/enlarged landslides",
                                   "Trend over years"]
    assert panel.current_chart() == "Frequency–area distribution"
    assert panel.message_text() == ""
    assert panel.years() == [2016, 2017, 2018]
    assert [s["label"] for s in panel.shown_data()["series"]] == ["2016", "2017", "2018"]
    assert len(_fad_marker_lines(panel)) == 3
    panel.set_chart("FAD of new/enlarged landslides")     # nothing is new in the first year
    assert panel.years() == [2017, 2018]
    panel.set_chart("trend")                              # by file stem too
    assert panel.current_chart() == "Trend over years"
    assert panel.shown_data()["years"] == [2016, 2017, 2018]
    with pytest.raises(ValueError, match="No chart 'pie'"):
        panel.set_chart("pie")


def test_unticking_a_year_redraws_without_it(panel, run_dir):
    panel.show_run(run_dir)
    assert any(t.startswith("2017") for t in _legend_texts(panel))
    panel.set_year_visible(2017, False)
    assert [s["label"] for s in panel.shown_data()["series"]] == ["2016", "2018"]
    assert not any(t.startswith("2017") for t in _legend_texts(panel))
    assert any(t.startswith("2018") for t in _legend_texts(panel))
    assert len(_fad_marker_lines(panel)) == 2
    item = panel.year_list.item(panel.years().index(2017))
    assert item.checkState() == 0  # Qt.Unchecked

    # the choice holds across charts; the trend chart loses the year's category
    panel.set_chart("Trend over years")
    panel.set_year_visible(2018, False)
    trend = panel.shown_data()
    assert trend["years"] == [2016]
    assert all(len(s["count"]) == 1 for s in trend["series"])
    assert trend["series"][0]["count"] == [COUNTS[2016]]
    assert [t.get_text() for t in panel.figure.axes[0].get_xticklabels()] == ["2016"]

    # a hidden year between shown ones is a gap labelled as hidden, not as missing data
    panel.set_year_visible(2018, True)
    texts = [t.get_text() for ax in panel.figure.axes for t in ax.texts]
    assert "hidden" in texts and "no data" not in texts
    panel.set_year_visible(2018, False)

    panel.set_chart("Frequency–area distribution")
    assert [s["label"] for s in panel.shown_data()["series"]] == ["2016"]
    panel.set_year_visible(2017, True)
    panel.set_year_visible(2018, True)
    assert [s["label"] for s in panel.shown_data()["series"]] == ["2016", "2017", "2018"]
    with pytest.raises(ValueError, match="no year 1999"):
        panel.set_year_visible(1999, False)


def test_export_writes_the_shown_chart_as_png_and_svg(panel, run_dir, tmp_path):
    panel.show_run(run_dir)
    panel.set_year_visible(2017, False)
    png = panel.export(tmp_path / "fad.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    svg = panel.export(tmp_path / "fad.SVG")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text(encoding="utf-8")
    assert "2018 (n = " in text and "2017 (n = " not in text   # text stays text in the SVG


def test_export_refuses_other_formats(panel, run_dir, tmp_path):
    panel.show_run(run_dir)
    with pytest.raises(ValueError, match=r"must end in \.png or \.svg"):
        panel.export(tmp_path / "chart.pdf")
    with pytest.raises(ValueError, match="must end in"):
        panel.export(tmp_path / "chart")
    assert list(tmp_path.iterdir()) == []


def test_statistics_table_has_a_row_per_year(panel, run_dir):
    panel.show_run(run_dir)
    headers = panel.table_headers()
    for name in ("Year", "Polygons", "Total area m²", "Mean area m²", "Median area m²", "Density per km²",
                 "Areal density %", "α", "α SE", "Tail n", "α new", "α new SE"):
        assert name in headers
    rows = panel.table_rows()
    year, count = headers.index("Year"), headers.index("Polygons")
    assert [(int(r[year]), int(r[count])) for r in rows] == list(COUNTS.items())
    stats = json.loads((panel.run_dir / "statistics.json").read_text())["years"]
    alpha = headers.index("α")
    assert rows[0][alpha] == f"{stats[0]['alpha']:.2f}"
    assert rows[0][headers.index("α new")] == ""                  # nothing before 2016
    assert panel.table.editTriggers() == panel.table.NoEditTriggers
    assert panel.table.isSortingEnabled()
    panel.table.sortItems(count, 1)  # Qt.DescendingOrder, numerically: 150, 100, 60
    assert [int(r[count]) for r in panel.table_rows()] == [150, 100, 60]


def test_a_folder_without_charts_shows_a_message(panel, tmp_path):
    panel.show_run(tmp_path)
    assert "No charts in" in panel.message_text()
    assert panel.chart_names() == [] and panel.years() == [] and panel.shown_data() == {}
    assert panel.table_rows() == []
    assert not panel.png_button.isEnabled()
    with pytest.raises(ValueError, match="nothing to export"):
        panel.export(tmp_path / "x.png")
    panel.show_run(tmp_path / "missing")
    assert "does not exist" in panel.message_text()


def test_a_damaged_chart_file_is_named_and_the_others_still_show(panel, tmp_path):
    charts = tmp_path / "charts"
    charts.mkdir()
    (charts / "fad.json").write_text(json.dumps({"kind": "fad", "series": [{"label": "2016"}]}))
    (charts / "fad_new.json").write_text("{not json")
    write_chart({"kind": "area_scatter", "pairs": [
        {"year": 2016, "reference_m2": [300.0, 900.0], "predicted_m2": [280.0, 1000.0]},
        {"year": "2017", "reference_m2": [500.0], "predicted_m2": [450.0]}]}, charts / "area_scatter")
    panel.show_run(tmp_path)
    assert "fad.json" in panel.message_text() and "bin_centers" in panel.message_text()
    assert "fad_new.json" in panel.message_text() and "not valid JSON" in panel.message_text()
    assert panel.chart_names() == ["Predicted vs reference areas"]
    assert panel.years() == [2016, 2017]
    panel.set_year_visible(2016, False)
    assert [p["year"] for p in panel.shown_data()["pairs"]] == ["2017"]
    assert any(t.startswith("2017:") for t in _legend_texts(panel))
    assert not any(t.startswith("2016:") for t in _legend_texts(panel))


def test_a_chart_without_years_disables_the_year_list(panel, tmp_path):
    series = [{"label": name, "bin_centers": [300.0, 900.0], "density": [1e-3, 1e-4]}
              for name in ("north", "south")]
    write_chart({"kind": "fad", "series": series}, tmp_path / "charts" / "regions")
    panel.show_run(tmp_path)
    assert panel.chart_names() == ["Frequency–area distribution"]
    assert panel.years() == [] and not panel.year_list.isEnabled()
    assert [s["label"] for s in panel.shown_data()["series"]] == ["north", "south"]


def test_filter_years_leaves_the_original_alone():
    trend = {"kind": "trend", "years": [2016, 2017], "series": [
        {"label": "mapped", "count": [1, 2], "area_m2": [10.0, 20.0]},
        {"label": "new", "count": [None, 2]}]}
    assert chart_years(trend) == [2016, 2017]
    out = filter_years(trend, {2016})
    assert out["years"] == [2017] and out["series"][0] == {"label": "mapped", "count": [2], "area_m2": [20.0]}
    assert out["series"][1] == {"label": "new", "count": [2]}
    assert trend["years"] == [2016, 2017] and trend["series"][0]["count"] == [1, 2]


def test_below_the_map_the_table_sits_beside_the_chart(qgis_app, qgis_parent):
    from qgis.PyQt.QtCore import Qt

    panel = ChartPanel(qgis_parent)
    try:
        qgis_parent.addDockWidget(Qt.BottomDockWidgetArea, panel)
        assert panel.splitter.orientation() == Qt.Horizontal
        qgis_parent.addDockWidget(Qt.RightDockWidgetArea, panel)
        assert panel.splitter.orientation() == Qt.Vertical
    finally:
        qgis_parent.removeDockWidget(panel)
        panel.deleteLater()


def _extents(panel):
    """The legend's, the (first) axes' and the figure's boxes as drawn."""
    panel.canvas.draw()
    renderer = panel.figure.canvas.get_renderer()
    legend = next(ax.get_legend() for ax in panel.figure.axes if ax.get_legend() is not None)
    return legend.get_window_extent(renderer), panel.figure.axes[0].get_window_extent(renderer), panel.figure.bbox


@pytest.mark.parametrize("area", ["bottom", "right"])
def test_docked_anywhere_the_legend_stays_off_the_data_and_the_fit_columns_in_view(qgis_app, qgis_parent,
                                                                                     run_dir, area):
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QApplication

    panel = ChartPanel(qgis_parent)
    try:
        qgis_parent.resize(1366, 768)
        where = Qt.DockWidgetArea.BottomDockWidgetArea if area == "bottom" else Qt.DockWidgetArea.RightDockWidgetArea
        qgis_parent.addDockWidget(where, panel)
        qgis_parent.show()
        panel.show_run(run_dir)
        QApplication.processEvents()
        assert panel.legend_place() == ("beside" if area == "bottom" else "below")
        for chart in ("fad", "trend", "fad_new"):
            panel.set_chart(chart)
            legend, axes, figure = _extents(panel)
            if panel.legend_note.isVisibleTo(panel):          # fits nowhere: hidden, and said so
                assert not any(ax.get_legend().get_visible() for ax in panel.figure.axes if ax.get_legend())
                continue
            assert legend.x0 >= axes.x1 - 1 or legend.y1 <= axes.y0 + 1             # beside or under the data
            assert figure.x0 - 1 <= legend.x0 and legend.x1 <= figure.x1 + 1 and legend.y0 >= figure.y0 - 1
        panel.set_chart("fad")
        legend, axes, figure = _extents(panel)
        if area == "bottom":                                  # a wide panel: the legend beside the data
            assert legend.x0 >= axes.x1 - 1 and not panel.legend_note.isVisibleTo(panel)
        header, headers = panel.table.horizontalHeader(), panel.table_headers()
        for name in ("α", "α SE"):                 # the fit's columns are in view without scrolling
            c = headers.index(name)
            assert header.sectionViewportPosition(c) + header.sectionSize(c) <= panel.table.viewport().width()
    finally:
        qgis_parent.removeDockWidget(panel)
        qgis_parent.hide()                  # as the other tests expect the shared main window
        panel.deleteLater()


def test_every_fit_can_be_shown(panel, run_dir):
    panel.show_run(run_dir)
    panel.set_chart("fad")
    assert panel.fits_combo.isVisibleTo(panel)
    panel.set_fits("power_law")
    texts = " ".join(_legend_texts(panel))
    assert "power law" in texts and "inverse gamma" not in texts and "double Pareto" not in texts
    panel.set_fits("inverse_gamma")
    texts = " ".join(_legend_texts(panel))
    assert "inverse gamma" in texts and "power law" not in texts
    panel.set_fits("all")
    texts = " ".join(_legend_texts(panel))
    assert all(name in texts for name in ("power law", "inverse gamma", "double Pareto"))
    with pytest.raises(ValueError, match="No fit choice"):
        panel.set_fits("lognormal")
    panel.set_chart("trend")
    assert not panel.fits_combo.isVisibleTo(panel)


def test_a_fit_on_few_polygons_is_flagged(panel, run_dir):
    from landslide_mapper.core.inventory.fad import FEW_TAIL_AREAS

    panel.show_run(run_dir)
    stats = {r["year"]: r for r in json.loads((panel.run_dir / "statistics.json").read_text())["years"]}
    thin = {y for y, r in stats.items() if r.get("alpha") is not None and r["n_tail"] < FEW_TAIL_AREAS}
    thick = {y for y, r in stats.items() if r.get("alpha") is not None and r["n_tail"] >= FEW_TAIL_AREAS}
    assert thin and thick                       # 60 polygons in 2016, 150 in 2017
    warning = panel.warning_text()
    assert panel.fit_warning.isVisibleTo(panel)
    assert all(f"{y}: the power law of the landslides" in warning for y in thin)
    assert not any(f"{y}: the power law of the landslides" in warning for y in thick)
    headers, rows = panel.table_headers(), {int(r[0]): r for r in panel.table_rows()}
    alpha = headers.index("α")
    for y in thin:
        row = next(r for r in range(panel.table.rowCount()) if panel.table.item(r, 0).text() == str(y))
        assert "only" in panel.table.item(row, alpha).toolTip()
    panel.set_chart("fad")
    legend = " ".join(_legend_texts(panel))
    assert all(f"{y} ⚠" in legend for y in thin) and not any(f"{y} ⚠" in legend for y in thick)
    page = panel.export(Path(run_dir).parent / "fad_shown.svg").read_text()    # the full legend in a file
    assert all(f"⚠ power law on {stats[y]['n_tail']} polygons" in page for y in thin)


def test_the_report_flags_a_fit_on_few_polygons_too(run_dir, tmp_path):
    from landslide_mapper.core.inventory.report import write_report

    rows = json.loads((Path(run_dir) / "statistics.json").read_text())["years"]
    page = write_report(tmp_path, "Statistics", rows, []).read_text()
    assert "2016: the power law of the landslides" in page and "treat α as rough" in page
