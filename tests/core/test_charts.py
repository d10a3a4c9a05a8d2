"""Charts: real PNG, SVG and JSON files from the chart dicts; schema errors; awkward values."""
from __future__ import annotations

import json
import math
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from landslide_mapper.core.inventory import charts
from landslide_mapper.core.inventory.charts import (ChartDataError, draw_area_scatter, draw_fad, draw_trend, load_chart,
                                          write_chart)
from landslide_mapper.core.errors import InputError, OutputError


def power_law_series(label: str, n: int, alpha: float, x_min: float, fits=("power_law", "dps", "inverse_gamma")):
    centers = np.logspace(1.7, 5.5, 16)
    density = 1e-3 * (centers / 100.0) ** -alpha
    fx = np.logspace(math.log10(x_min), 5.5, 12)
    fy = 1e-3 * (fx / 100.0) ** -alpha
    names = {"power_law": f"power law α={alpha:.2f}, x_min={x_min:,.0f} m²",
             "dps": f"double Pareto α={alpha:.2f}", "inverse_gamma": f"inverse gamma ρ={alpha - 1:.2f}"}
    return {"label": label, "n": n, "bin_centers": centers.tolist(), "density": density.tolist(),
            "fits": [{"name": f, "label": names[f], "x": fx.tolist(), "y": (fy * (1 + 0.1 * i)).tolist()}
                     for i, f in enumerate(fits)],
            "rollover_m2": 300.0, "x_min_m2": x_min, "alpha": alpha, "mls": 2.9}


def fad_data(years=(2017, 2018)):
    return {"kind": "fad", "title": "Frequency-area distribution", "true_exponent": 2.4,
            "series": [power_law_series(str(y), 100 + i, 2.46 + 0.1 * i, 9234.0) for i, y in enumerate(years)]}


def trend_data():
    return {"kind": "trend", "title": "Landslides through the years", "years": [2009, 2011, 2012, 2013],
            "series": [{"label": "mapped", "count": [120, 1345, None, 700], "area_m2": [3.1e5, 4.2e6, None, 1.9e6]},
                       {"label": "new or enlarged", "count": [None, 1300, 210, 150],
                        "area_m2": [None, 4.0e6, 6e5, 4e5]}]}


def scatter_data():
    return {"kind": "area_scatter", "title": "Predicted vs reference landslide area",
            "pairs": [{"year": 2017, "reference_m2": [500.0, 2000.0, 9000.0], "predicted_m2": [450.0, 2500.0, 8000.0],
                       "residual_m2": [-50.0, 500.0, -1000.0], "missed_reference_m2": [150.0],
                       "false_alarm_m2": [220.0, 400.0]},
                      {"year": 2018, "reference_m2": [800.0, 30000.0], "predicted_m2": [900.0, 28000.0]}]}


