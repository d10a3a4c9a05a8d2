"""Temporal subtraction: hand-made cases, the invariants as hypothesis properties, and
the real Bhuyan et al. (2023) Wenchuan series."""
from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from landslide_mapper.core.inventory.series import YearInventory, clean_polygons, parse_layer_refs, read_series
from landslide_mapper.core.inventory.subtraction import (ENLARGED, NEW, SubtractionSettings, subtract_pair,
                                               subtract_series)

from conftest import shared

PX = 3.0
SETTINGS = SubtractionSettings.for_pixel_size(PX)   # 3 m buffer, 81 m² minimum remnant


def inventory(year: int, geoms, fids=None) -> YearInventory:
    polys, index, cleaning = clean_polygons(np.array(geoms, dtype=object))
    fids = np.arange(1, len(geoms) + 1) if fids is None else np.asarray(fids)
    return YearInventory(year, f"test {year}", polys, fids[index], None, cleaning)


def box(x0, y0, x1, y1):
    return shapely.box(x0, y0, x1, y1)


def test_untouched_polygon_is_new_and_kept_exactly():
    prev = inventory(2016, [box(0, 0, 30, 30)])
    cur = inventory(2017, [box(100, 100, 160, 130)])
    ch = subtract_pair(cur, prev, SETTINGS)
    assert list(ch.change) == [NEW]
    assert ch.parent_fid.tolist() == [-1]
    assert shapely.equals(ch.geometries[0], cur.geometries[0])
    assert ch.areas[0] == pytest.approx(1800.0)


def test_enlarged_part_gets_its_parent_and_the_old_part_is_removed():
    prev = inventory(2016, [box(500, 500, 530, 530), box(0, 0, 30, 30)], fids=[7, 8])
    cur = inventory(2017, [box(0, 0, 30, 60)])          # grew 30 m uphill from fid 8
    ch = subtract_pair(cur, prev, SETTINGS)
    assert list(ch.change) == [ENLARGED]
    assert ch.parent_fid.tolist() == [8]
    assert ch.source_fid.tolist() == [1]
    assert shapely.equals_exact(shapely.normalize(ch.geometries[0]),
                                shapely.normalize(box(0, 30, 30, 60)), tolerance=1e-6)


def test_parent_is_the_polygon_sharing_the_longest_border():
    # the new part (x 0..60, y 30..60) borders fid 1 along 10 m and fid 2 along 50 m
    prev = inventory(2016, [box(0, 0, 10, 30), box(10, 0, 60, 30)], fids=[1, 2])
    cur = inventory(2017, [box(0, 0, 60, 60)])
    ch = subtract_pair(cur, prev, SETTINGS)
    assert ch.parent_fid.tolist() == [2]


def test_jitter_slivers_are_removed():
    # the same 30 m × 30 m scar delineated one pixel off: only 3 m strips remain → nothing
    prev = inventory(2016, [box(0, 0, 30, 30)])
    cur = inventory(2017, [box(2.5, 1.5, 32.5, 31.5)])
    ch = subtract_pair(cur, prev, SETTINGS)
    assert len(ch) == 0
    assert ch.sliver_area_m2 == pytest.approx(30 * 30 - 27.5 * 28.5, rel=1e-6)


def test_opening_keeps_corners_of_real_enlargements():
    # an L-shaped enlargement: the buffer opening would round its corners; they come back
    prev = inventory(2016, [box(0, 0, 30, 30)])
    cur = inventory(2017, [box(0, 0, 60, 60)])
    ch = subtract_pair(cur, prev, SETTINGS)
    assert len(ch) == 1
    assert ch.areas[0] == pytest.approx(60 * 60 - 30 * 30, rel=1e-9)


def test_small_remnants_are_dropped_and_counted():
    prev = inventory(2016, [box(0, 0, 30, 30)])
    cur = inventory(2017, [box(0, 0, 30, 37), box(200, 200, 208, 208)])   # 30×7 strip; 64 m² new
    ch = subtract_pair(cur, prev, SETTINGS)
    assert [round(a) for a in ch.areas] == [210]
    assert ch.small_remnants == 1
    assert ch.small_remnant_area_m2 == pytest.approx(64.0)


def test_invalid_and_multipart_inputs_are_repaired_not_dropped():
    bowtie = shapely.Polygon([(0, 0), (40, 40), (40, 0), (0, 40)])   # self-intersecting
    multi = shapely.MultiPolygon([box(100, 0, 130, 30), box(200, 0, 230, 30)])
    cur = inventory(2017, [bowtie, multi, None])
    assert cur.cleaning.repaired == 1
    assert cur.cleaning.multipart == 2
    assert cur.cleaning.missing == 1
    assert len(cur) == 4 and cur.source_fid.tolist() == [1, 1, 2, 2]
    ch = subtract_pair(cur, inventory(2016, []), SETTINGS)
    assert len(ch) == 4 and set(ch.change) == {NEW}
    assert ch.areas.sum() == pytest.approx(800 + 1800)


def test_empty_years_and_gaps():
    a = inventory(2014, [box(0, 0, 30, 30)])
    empty = inventory(2015, [])
    c = inventory(2018, [box(0, 0, 30, 30), box(100, 0, 130, 30)])
    changes = subtract_series([c, a, empty], SETTINGS)      # unsorted on purpose
    assert [(x.year, x.previous_year) for x in changes] == [(2015, 2014), (2018, 2015)]
    assert len(changes[0]) == 0
    assert len(changes[1]) == 2 and set(changes[1].change) == {NEW}


