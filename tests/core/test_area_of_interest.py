"""Mapping only an area of interest: polygons, a rectangle (the map view) in any CRS, or both.

Only pixels inside are predicted and counted in the mapped area; the probability raster
covers the window around the area; an area outside the image or empty is refused with a
message that says so."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from conftest import forest_with_scars, write_raster
from landslide_mapper.core.geodata.area import AreaOfInterest, area_of_interest
from landslide_mapper.core.errors import InputError
from landslide_mapper.core.mapping.inference import PROB_NODATA
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput, job_from_json, job_to_json
from landslide_mapper.core.mapping.job import run_inference
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.geodata.vector_io import VectorLayer, write_geopackage
from onnx_factory import conv_model, metadata

X0, Y0, PX = 300000.0, 3100000.0, 3.0       # the test image's origin and pixel size (EPSG:32645)


def image(tmp_path, name="img_2017.tif"):
    img = forest_with_scars(96, 96, [(20, 40, 20, 44), (60, 80, 50, 70)])
    return str(write_raster(tmp_path / name, img, transform=from_origin(X0, Y0, PX, PX)))


def model(tmp_path):
    return conv_model(tmp_path / "m.onnx", meta=metadata(tile_size=64))


def px_box(r0, r1, c0, c1):
    """A rectangle over pixel rows r0:r1 and columns c0:c1 of the test image."""
    return shapely.box(X0 + c0 * PX, Y0 - r1 * PX, X0 + c1 * PX, Y0 - r0 * PX)


def area_gpkg(tmp_path, geoms, crs="EPSG:32645", name="area.gpkg"):
    wkt = rasterio.crs.CRS.from_user_input(crs).to_wkt()
    return str(write_geopackage(tmp_path / name, {"area": VectorLayer(np.array(geoms, dtype=object), {}, wkt)}))


def run(tmp_path, out="out", years=None, **kw):
    job = InferenceJob(years=years or [YearInput(2017, image(tmp_path))], model=str(model(tmp_path)),
                       output_dir=str(tmp_path / out), analyse=False, **kw)
    return run_inference(job, Reporter())


def probability(result, i=0):
    with rasterio.open(f"{result.run_dir}/{result.years[i].probability}") as ds:
        return ds.read(1), ds.transform


def test_a_polygon_area_maps_only_inside_it(tmp_path):
    # an L-shaped area: the window is its bounding box, pixels in the notch stay unmapped
    ell = shapely.union(px_box(10, 50, 10, 30), px_box(30, 50, 10, 60))
    result = run(tmp_path, area=area_gpkg(tmp_path, [ell]))
    prob, transform = probability(result)
    assert prob.shape == (40, 50)                                # rows 10:50, columns 10:60
    assert transform.c == X0 + 10 * PX and transform.f == Y0 - 10 * PX
    assert (prob[:20, 20:] == PROB_NODATA).all()                 # the notch (rows 10:30, cols 30:60)
    assert (prob[20:, :] != PROB_NODATA).all() and (prob[:, :20] != PROB_NODATA).all()
    inside = 40 * 20 + 20 * 30
    assert result.years[0].mapped_area_km2 == pytest.approx(inside * PX * PX / 1e6, abs=1e-4)


def test_an_extent_in_another_crs_is_reprojected(tmp_path):
    whole = run(tmp_path, out="whole")
    bounds = transform_bounds("EPSG:32645", "EPSG:4326", *px_box(0, 48, 0, 48).bounds)
    half = run(tmp_path, out="half", bounds=list(bounds), bounds_crs="EPSG:4326")
    prob, _ = probability(half)
    # a lon/lat rectangle around the top-left quarter: about 48×48 pixels, give or take the turn
    assert 46 <= prob.shape[0] <= 52 and 46 <= prob.shape[1] <= 52
    assert half.years[0].mapped_area_km2 < 0.3 * whole.years[0].mapped_area_km2
    full, _ = probability(whole)
    assert np.allclose(prob[10:40, 10:40], full[10:40, 10:40], atol=1e-5)   # same predictions inside


def test_polygons_and_extent_together_map_where_both_overlap(tmp_path):
    area = area_gpkg(tmp_path, [px_box(0, 60, 0, 60)])
    result = run(tmp_path, area=area, bounds=list(px_box(30, 96, 30, 96).bounds))
    prob, _ = probability(result)
    assert prob.shape == (30, 30)
    assert result.years[0].mapped_area_km2 == pytest.approx(30 * 30 * PX * PX / 1e6, abs=1e-4)


def test_every_year_is_clipped_to_the_same_ground(tmp_path):
    years = [YearInput(2017, image(tmp_path, "a_2017.tif")), YearInput(2018, image(tmp_path, "a_2018.tif"))]
    result = run(tmp_path, years=years, bounds=list(px_box(8, 40, 8, 72).bounds))
    for i in range(2):
        prob, transform = probability(result, i)
        assert prob.shape == (32, 64) and transform.c == X0 + 8 * PX


def test_an_area_off_the_image_is_refused(tmp_path):
    far = area_gpkg(tmp_path, [shapely.box(X0 + 10000, Y0 - 500, X0 + 10300, Y0 - 200)])
    with pytest.raises(InputError, match=r"Year 2017: .*img_2017\.tif does not overlap the area of interest"):
        run(tmp_path, area=far)
    assert not list((tmp_path / "out").glob("*"))              # nothing left behind


def test_an_empty_overlap_and_bad_layers_are_refused(tmp_path):
    area = area_gpkg(tmp_path, [px_box(0, 20, 0, 20)])
    with pytest.raises(InputError, match="area of interest is empty"):
        run(tmp_path, area=area, bounds=list(px_box(50, 90, 50, 90).bounds))
    points = str(write_geopackage(tmp_path / "points.gpkg", {"p": VectorLayer(
        np.array([shapely.Point(X0, Y0)], dtype=object), {}, rasterio.crs.CRS.from_epsg(32645).to_wkt())}))
    with pytest.raises(InputError, match="The area of interest.*has no polygons"):
        run(tmp_path, area=points)
    with pytest.raises(InputError, match="The area of interest"):
        run(tmp_path, area=str(tmp_path / "missing.gpkg"))
    with pytest.raises(InputError, match="not a coordinate reference system"):
        run(tmp_path, bounds=[0, 0, 1, 1], bounds_crs="EPSG:99999999")


def test_the_area_travels_in_the_job_spec_and_is_checked():
    job = InferenceJob(years=[YearInput(2017, "a.tif")], model="m", output_dir="o", area="area.gpkg|layername=a",
                       bounds=[1.0, 2.0, 3.0, 4.0], bounds_crs="EPSG:4326")
    back = job_from_json(job_to_json(job))
    assert (back.area, back.bounds, back.bounds_crs) == ("area.gpkg|layername=a", [1.0, 2.0, 3.0, 4.0], "EPSG:4326")
    for bad in ([1, 2, 3], [3, 2, 1, 4], [0, 0, float("nan"), 1], ["a", 0, 1, 1]):
        with pytest.raises(InputError, match="extent|bounds"):
            InferenceJob(years=[YearInput(2017, "a.tif")], model="m", output_dir="o", bounds=bad).validate()


def test_the_mask_skips_rasterising_where_it_can():
    aoi = AreaOfInterest(shapely.Polygon([(0, 0), (100, 0), (0, 100)]), "a triangle")
    t = from_origin(0, 100, 1, 1)
    assert aoi.mask(from_origin(0, 20, 1, 1), (10, 10)) is None                 # wholly inside
    assert not aoi.mask(from_origin(90, 100, 1, 1), (10, 10)).any()            # wholly outside
    mask = aoi.mask(t, (100, 100))
    assert mask[99, 0] and not mask[0, 99] and 4900 < mask.sum() < 5100
    assert AreaOfInterest(shapely.box(0, 0, 5, 5), "box").mask(t, (100, 100)) is None


def test_area_of_interest_none_without_area_or_bounds():
    assert area_of_interest(None, None, None, rasterio.crs.CRS.from_epsg(32645)) is None