def svg_texts(path) -> str:
    root = ET.parse(path).getroot()  # also proves the SVG is well-formed XML
    return "\n".join("".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text"))


def png_size(path) -> tuple[int, int]:
    image = imread(path)
    return image.shape[1], image.shape[0]


def rendered(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()
    return fig


# ------------------------------------------------------------------------------------------
# Real files
# ------------------------------------------------------------------------------------------

def test_fad_png_svg_json(tmp_path):
    data = fad_data()
    paths = write_chart(data, tmp_path / "fad")
    assert [p.name for p in paths] == ["fad.png", "fad.svg", "fad.json"]
    width, height = png_size(paths[0])
    # 8 × 5.5 in at 150 dpi, widened by the legend placed beside the axes (2 years × 4 entries)
    assert height == 825 and 1300 < width < 2400
    texts = svg_texts(paths[1])
    for expected in ("α=2.46", "x_min=9,234 m²", "2017 (n = 100, mLS = 2.9)", "double Pareto α=2.56",
                     "Landslide area A (m²)", "Probability density p(A) (m⁻²)", "true α = 2.4",
                     "Frequency-area distribution", "1,000"):
        assert expected in texts, expected
    assert load_chart(paths[2]) == data
    assert json.loads(paths[2].read_text(encoding="utf-8")) == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fad.json", "fad.png", "fad.svg"]  # no temporaries


def test_fad_one_year_keeps_the_legend_inside(tmp_path):
    data = fad_data(years=(2016,))
    data["true_exponent"] = None
    png, svg, _ = write_chart(data, tmp_path / "fad1")
    assert png_size(png) == (1200, 825)
    assert "true α" not in svg_texts(svg)


def test_trend_png_svg_json(tmp_path):
    data = trend_data()
    png, svg, js = write_chart(data, tmp_path / "trend")
    assert png_size(png) == (1200, 750)
    texts = svg_texts(svg)
    for expected in ("mapped: number of landslides", "new or enlarged: total area (km²)", "Total landslide area (km²)",
                     "2010", "no data", "n/a", "1,345", "Number of landslides"):
        assert expected in texts, expected
    assert load_chart(js) == data


def test_area_scatter_png_svg_json(tmp_path):
    data = scatter_data()
    png, svg, js = write_chart(data, tmp_path / "scatter")
    assert png_size(png) == (1050, 1200)
    texts = svg_texts(svg)
    for expected in ("2017: 3 matched, 1 missed, 2 false alarms", "2018: 2 matched", "1:1 line",
                     "Residual (m²)", "Reference landslide area (m²)", "missed reference", "false alarm"):
        assert expected in texts, expected
    assert load_chart(js) == data


@pytest.mark.parametrize("data, note", [
    ({"kind": "fad", "title": "FAD", "true_exponent": None, "series": []}, "No landslides in this inventory"),
    ({"kind": "trend", "years": [], "series": []}, "No landslide counts"),
    ({"kind": "trend", "years": [2020, 2021], "series": []}, "No series"),
    ({"kind": "trend", "years": [2020, 2021], "series": [{"label": "mapped", "count": [0, 0]}]}, "No landslides in any"),
    ({"kind": "area_scatter", "pairs": []}, "No matched landslides"),
])
def test_empty_charts_say_so(tmp_path, data, note):
    png, svg, js = write_chart(data, tmp_path / "empty")
    assert png_size(png)[1] > 0
    assert note in svg_texts(svg)
    assert load_chart(js) == data


# ------------------------------------------------------------------------------------------
# Refusing to overwrite, schema errors
# ------------------------------------------------------------------------------------------

def test_refuses_to_overwrite_any_of_the_three(tmp_path):
    write_chart(trend_data(), tmp_path / "trend")
    with pytest.raises(OutputError, match="refusing to overwrite"):
        write_chart(trend_data(), tmp_path / "trend")
    # only the SVG is in the way: nothing at all is written
    (tmp_path / "other.svg").write_text("mine")
    with pytest.raises(OutputError, match="other.svg"):
        write_chart(trend_data(), tmp_path / "other")
    assert (tmp_path / "other.svg").read_text() == "mine"
    assert not (tmp_path / "other.png").exists() and not (tmp_path / "other.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_missing_key_is_named_with_the_file(tmp_path):
    data = fad_data()
    del data["series"][1]["density"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ChartDataError) as caught:
        load_chart(path)
    message = str(caught.value)
    assert str(path) in message and "'density'" in message and "series[1]" in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, InputError)
    with pytest.raises(ChartDataError, match="series\\[1\\]"):
        write_chart(data, tmp_path / "never")
    assert not list(tmp_path.glob("never*"))


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("kind"), ["'kind'"]),
    (lambda d: d.update(kind="pie"), ["'pie'", "fad, trend, area_scatter"]),
    (lambda d: d.pop("years"), ["'years'"]),
    (lambda d: d["series"][0].pop("count"), ["series[0]", "'count'"]),
    (lambda d: d["series"][1]["count"].pop(), ["series[1].count", "3 values", "4"]),
    (lambda d: d["series"][0]["area_m2"].__setitem__(0, "big"), ["series[0].area_m2[0]", "'big'"]),
    (lambda d: d.update(years=[2009, 2009, 2012, 2013]), ["more than once"]),
])
def test_trend_schema_errors(mutate, words):
    data = trend_data()
    mutate(data)
    with pytest.raises(ChartDataError) as caught:
        charts.validate_chart(data, source="trend.json")
    message = str(caught.value)
    assert message.startswith("The chart file trend.json")
    for word in words:
        assert word in message, (word, message)


def test_scatter_and_fit_schema_errors():
    data = scatter_data()
    del data["pairs"][0]["predicted_m2"]
    with pytest.raises(ChartDataError, match=r"pairs\[0\].*'predicted_m2'"):
        charts.validate_chart(data)
    data = fad_data()
    del data["series"][0]["fits"][2]["y"]
    with pytest.raises(ChartDataError, match=r"series\[0\]\.fits\[2\].*'y'"):
        charts.validate_chart(data)


def test_unreadable_chart_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_chart(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"kind\": \"fad\", ", encoding="utf-8")
    with pytest.raises(ChartDataError, match="bad.json is not valid JSON"):
        load_chart(bad)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ChartDataError, match="top level"):
        load_chart(listing)


def test_draw_refuses_the_wrong_kind():
    with pytest.raises(ChartDataError, match="'trend' chart, not a 'fad' chart"):
        draw_fad(Figure(), trend_data())


# ------------------------------------------------------------------------------------------
# Awkward values
# ------------------------------------------------------------------------------------------

