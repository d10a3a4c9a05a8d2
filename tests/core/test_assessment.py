"""Accuracy assessment: pixel counts on real GeoTIFF grids, object matching, inventories.

Every expected number is counted by hand in the comments next to it.
"""
import json
import math
import threading

import numpy as np
import pytest
import shapely

from conftest import write_raster
from landslide_mapper.core.inventory import metrics
from landslide_mapper.core.inventory.assessment import assess_year, repair_polygons, scatter_chart_data
from landslide_mapper.core.errors import Cancelled, InputError
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.geodata.vector_io import VectorLayer

X0, Y0 = 300000.0, 3100000.0   # write_raster's default origin, 3 m pixels


def px(c0, r0, c1, r1):
    """A rectangle given in pixel columns/rows of the default 3 m grid."""
    return shapely.box(X0 + 3 * c0, Y0 - 3 * r1, X0 + 3 * c1, Y0 - 3 * r0)


def geoms(*g):
    return np.array(g, dtype=object)


@pytest.fixture
def grid_8x12(tmp_path):
    """8 rows × 12 columns of 3 m pixels; the bottom row is nodata: 84 valid pixels."""
    data = np.full((8, 12), 0.5, np.float32)
    data[7, :] = -1
    return write_raster(tmp_path / "prob.tif", data, nodata=-1)


# Reference: cols 1-4 × rows 1-3 (12 px) and cols 8-10 × rows 5-7 (9 px, 3 of them nodata).
REFERENCE = geoms(px(1, 1, 5, 4), px(8, 5, 11, 8))
# Predicted: cols 3-6 × rows 2-4 (12 px); overlaps the first reference in cols 3-4 × rows 2-3.
PREDICTED = geoms(px(3, 2, 7, 5))


@pytest.mark.parametrize("window", [1024, 5, 3])
def test_pixel_counts_on_a_raster_grid_exclude_nodata(grid_8x12, monkeypatch, window):
    monkeypatch.setattr(metrics, "WINDOW", window)   # 5 and 3 cut the grid into 2×3 and 3×4 windows
    a = assess_year(PREDICTED, REFERENCE, 2017, grid_raster=grid_8x12)
    s = a.pixel
    # tp = 2×2 = 4; fp = 12 − 4 = 8; fn = (12 + 6 valid) − 4 = 14; tn = 84 − 26 = 58
    assert (s.tp, s.fp, s.fn, s.tn) == (4, 8, 14, 58)
    assert s.precision == pytest.approx(1 / 3)
    assert s.recall == pytest.approx(4 / 18)
    assert s.f1 == pytest.approx(8 / 30)
    assert s.iou == pytest.approx(4 / 26)
    assert s.mcc == pytest.approx((4 * 58 - 8 * 14) / math.sqrt(12 * 18 * 66 * 72))
    assert a.grid["source"] == "raster" and a.grid["counted_pixels"] == 84
    assert (a.grid["width"], a.grid["height"]) == (12, 8)


@pytest.mark.parametrize("window", [1024, 4])
def test_assessment_area_counts_only_pixel_centres_inside(grid_8x12, monkeypatch, window):
    monkeypatch.setattr(metrics, "WINDOW", window)
    # Two polygons sharing an edge at column 3.4; their union reaches column 5.6, so the centres
    # of columns 0-5 (x = 0.5 … 5.5) are inside and column 6 (6.5) is not: 6 cols × 7 valid rows.
    area = [px(0, 0, 3.4, 8), px(3.4, 0, 5.6, 8)]
    a = assess_year(PREDICTED, REFERENCE, 2017, grid_raster=grid_8x12, area=area)
    s = a.pixel
    # predicted inside: cols 3-5 × rows 2-4 = 9; tp = 4, fp = 5; the second reference is
    # outside, fn = 12 − 4 = 8; tn = 42 − 17 = 25
    assert (s.tp, s.fp, s.fn, s.tn) == (4, 5, 8, 25)
    assert a.grid["counted_pixels"] == 42 and a.grid["assessment_area"] is True
    # objects: the outside reference is out of scope rather than missed
    assert a.reference.status.tolist() == ["matched", "outside_area"]
    assert a.objects.n_reference == 1 and a.objects.missed_reference == 0


