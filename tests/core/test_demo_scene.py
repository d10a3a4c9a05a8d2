"""The procedural demo scene: real files, checked against their own truth."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize

from landslide_mapper.core import demo as ds
from landslide_mapper.core.demo import plan as ds_plan
from landslide_mapper.core.errors import InputError
from landslide_mapper.core.geodata.vector_io import list_layers, read_layer

SPEC = ds.SceneSpec(size=384, seed=3)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return ds.generate_scene(tmp_path_factory.mktemp("scene"), SPEC)


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.descriptions, src.block_shapes, src.transform


def _ndvi(a):
    a = a.astype(np.float64)
    return (a[-1] - a[2]) / np.maximum(a[-1] + a[2], 1)


def _layer(manifest, name):
    return read_layer(manifest.truth_path, name)


def test_files_and_georeferencing_planetscope(scene):
    assert sorted(scene.rasters) == list(SPEC.years)
    assert scene.band_names == ["B", "G", "R", "NIR"]
    for year, path in scene.rasters.items():
        arr, prof, desc, blocks, tr = _read(path)
        assert arr.shape == (4, 384, 384) and arr.dtype == np.uint16
        assert prof["crs"].to_epsg() == 32645 and prof["nodata"] == 0
        assert tuple(tr)[:6] == (3.0, 0.0, 300000.0, 0.0, -3.0, 3100000.0)
        assert desc == ("B", "G", "R", "NIR")
        assert blocks[0] == (256, 256) and prof["compress"] == "deflate"
        valid = arr.any(0)
        # a valid pixel is never 0 in every band; nodata pixels are 0 in every band
        assert ((arr == 0).all(0) == ~valid).all()
    layers = list_layers(scene.truth_path)
    for y in SPEC.years:
        assert f"landslides_{y}" in layers and f"new_{y}" in layers


def test_rapideye_variant_has_five_bands(tmp_path):
    spec = ds.SceneSpec(size=256, pixel_size=5.0, years=(2016, 2017), seed=1)
    m = ds.generate_scene(tmp_path, spec)
    assert m.band_names == ["B", "G", "R", "RE", "NIR"]
    arr, prof, desc, _, tr = _read(m.rasters[2017])
    assert arr.shape == (5, 256, 256) and prof["dtype"] == "uint16" and prof["nodata"] == 0
    assert desc == ("B", "G", "R", "RE", "NIR") and tr.a == 5.0 and tr.e == -5.0
    forest = np.median(arr.reshape(5, -1), axis=1)
    assert forest[2] < forest[3] < forest[4]  # red edge between red and NIR over vegetation


def test_truth_layers_are_consistent(scene):
    counts = {}
    for k, year in enumerate(SPEC.years):
        lay, new = _layer(scene, f"landslides_{year}"), _layer(scene, f"new_{year}")
        counts[year] = len(lay)
        assert scene.landslide_counts[year] == len(lay) and scene.new_counts[year] == len(new)
        assert shapely.is_valid(lay.geometries).all() and shapely.is_valid(new.geometries).all()
        assert (lay.fields["year"] == year).all() and len(set(lay.fields["ls_id"].tolist())) == len(lay)
        assert np.allclose(lay.fields["area_m2"], shapely.area(lay.geometries))
        if len(new):
            assert set(new.fields["change"].tolist()) <= {"new", "enlarged"}
            outside = shapely.union_all(new.geometries).difference(shapely.union_all(lay.geometries))
            assert outside.area < 1e-3
            assert set(new.fields["ls_id"].tolist()) <= set(lay.fields["ls_id"].tolist())
        if k == 0:
            assert len(new) == len(lay) and set(new.fields["change"].tolist()) <= {"new"}
        # landslides of one year do not overlap each other
        if len(lay) > 1:
            inter = sum(shapely.intersection(a, b).area for i, a in enumerate(lay.geometries)
                        for b in lay.geometries[i + 1:])
            assert inter < 1.0
        # truth is clipped to the valid footprint
        fp = shapely.from_wkt(scene.footprints[year])
        assert all(fp.buffer(1e-6).contains(g) for g in lay.geometries)
    assert counts[SPEC.event_year] >= 3 * max(counts[SPEC.years[0]], 1)
    assert counts[SPEC.event_year] >= 8


def test_scars_in_the_raster_match_the_truth(scene):
    year = SPEC.event_year
    arr, _, _, _, tr = _read(scene.rasters[year])
    lay = _layer(scene, f"landslides_{year}")
    inside = rasterize(list(lay.geometries), out_shape=arr.shape[1:], transform=tr, fill=0,
                       default_value=1, dtype="uint8").astype(bool)
    ring = rasterize([g.buffer(60).difference(g.buffer(15)) for g in lay.geometries], out_shape=arr.shape[1:],
                     transform=tr, fill=0, default_value=1, dtype="uint8").astype(bool) & ~inside
    ndvi = _ndvi(arr)
    valid = arr.any(0)
    assert inside.sum() > 200
    assert np.median(ndvi[inside & valid]) < 0.35
    assert np.median(ndvi[ring & valid]) > 0.6
    # scars are bright in the visible bands compared with the forest around them
    assert np.median(arr[2][inside]) > 2 * np.median(arr[2][ring])


def test_ids_are_stable_and_unchanged_landslides_keep_their_geometry(scene):
    y0, y1 = SPEC.years[1], SPEC.years[2]
    a, b, new = _layer(scene, f"landslides_{y0}"), _layer(scene, f"landslides_{y1}"), _layer(scene, f"new_{y1}")
    fp = shapely.from_wkt(scene.footprints[y1])
    ga = dict(zip(a.fields["ls_id"].tolist(), a.geometries))
    changed = set(new.fields["ls_id"].tolist())
    common = [(i, g) for i, g in zip(b.fields["ls_id"].tolist(), b.geometries) if i in ga and i not in changed]
    assert common
    for i, g in common:
        # the same polygon, except where the later year's footprint cuts it, or an old part has healed
        assert ga[i].buffer(1e-6).contains(g)
        if fp.contains(ga[i]):
            assert g.area <= ga[i].area + 1e-6


def test_nodata_and_clouds_appear_in_their_years(scene):
    nodata_year, = SPEC.resolved_nodata_years()
    cloud_year, = SPEC.resolved_cloud_years()
    arr, _, _, _, tr = _read(scene.rasters[nodata_year])
    invalid = ~arr.any(0)
    assert 0.02 < invalid.mean() < 0.4
    # the footprint in the manifest is exactly the valid pixels (pixel-centre rule)
    fp = shapely.from_wkt(scene.footprints[nodata_year])
    inside = rasterize([fp], out_shape=invalid.shape, transform=tr, fill=0, default_value=1, dtype="uint8")
    assert np.array_equal(inside.astype(bool), ~invalid)
    arr, _, _, _, _ = _read(scene.rasters[cloud_year])
    assert arr.any(0).all()
    cloud = (arr.min(0) > 4000)
    assert 0.005 < cloud.mean() < 0.3
    assert abs(np.median(_ndvi(arr)[cloud])) < 0.1
    clear, _, _, _, _ = _read(scene.rasters[SPEC.event_year])
    assert (clear.min(0) > 4000).mean() < 0.001


def test_generation_is_deterministic(scene, tmp_path):
    ds_plan._PLAN_CACHE.clear()  # rebuild the plan too, not only the rasters
    again = ds.generate_scene(tmp_path, SPEC)
    for year in SPEC.years:
        # same spec, same block size: the GeoTIFFs are byte-identical files
        with open(scene.rasters[year], "rb") as a, open(again.rasters[year], "rb") as b:
            assert a.read() == b.read()
        for kind in ("landslides", "new"):
            a, b = _layer(scene, f"{kind}_{year}"), _layer(again, f"{kind}_{year}")
            assert len(a) == len(b) and shapely.equals_exact(a.geometries, b.geometries, 0).all()
            assert np.array_equal(a.fields["ls_id"], b.fields["ls_id"])
    other = ds.generate_scene(tmp_path / "other", ds.SceneSpec(size=384, seed=4, years=(2017,)))
    assert not np.array_equal(_read(other.rasters[2017])[0], _read(scene.rasters[2017])[0])


def test_block_size_does_not_change_pixels(scene, tmp_path):
    m = ds.generate_scene(tmp_path, SPEC, years=[SPEC.years[-1], SPEC.event_year], block_size=128, workers=2)
    assert sorted(m.rasters) == sorted([SPEC.years[-1], SPEC.event_year])
    for year in m.rasters:
        assert np.array_equal(_read(m.rasters[year])[0], _read(scene.rasters[year])[0])


def test_landslides_prefer_steep_slopes():
    spec = ds.SceneSpec(size=1024, seed=5)
    plan = ds.plan_scene(spec)
    cent = shapely.centroid([p.geom for ls in plan.landslides for p in ls.parts[:1]])
    s_ls = ds.slope_at(spec, shapely.get_x(cent), shapely.get_y(cent))
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = spec.extent
    s_rand = ds.slope_at(spec, rng.uniform(x0, x1, 2000), rng.uniform(y0, y1, 2000))
    assert np.mean(s_ls) > np.mean(s_rand) + 5.0
    # the DEM has real relief: a few hundred metres over 3 km
    z = ds.elevation_at(spec, rng.uniform(x0, x1, 2000), rng.uniform(y0, y1, 2000))
    assert 200 < np.ptp(z) < 2000


def test_areas_follow_the_power_law():
    rng = np.random.default_rng(1)
    pool = ds.sample_landslide_areas(rng, 20000, 2.3, 300.0, 200000.0)
    assert pool.min() >= 300.0 and pool.max() <= 200000.0
    assert abs(ds.fit_powerlaw_alpha(pool, 300.0) - 2.3) < 0.05
    # the polygons actually placed keep the exponent (areas are not biased by placement)
    spec = ds.SceneSpec(size=2048, seed=2, years=(2017,), event_year=2017)
    plan = ds.plan_scene(spec)
    areas = [ls.parts[0].geom.area for ls in plan.landslides if ls.parts[0].year == spec.event_year]
    assert len(areas) > 300
    assert abs(ds.fit_powerlaw_alpha(areas, spec.min_landslide_area) - spec.powerlaw_alpha) < 0.25


def test_load_or_generate_reuses_and_regenerates(tmp_path):
    spec = ds.SceneSpec(size=256, years=(2016, 2017), seed=7)
    calls = []
    m1 = ds.load_or_generate(tmp_path, spec, progress=lambda f, msg: calls.append(f))
    assert calls[-1] == 1.0 and calls == sorted(calls)
    paths = list(m1.rasters.values()) + [m1.truth_path, str(tmp_path / "scene.json")]
    mtimes = {p: os.stat(p).st_mtime_ns for p in paths}
    m2 = ds.load_or_generate(tmp_path, ds.SceneSpec(size=256, years=(2016, 2017), seed=7))
    assert {p: os.stat(p).st_mtime_ns for p in paths} == mtimes
    assert m2.spec == spec and m2.rasters == m1.rasters
    m3 = ds.load_or_generate(tmp_path, ds.SceneSpec(size=256, years=(2016, 2017), seed=8))
    assert m3.spec.seed == 8
    assert os.stat(m3.truth_path).st_mtime_ns != mtimes[m1.truth_path] or \
        not np.array_equal(_read(m3.rasters[2017])[0], _read(m1.rasters[2017])[0])
    assert ds.SceneManifest.load(tmp_path).spec.seed == 8


def test_manifest_json_round_trip(scene):
    text = scene.to_json()
    d = json.loads(text)
    assert d["true_powerlaw_alpha"] == SPEC.powerlaw_alpha
    assert d["landslide_counts"][str(SPEC.event_year)] == scene.landslide_counts[SPEC.event_year]
    back = ds.SceneManifest.from_json(text)
    assert back.spec == SPEC and back.rasters == scene.rasters and back.truth_path == scene.truth_path
    assert back.landslide_counts == scene.landslide_counts
    loaded = ds.SceneManifest.load(scene.directory)
    assert loaded.rasters == scene.rasters and loaded.band_names == scene.band_names


def test_bad_specs_are_rejected(tmp_path):
    with pytest.raises(InputError):
        ds.generate_scene(tmp_path, ds.SceneSpec(size=8))
    with pytest.raises(InputError):
        ds.generate_scene(tmp_path, ds.SceneSpec(sensor="landsat"))
    with pytest.raises(InputError):
        ds.generate_scene(tmp_path, ds.SceneSpec(size=64), years=[1999])


def test_point_evaluation_matches_the_block_grid():
    plan = ds.plan_scene(SPEC)
    grid = plan.dem1.grid(40, 90, 300, 380)
    rows, cols = np.mgrid[40:90, 300:380]
    pts = plan.dem1.points(rows.ravel(), cols.ravel()).reshape(grid.shape)
    assert np.abs(pts - grid).max() < 1e-4 * grid.std()


def test_a_cancelled_generation_leaves_nothing_behind(tmp_path):
    class Stop(Exception):
        pass

    def progress(fraction, message):
        if fraction > 0.1:
            raise Stop

    spec = ds.SceneSpec(size=300, years=(2016, 2017))
    with pytest.raises(Stop):
        ds.generate_scene(tmp_path, spec, progress, block_size=128)
    assert sorted(os.listdir(tmp_path)) == []