def test_carried_fields_follow_their_parts():
    prev = inventory(2016, [box(0, 0, 30, 30)])
    cur = inventory(2017, [box(0, 0, 30, 60), box(100, 0, 130, 30)])
    cur.fields = {"mean_prob": np.array([0.8, 0.6])}
    ch = subtract_pair(cur, prev, SETTINGS)
    layer = ch.to_layer(None)
    assert layer.fields["mean_prob"].tolist() == [0.8, 0.6]
    assert layer.fields["change"].tolist() == [ENLARGED, NEW]
    assert layer.fields["prev_year"].tolist() == [2016, 2016]


# -- the invariants, on random rectilinear inventories (as raster-derived ones are) ------

cells = st.lists(st.tuples(st.integers(0, 14), st.integers(0, 14), st.integers(1, 6), st.integers(1, 6)),
                 min_size=0, max_size=8)


def _boxes(spec, shift=(0.0, 0.0)):
    return [box(x * PX + shift[0], y * PX + shift[1], (x + w) * PX + shift[0], (y + h) * PX + shift[1])
            for x, y, w, h in spec]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prev_spec=cells, cur_spec=cells,
       shift=st.tuples(st.sampled_from([0.0, 1.0, 1.5, -1.0]), st.sampled_from([0.0, 0.5, -1.5])),
       buffer_px=st.sampled_from([0.0, 0.5, 1.0, 1.5]))
def test_subtraction_invariants(prev_spec, cur_spec, shift, buffer_px):
    d = buffer_px * PX
    rules = SubtractionSettings(sliver_buffer_m=d, min_remnant_m2=0.0)
    prev = inventory(2016, _boxes(prev_spec))
    cur = inventory(2017, _boxes(cur_spec, shift))       # overlapping boxes, like real inventories
    ch = subtract_pair(cur, prev, rules)
    out = shapely.union_all(ch.geometries) if len(ch) else shapely.Polygon()
    p_t = shapely.union_all(cur.geometries) if len(cur) else shapely.Polygon()
    p_prev = shapely.union_all(prev.geometries) if len(prev) else shapely.Polygon()
    tol = 1e-6
    # 1. every output lies inside P_T
    assert shapely.area(shapely.difference(out, p_t)) < tol
    # 2. it overlaps P_{T-1} by (numerically) nothing
    assert shapely.area(shapely.intersection(out, p_prev)) < tol
    # 3. nothing of P_T − P_{T-1} is lost beyond the sliver tolerance: every point with a
    #    disc of radius (buffer + ε) inside the difference is kept
    new_area = shapely.difference(p_t, p_prev)
    core = shapely.buffer(new_area, -(d + 1e-3), quad_segs=16) if d > 0 else new_area
    assert shapely.area(shapely.difference(core, out)) < 1e-3
    # every part is tagged, parents only on enlarged parts
    assert set(ch.change) <= {NEW, ENLARGED}
    assert ((ch.parent_fid >= 1) == (ch.change == ENLARGED)).all()


@settings(max_examples=60, deadline=None)
@given(prev_spec=cells, cur_spec=cells, min_px=st.sampled_from([1, 9, 20]))
def test_minimum_remnant_area_holds(prev_spec, cur_spec, min_px):
    rules = SubtractionSettings.for_pixel_size(PX, sliver_px=1.0, min_remnant_px=min_px)
    ch = subtract_pair(inventory(2017, _boxes(cur_spec)), inventory(2016, _boxes(prev_spec)), rules)
    assert (ch.areas >= rules.min_remnant_m2 - 1e-9).all()


# -- the real multi-temporal inventories of Bhuyan et al. (2023) -------------------------

def test_wenchuan_series_subtracts_with_its_mess_handled():
    data = shared("bhuyan2023_inventories")
    logs: list[str] = []
    series = read_series(parse_layer_refs([str(data / "China.zip")]), logs.append)
    assert [s.year for s in series] == [2009, 2011, 2013, 2014, 2017, 2018, 2019, 2021]
    assert series[0].cleaning.features == 10335
    # how many GEOS judges invalid depends on its version: 22 and 13 with Debian 12's and 13's,
    # 16 and 6 with Debian sid's GEOS 3.14
    repaired = series[0].cleaning.repaired
    assert 16 <= repaired <= 22 and 6 <= series[3].cleaning.repaired <= 13
    assert any(f"{repaired} invalid geometries repaired" in line for line in logs)
    assert all(shapely.is_valid(s.geometries).all() for s in series)
    changes = subtract_series(series, SETTINGS)
    first = changes[0]
    assert (first.year, first.previous_year) == (2011, 2009)
    # every output inside 2011, nothing inside 2009, all parts at least 81 m²
    p11 = shapely.union_all(series[1].geometries)
    p09 = shapely.union_all(series[0].geometries)
    out = shapely.union_all(first.geometries)
    assert shapely.area(shapely.difference(out, p11)) < 1e-3
    assert shapely.area(shapely.intersection(out, p09)) < 1e-3
    assert (first.areas >= 81 - 1e-9).all()
    s = first.summary()
    assert s["new"] > 1000 and s["enlarged"] > 10
    # what was removed is accounted for: kept + slivers + small remnants == 2011 − 2009
    expected = shapely.area(shapely.difference(p11, p09))
    accounted = s["new_area_m2"] + s["enlarged_area_m2"] + s["sliver_area_removed_m2"] \
        + s["small_remnant_area_removed_m2"]
    assert accounted == pytest.approx(expected, rel=0.01)   # 2011 polygons overlap each other a little