def test_nan_pixels_of_a_float_raster_without_nodata_do_not_count(tmp_path):
    data = np.full((8, 12), 0.5, np.float32)
    data[7, :] = np.nan
    path = write_raster(tmp_path / "nan.tif", data, nodata=None)
    s = assess_year(PREDICTED, REFERENCE, 2017, grid_raster=path).pixel
    assert (s.tp, s.fp, s.fn, s.tn) == (4, 8, 14, 58)


@pytest.mark.parametrize("window", [1024, 2])
def test_grid_is_built_from_the_inventories_extent(monkeypatch, window):
    monkeypatch.setattr(metrics, "WINDOW", window)
    # Off-grid rectangles: reference x 301–313, y 1001–1010; predicted x 304–316, y 1000–1009
    # (offset by 300000, 3000000). Snapped to 3 m: x 300–318 (6 cols), y 999–1011 (4 rows).
    ox, oy = 300000.0, 3000000.0
    reference = geoms(shapely.box(ox + 301, oy + 1001, ox + 313, oy + 1010))
    predicted = geoms(shapely.box(ox + 304, oy + 1000, ox + 316, oy + 1009))
    a = assess_year(predicted, reference, 2020)
    assert a.grid["source"] == "extent"
    assert a.grid["bounds"] == [ox + 300, oy + 999, ox + 318, oy + 1011]
    assert (a.grid["width"], a.grid["height"]) == (6, 4)
    # centres x 301.5 … 316.5, y 1000.5 … 1009.5
    # reference: x 301.5-310.5 (4) × y 1003.5-1009.5 (3) = 12
    # predicted: x 304.5-313.5 (4) × y 1000.5-1006.5 (3) = 12
    # tp: x 304.5-310.5 (3) × y 1003.5, 1006.5 (2) = 6
    s = a.pixel
    assert (s.tp, s.fp, s.fn, s.tn) == (6, 6, 6, 24 - 18)


def test_grid_from_an_assessment_area_and_another_pixel_size():
    area = shapely.box(1000, 2000, 1100, 2050)
    predicted = geoms(shapely.box(1000, 2000, 1020, 2050))     # 4 cols × 10 rows of 5 m
    reference = geoms(shapely.box(1010, 2000, 1030, 2050),
                      shapely.box(5000, 5000, 5100, 5100))      # far outside the area
    a = assess_year(predicted, reference, 2019, pixel_size=5.0, area=area)
    assert a.grid["source"] == "area" and a.grid["bounds"] == [1000, 2000, 1100, 2050]
    assert (a.grid["width"], a.grid["height"]) == (20, 10)
    s = a.pixel  # tp 2×10, fp 2×10, fn 2×10, tn 200 − 60
    assert (s.tp, s.fp, s.fn, s.tn) == (20, 20, 20, 140)


# Object scenario (metres). Areas in brackets.
OBJ_PRED = geoms(
    shapely.box(0, 0, 30, 20),        # P0 [600] on R0: one-to-one
    shapely.box(100, 0, 160, 20),     # P1 [1200] covers R1 and R2: one predicted, two references
    shapely.box(200, 0, 220, 20),     # P2 [400] } two fragments
    shapely.box(225, 0, 250, 20),     # P3 [500] } of R3
    shapely.box(400, 0, 410, 10),     # P4 [100] false alarm
    shapely.box(600, 0, 610, 10),     # P5 [100] only touches R5: false alarm
)
OBJ_REF = geoms(
    shapely.box(5, 0, 35, 20),        # R0 [600]
    shapely.box(100, 0, 125, 20),     # R1 [500]
    shapely.box(130, 0, 160, 20),     # R2 [600]
    shapely.box(200, 0, 250, 20),     # R3 [1000]
    shapely.box(500, 0, 520, 20),     # R4 [400] missed
    shapely.box(610, 0, 620, 10),     # R5 [100] only touched by P5: missed
)