def test_log_axes_drop_zeros_nan_and_negatives():
    bad = [0.0, -5.0, float("nan"), None, float("inf"), 1000.0, 5000.0]
    data = {"kind": "fad", "true_exponent": 2.0, "series": [
        {"label": "2019", "n": 2, "bin_centers": bad, "density": [1e-4] * 5 + [1e-5, 0.0],
         "fits": [{"name": "power_law", "x": bad, "y": [1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-5, -1.0]}],
         "x_min_m2": 0.0, "alpha": float("nan")},
        {"label": "2020", "bin_centers": [0.0, -1.0], "density": [None, 1e-3], "fits": []}]}
    fig = Figure()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draw_fad(fig, data)
        rendered(fig)
    ax = fig.axes[0]
    drawn = [line for line in ax.lines if line.get_linestyle() == "None"]
    assert len(drawn) == 1 and list(drawn[0].get_xdata()) == [1000.0]  # 5000 has density 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "2019 (n = 2): power law" and "no positive values" in labels[1]
    low, high = ax.get_xlim()
    assert 0 < low < 1000 < high

    scatter = {"kind": "area_scatter", "pairs": [
        {"year": 2019, "reference_m2": [0.0, float("nan"), 100.0, 400.0], "predicted_m2": [50.0, 10.0, -3.0, 300.0],
         "residual_m2": [None, 1.0, 2.0, float("inf")], "missed_reference_m2": [0.0, None],
         "false_alarm_m2": [float("nan")]}]}
    fig = Figure()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draw_area_scatter(fig, scatter)
        rendered(fig)
    top, residuals = fig.axes
    assert [len(c.get_offsets()) for c in top.collections] == [1]        # only (400, 300)
    assert [len(c.get_offsets()) for c in residuals.collections] == [1]  # only (100, 2)
    assert "2019: 1 matched, 2 missed, 1 false alarm" in [t.get_text() for t in top.get_legend().get_texts()]


def test_trend_with_all_values_missing_and_unit_by_magnitude():
    data = {"kind": "trend", "years": [2015, 2016], "series": [
        {"label": "mapped", "count": [None, None], "area_m2": [None, None]}]}
    fig = rendered(_drawn(draw_trend, data))
    assert len(fig.axes) == 1  # no area axis when there is no area
    for area, unit in ((5e6, "km²"), (5e4, "ha"), (900.0, "m²")):
        data = {"kind": "trend", "years": [2015, 2016], "series": [
            {"label": "mapped", "count": [3, 4], "area_m2": [area, area / 2]}]}
        fig = rendered(_drawn(draw_trend, data))
        assert fig.axes[1].get_ylabel() == f"Total landslide area ({unit})"


def _drawn(draw, data, **options) -> Figure:
    fig = Figure(figsize=(8, 5))
    draw(fig, data, **options)
    return fig


def test_many_years_show_one_fit_each_beside_the_axes():
    data = fad_data(years=range(2010, 2020))
    fig = rendered(_drawn(draw_fad, data))
    legend = fig.axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == 10 + 2  # one entry per year, the reference slope, the x_min line
    assert all("power law α=" in label for label in labels[:10])
    assert legend.get_title().get_text() == "other fits hidden"
    # the legend is to the right of the axes, not over the data
    assert legend.get_window_extent().x0 > fig.axes[0].get_window_extent().x1

    labels = [t.get_text() for t in _drawn(draw_fad, data, fits="all").axes[0].get_legend().get_texts()]
    assert len(labels) == 10 * 4 + 2
    labels = [t.get_text() for t in _drawn(draw_fad, data, fits=["dps"]).axes[0].get_legend().get_texts()]
    assert sum("double Pareto" in label for label in labels) == 10 and not any("power law" in s for s in labels)


def test_numpy_values_become_plain_json(tmp_path):
    data = fad_data(years=(2016,))
    series = data["series"][0]
    series["density"] = np.array(series["density"])
    series["density"][3] = np.nan
    series["n"] = np.int64(100)
    series["x_min_m2"] = np.float64(9234.0)
    _, _, js = write_chart(data, tmp_path / "np")
    text = js.read_text(encoding="utf-8")
    assert "NaN" not in text
    loaded = load_chart(js)
    assert loaded["series"][0]["density"][3] is None and loaded["series"][0]["n"] == 100


def test_panel_redraws_on_one_figure():
    fig = Figure()
    draw_fad(fig, fad_data())
    draw_trend(fig, trend_data())
    assert len(fig.axes) == 2  # bars and the twin area axis; the FAD axes were cleared
    draw_area_scatter(fig, scatter_data())
    charts.draw_chart(fig, scatter_data())
    assert len(rendered(fig).axes) == 2