def test_object_matching_groups_areas_and_residuals():
    a = assess_year(OBJ_PRED, OBJ_REF, 2017)
    g = [(x.kind, x.predicted, x.reference, x.predicted_m2, x.reference_m2, x.overlap_m2, x.residual_m2)
         for x in a.groups]
    assert g == [("1:1", [0], [0], 600, 600, 25 * 20, 0),
                 ("1:n", [1], [1, 2], 1200, 500 + 600, 1100, 100),
                 ("n:1", [2, 3], [3], 400 + 500, 1000, 900, -100)]
    assert [x.relative_residual for x in a.groups] == pytest.approx([0, 100 / 1100, -0.1])

    p, r = a.predicted, a.reference
    assert p.status.tolist() == ["matched"] * 4 + ["false_alarm"] * 2
    assert r.status.tolist() == ["matched"] * 4 + ["missed"] * 2
    assert p.group.tolist() == [0, 1, 2, 2, -1, -1]
    assert r.group.tolist() == [0, 1, 1, 2, -1, -1]
    # per object, each polygon against the polygons it overlaps directly
    assert p.n_matched.tolist() == [1, 2, 1, 1, 0, 0]
    assert p.matched_m2.tolist() == [600, 1100, 1000, 1000, 0, 0]
    assert p.overlap_m2.tolist() == [500, 1100, 400, 500, 0, 0]
    assert p.residual_m2[:4].tolist() == [0, 100, -600, -500] and np.isnan(p.residual_m2[4:]).all()
    assert p.relative_residual[:4] == pytest.approx([0, 100 / 1100, -0.6, -0.5])
    assert r.matched_m2.tolist() == [600, 1200, 1200, 900, 0, 0]
    assert r.residual_m2[:4].tolist() == [0, 700, 600, -100]   # always predicted − reference

    o = a.objects
    assert (o.n_predicted, o.matched_predicted, o.false_alarms) == (6, 4, 2)
    assert (o.n_reference, o.matched_reference, o.missed_reference) == (6, 4, 2)
    assert o.precision == pytest.approx(4 / 6) and o.recall == pytest.approx(4 / 6)
    assert o.groups_by_kind == {"1:1": 1, "1:n": 1, "n:1": 1, "n:m": 0}
    assert (o.false_alarm_m2, o.missed_m2) == (200, 500)
    res = o.residuals   # group residuals 0, +100, −100
    assert res["mean_residual_m2"] == pytest.approx(0) and res["median_residual_m2"] == 0
    assert (res["q1_residual_m2"], res["q3_residual_m2"]) == (-50, 50)
    assert res["mae_m2"] == pytest.approx(200 / 3)
    assert res["rmse_m2"] == pytest.approx(math.sqrt(20000 / 3))
    d = [0, math.log10(1200 / 1100), math.log10(0.9)]
    lr = [math.log10(v) for v in (600, 1100, 1000)]
    mean_lr = sum(lr) / 3
    assert res["mean_log10_ratio"] == pytest.approx(sum(d) / 3)
    assert res["r2_log10_1to1"] == pytest.approx(1 - sum(x * x for x in d) / sum((v - mean_lr) ** 2 for v in lr))


def test_inventory_table():
    a = assess_year(OBJ_PRED, OBJ_REF, 2017)
    ref, pred = a.inventory["reference"], a.inventory["predicted"]
    # reference 600, 500, 600, 1000, 400, 100; predicted 600, 1200, 400, 500, 100, 100
    assert (ref.count, ref.total_m2, ref.min_m2, ref.max_m2) == (6, 3200, 100, 1000)
    assert ref.mean_m2 == pytest.approx(3200 / 6) and ref.median_m2 == 550
    assert (pred.count, pred.total_m2, pred.min_m2, pred.max_m2) == (6, 2900, 100, 1200)
    assert pred.mean_m2 == pytest.approx(2900 / 6) and pred.median_m2 == 450


def test_chains_make_one_group_and_overlapping_references_are_not_double_counted():
    predicted = geoms(shapely.box(700, 0, 730, 20), shapely.box(740, 0, 770, 20),   # chain P–R–P–R
                      shapely.box(0, 0, 30, 20))
    reference = geoms(shapely.box(720, 0, 750, 20), shapely.box(760, 0, 780, 20),
                      shapely.box(0, 0, 20, 20), shapely.box(10, 0, 30, 20))     # these two overlap
    a = assess_year(predicted, reference, 2018)
    chain, merged = a.groups
    assert (chain.kind, chain.predicted, chain.reference) == ("n:m", [0, 1], [0, 1])
    # 600 + 600 vs 600 + 400; overlaps 10×20 three times
    assert (chain.predicted_m2, chain.reference_m2, chain.overlap_m2) == (1200, 1000, 600)
    # references summed (400 + 400, as in the inventory), but the overlap is the area of the
    # prediction inside their union (600), not 400 + 400
    assert (merged.kind, merged.reference_m2, merged.overlap_m2) == ("1:n", 800, pytest.approx(600))


def test_objects_outside_the_area_are_left_out_but_groups_stay_whole():
    area = shapely.box(-10, -10, 215, 30)     # reaches into R3 and P2, not P3, P4, R4, P5, R5
    a = assess_year(OBJ_PRED, OBJ_REF, 2017, area=area)
    assert a.predicted.status.tolist() == ["matched"] * 4 + ["outside_area"] * 2
    assert a.reference.status.tolist() == ["matched"] * 4 + ["outside_area"] * 2
    assert a.groups[2].predicted == [2, 3] and a.groups[2].predicted_m2 == 900   # P3 kept whole
    assert a.inventory["predicted"].count == 4 and a.inventory["reference"].total_m2 == 2700
    assert (a.objects.false_alarms, a.objects.missed_reference) == (0, 0)
    # touching the area's edge from outside is not overlapping it
    b = assess_year(geoms(shapely.box(-20, 0, -10, 10)), geoms(), 2017, area=area)
    assert b.predicted.status.tolist() == ["outside_area"] and b.objects.n_predicted == 0


def test_bow_tie_is_repaired_not_dropped():
    # Self-intersecting ring: two triangles with base 21 on x = 0 and x = 20 meeting at (10, 10.5);
    # each is 21 × 10 / 2 = 105 m². No pixel centre lies on its diagonals.
    bow_tie = shapely.Polygon([(0, 0), (20, 21), (20, 0), (0, 21)])
    assert not bow_tie.is_valid
    reference = geoms(shapely.box(0, 0, 20, 21))
    a = assess_year(geoms(bow_tie, shapely.LineString([(0, 0), (5, 5)])), reference, 2016, pixel_size=1.0)
    assert a.predicted.area_m2[0] == pytest.approx(210)
    assert a.predicted.repaired.tolist() == [True, False]
    assert a.predicted.status.tolist() == ["matched", "dropped"]   # a line has no area
    assert a.groups[0].predicted_m2 == pytest.approx(210) and a.groups[0].reference_m2 == 420
    assert any("repaired" in n for n in a.notes) and any("ignored" in n for n in a.notes)
    fixed = repair_polygons(geoms(bow_tie))[0][0]
    xs, ys = np.meshgrid(np.arange(20) + 0.5, np.arange(21) + 0.5)
    inside = int(shapely.contains_xy(fixed, xs, ys).sum())
    assert inside > 150   # pixels of both triangles burn
    s = a.pixel
    assert (s.tp, s.fp, s.fn, s.tn) == (inside, 0, 420 - inside, 0)


def test_repair_keeps_only_polygonal_parts():
    collapsed = shapely.Polygon([(0, 0), (2, 0), (2, 2), (0, 2), (0, 0), (3, 3), (3, 3)])
    out, fixed = repair_polygons([collapsed, None, shapely.Polygon(), shapely.box(0, 0, 1, 1)])
    assert fixed.tolist() == [True, False, False, False]
    assert out[0].geom_type == "MultiPolygon" and out[0].area == 4
    assert out[1] is None and out[2] is None and out[3].area == 1


def test_geographic_or_mismatched_crs_is_refused(tmp_path):
    layer = VectorLayer(OBJ_PRED, {}, "EPSG:4326")
    with pytest.raises(InputError, match="geographic"):
        assess_year(layer, OBJ_REF, 2017)
    with pytest.raises(InputError, match="geographic"):
        assess_year(OBJ_PRED, OBJ_REF, 2017, crs=4326)
    with pytest.raises(InputError, match="different CRSs"):
        assess_year(VectorLayer(OBJ_PRED, {}, "EPSG:32645"), VectorLayer(OBJ_REF, {}, "EPSG:32644"), 2017)
    raster = write_raster(tmp_path / "geo.tif", np.ones((4, 4), np.float32), crs="EPSG:4326")
    with pytest.raises(InputError, match="grid raster"):
        assess_year(OBJ_PRED, OBJ_REF, 2017, grid_raster=raster)
    with pytest.raises(InputError, match="pixel size"):
        assess_year(OBJ_PRED, OBJ_REF, 2017, pixel_size=0)
    with pytest.raises(InputError, match="cannot be read"):
        assess_year(OBJ_PRED, OBJ_REF, 2017, grid_raster=tmp_path / "missing.tif")
    assert assess_year(OBJ_PRED, OBJ_REF, 2017, pixel_size=np.float32(5)).grid["pixel_size"] == [5, 5]
    ok = assess_year(VectorLayer(OBJ_PRED, {}, "EPSG:32645"), OBJ_REF, 2017)
    assert ok.grid["crs"] == "EPSG:32645"


def test_progress_per_window_and_cancel(grid_8x12, monkeypatch):
    monkeypatch.setattr(metrics, "WINDOW", 4)    # 2 × 3 windows
    seen = []
    assess_year(PREDICTED, REFERENCE, 2017, grid_raster=grid_8x12,
                reporter=Reporter(on_progress=lambda f, m: seen.append((f, m))))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sum("window" in m for _, m in seen) == 6

    cancel = threading.Event()
    calls = []

    def on_progress(f, m):
        calls.append(f)
        if "window 2/" in m:
            cancel.set()   # the user presses Cancel while window 2 is counted

    reporter = Reporter(on_progress=on_progress, cancel_event=cancel)
    with pytest.raises(Cancelled):
        assess_year(PREDICTED, REFERENCE, 2017, grid_raster=grid_8x12, reporter=reporter)
    assert len(calls) < len(seen)


def test_to_dict_is_strict_json_and_scatter_schema():
    a17 = assess_year(OBJ_PRED, OBJ_REF, 2017)
    a16 = assess_year(OBJ_PRED[:1], OBJ_REF[:1], 2016)
    text = json.dumps(a17.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["year"] == 2017 and back["predicted"]["residual_m2"][4] is None
    assert back["groups"][1]["kind"] == "1:n" and "predicted" not in a17.to_dict(per_object=False)
    chart = scatter_chart_data([a17, a16])
    json.dumps(chart, allow_nan=False)
    assert chart["kind"] == "area_scatter"
    assert chart["title"] == "Predicted vs reference landslide area"
    assert [p["year"] for p in chart["pairs"]] == [2016, 2017]
    p = chart["pairs"][1]
    assert p["reference_m2"] == [600, 1100, 1000]
    assert p["predicted_m2"] == [600, 1200, 900]
    assert p["residual_m2"] == [0, 100, -100]
    assert p["missed_reference_m2"] == [400, 100] and p["false_alarm_m2"] == [100, 100]


def test_empty_inventories():
    a = assess_year(np.empty(0, object), np.empty(0, object), 2015)
    assert a.pixel.total == 0 and a.groups == [] and a.inventory["reference"].count == 0
    json.dumps(a.to_dict(), allow_nan=False)
