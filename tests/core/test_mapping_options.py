"""Mapping options added for real imagery: the pixel size a model was trained on (resampling),
the automatic model choice for colour-only images, test-time augmentation, and the
uncertainty rasters with their suggested review areas."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import forest_with_scars, write_raster
from landslide_mapper.core.mapping import bundled
from landslide_mapper.core.errors import InputError
from landslide_mapper.core.mapping.inference import UNC_NODATA, predict_tta, uncertainty
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput
from landslide_mapper.core.mapping.job import RESAMPLE_TOLERANCE, _target_resolution, run_inference
from landslide_mapper.core.mapping.model import OnnxModel
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.mapping.review import suggest_review_areas
from landslide_mapper.core.geodata.vector_io import list_layers, read_layer
from onnx_factory import conv_model, metadata


def model(tmp_path, **meta):
    return conv_model(tmp_path / "m.onnx", meta=metadata(tile_size=64, **meta))


def image(tmp_path, name="img.tif", px=3.0, size=96, bands=4):
    img = forest_with_scars(size, size, [(20, 40, 20, 44), (60, 80, 50, 70)])[:bands]
    return str(write_raster(tmp_path / name, img, transform=from_origin(300000.0, 3100000.0, px, px)))


def run(tmp_path, path, mdl, logs=None, **kw):
    job = InferenceJob(years=[YearInput(2017, path)], model=str(mdl), output_dir=str(tmp_path / "out"),
                       analyse=False, **kw)
    return run_inference(job, Reporter(on_log=(logs.append if logs is not None else None)))


# -- pixel size ------------------------------------------------------------------------

def test_target_resolution_rule():
    assert _target_resolution(3.0, []) is None                       # a model that does not say
    assert _target_resolution(3.0, [3.0, 5.0]) is None
    assert _target_resolution(5.0 * RESAMPLE_TOLERANCE * 0.99, [3.0, 5.0]) is None
    assert _target_resolution(0.8, [3.0, 5.0]) == 3.0
    assert _target_resolution(10.0, [3.0, 5.0]) == 5.0


def test_an_image_far_from_the_model_pixel_size_is_resampled(tmp_path):
    mdl = model(tmp_path, pixel_size=[3.0, 3.0])
    fine = image(tmp_path, "fine.tif", px=1.0, size=192)
    logs = []
    res = run(tmp_path, fine, mdl, logs)
    y = res.years[0]
    assert y.resampled_from_m == pytest.approx(1.0) and y.pixel_size_m == pytest.approx(3.0)
    with rasterio.open(f"{res.run_dir}/{y.probability}") as ds:
        assert ds.res == pytest.approx((3.0, 3.0)) and ds.width == 64
    assert any("1 m pixels resampled to 3 m" in m and "resample to 'off'" in m for m in logs)
    # off: mapped as it is, with a warning
    logs = []
    res = run(tmp_path, fine, mdl, logs, resample="off")
    assert res.years[0].resampled_from_m is None and res.years[0].pixel_size_m == pytest.approx(1.0)
    assert any(m.startswith("Warning: year 2017 has 1 m pixels") for m in logs)
    # close enough: untouched
    res = run(tmp_path, image(tmp_path, "ok.tif", px=4.0), mdl)
    assert res.years[0].resampled_from_m is None
    with pytest.raises(InputError, match="Resample must be one of"):
        InferenceJob(years=[YearInput(2017, fine)], model=str(mdl), output_dir="o", resample="always").validate()


def test_the_pixel_size_travels_in_the_model_metadata(tmp_path):
    mdl = OnnxModel(model(tmp_path, pixel_size=[3.0, 5.0]))
    assert mdl.metadata.pixel_size == [3.0, 5.0]
    assert OnnxModel(conv_model(tmp_path / "old.onnx")).metadata.pixel_size == []     # older models: unknown


# -- the automatic model ---------------------------------------------------------------

def test_auto_picks_the_rgb_checkpoint_for_colour_only_images(tmp_path):
    rgb = image(tmp_path, "rgb.tif", bands=3)
    nir = image(tmp_path, "nir.tif", bands=4)
    logs = []
    assert bundled.has_nir(nir) and not bundled.has_nir(rgb)
    assert bundled.has_nir(rgb, "R=1,G=2,B=3,NIR=3")
    years = [YearInput(2016, nir), YearInput(2017, rgb)]
    assert bundled.pick_model("auto", years, logs.append) == str(bundled.RGB_CHECKPOINT)
    assert "No near-infrared band in 2017 (rgb.tif)" in logs[-1] and bundled.RGB_CHECKPOINT.name in logs[-1]
    assert bundled.pick_model("", years[:1], logs.append) == str(bundled.CASCADE_CHECKPOINT)
    assert bundled.pick_model("my.onnx", years, logs.append) == "my.onnx"        # a named model is kept


@pytest.mark.skipif(not (bundled.RGB_CHECKPOINT / "checkpoint.json").exists(), reason="no bundled RGB checkpoint")
def test_a_colour_only_image_maps_with_the_rgb_checkpoint(tmp_path):
    logs = []
    res = run(tmp_path, image(tmp_path, "rgb.tif", bands=3), "auto", logs)
    assert bundled.RGB_CHECKPOINT.name in res.model
    assert any("mapping every year with the bundled RGB checkpoint" in m for m in logs)


def test_the_too_few_bands_advice_names_the_rgb_checkpoint(tmp_path):
    rgb = image(tmp_path, "rgb.tif", bands=3)
    with pytest.raises(InputError) as err:
        run(tmp_path, rgb, model(tmp_path))                       # a 4-band model on a 3-band image
    assert bundled.RGB_CHECKPOINT.name in str(err.value) and "NIR" in str(err.value)


# -- test-time augmentation and uncertainty ---------------------------------------------

def test_flip_averaging(tmp_path):
    mdl = OnnxModel(model(tmp_path))
    batch = np.random.default_rng(0).normal(size=(2, 5, 32, 32)).astype(np.float32)
    mean, disagree = predict_tta(mdl, batch)
    flips = [mdl.predict(batch), mdl.predict(batch[..., ::-1].copy())[..., ::-1],
             mdl.predict(batch[:, :, ::-1].copy())[:, ::-1], mdl.predict(batch[:, :, ::-1, ::-1].copy())[:, ::-1, ::-1]]
    assert np.allclose(mean, np.mean(flips, 0), atol=1e-6)
    assert np.allclose(disagree, np.minimum(1, 2 * np.std(flips, 0)), atol=1e-6)


def test_uncertainty_is_highest_at_the_threshold():
    p = np.array([0.001, 0.1, 0.5, 0.9, 0.999], np.float32)
    u = uncertainty(p, 0.5)
    assert u[2] == pytest.approx(1.0) and u[1] == pytest.approx(u[3]) and u[0] < 0.05
    # an extreme threshold: the same symmetry in logit space
    u = uncertainty(np.array([0.99, 0.999, 0.9999]), 0.999)
    assert u[1] == pytest.approx(1.0) and u[0] == pytest.approx(u[2], abs=0.02)
    assert uncertainty(np.array([0.01]), 0.5, np.array([0.8]))[0] == pytest.approx(0.8)


def test_uncertainty_rasters_and_review_areas(tmp_path):
    mdl = model(tmp_path)
    res = run(tmp_path, image(tmp_path, size=160), mdl, uncertainty=True, tta=True, review_areas=3)
    y = res.years[0]
    assert y.uncertainty == "uncertainty_2017.tif" and y.review_layer == "review_2017"
    with rasterio.open(f"{res.run_dir}/{y.uncertainty}") as ds:
        u = ds.read(1)
        assert ds.dtypes[0] == "uint8" and ds.nodata == UNC_NODATA and ds.width == 160
    assert u.max() <= 254
    assert "review_2017" in list_layers(res.geopackage)
    review = read_layer(res.geopackage, "review_2017")
    assert 1 <= len(review) <= 3 and list(review.fields["rank"]) == list(range(1, len(review) + 1))
    # without the option: neither
    res = run(tmp_path, image(tmp_path, size=160), mdl)
    assert res.years[0].uncertainty is None and "review_2017" not in list_layers(res.geopackage)


def test_review_areas_pick_the_most_uncertain_windows_and_never_touch(tmp_path):
    unc = np.zeros((64, 96), np.uint8)
    unc[0:16, 0:16] = 250        # window (0, 0): the most uncertain
    unc[0:16, 16:32] = 240       # touches it: skipped
    unc[32:48, 64:80] = 200      # far away: second
    unc[48:64, 0:16] = UNC_NODATA
    prob = np.where(unc > 100, 0.6, 0.1).astype(np.float32)
    t = from_origin(0, 64 * 3.0, 3.0, 3.0)
    u_path = write_raster(tmp_path / "u.tif", unc, crs="EPSG:32632", transform=t, nodata=UNC_NODATA)
    p_path = write_raster(tmp_path / "p.tif", prob, crs="EPSG:32632", transform=t, nodata=-1)
    layer = suggest_review_areas(u_path, p_path, 2018, 0.5, window=16, count=5)
    boxes = [tuple(np.round(g.bounds)) for g in layer.geometries]
    assert boxes[0] == (0.0, 144.0, 48.0, 192.0) and boxes[1] == (192.0, 48.0, 240.0, 96.0)
    assert layer.fields["uncertainty"][0] == pytest.approx(250 / 254, abs=1e-3)
    assert layer.fields["landslide_share"][0] == pytest.approx(1.0)
    assert (0.0, 144.0, 48.0, 192.0) in boxes and (48.0, 144.0, 96.0, 192.0) not in boxes
    assert all(b != (0.0, 0.0, 48.0, 48.0) for b in boxes)          # the nodata window


# -- a nodata value for images that declare none ----------------------------------------

def collared(tmp_path, value=0, reproject=False):
    """An image without a declared nodata value whose left third is a collar of ``value``."""
    img = forest_with_scars(96, 96, [(20, 40, 50, 74)])
    img[:, :, :32] = value
    if reproject:        # geographic: mapped in its UTM zone through a warp
        return str(write_raster(tmp_path / f"collar_{value}_geo.tif", img, crs="EPSG:4326", nodata=None,
                                transform=from_origin(85.0, 28.0, 0.00003, 0.00003)))
    return str(write_raster(tmp_path / f"collar_{value}.tif", img, nodata=None))


@pytest.mark.parametrize("reproject", [False, True])
def test_a_nodata_value_keeps_a_collar_out_of_the_map(tmp_path, reproject):
    from landslide_mapper.core.mapping.inference import PROB_NODATA

    path = collared(tmp_path, 7, reproject)
    mdl = model(tmp_path)
    for nodata in (None, 7):
        job = InferenceJob(years=[YearInput(2017, path, nodata=nodata)], model=str(mdl),
                           output_dir=str(tmp_path / f"out_{nodata}"), analyse=False)
        result = run_inference(job, Reporter())
        with rasterio.open(f"{result.run_dir}/{result.years[0].probability}") as ds:
            prob = ds.read(1)
        h, w = prob.shape
        collar = prob[h // 5: 4 * h // 5, w // 12: w // 4]   # inside the collar, clear of the warp's edges
        ground = prob[h // 5: 4 * h // 5, w // 2: 11 * w // 12]
        assert (ground != PROB_NODATA).all()
        if nodata is None:
            assert (collar != PROB_NODATA).all()          # the collar is mapped as if it were ground
        else:
            assert (collar == PROB_NODATA).all()          # left out, as declared nodata would be


def test_nodata_travels_in_the_job_spec_and_is_checked():
    from landslide_mapper.core.jobs.specs import job_from_json, job_to_json

    job = InferenceJob(years=[YearInput(2017, "a.tif", nodata=0)], model="m.onnx", output_dir="o")
    assert job_from_json(job_to_json(job)).years[0].nodata == 0
    with pytest.raises(InputError, match="nodata"):
        InferenceJob(years=[YearInput(2017, "a.tif", nodata="zero")], model="m.onnx", output_dir="o").validate()


def test_the_command_line_takes_a_nodata_value_per_year_or_for_all():
    from landslide_mapper.core.jobs.cli import _parse_years
    from landslide_mapper.core.errors import LandslideMapperError

    years = _parse_years(["2017=a.tif", "2018=b.tif"], [], None, ["0", "2018:-9999"])
    assert [(y.year, y.nodata) for y in years] == [(2017, 0.0), (2018, -9999.0)]
    assert _parse_years(["2017=a.tif"], [], None, None)[0].nodata is None
    with pytest.raises(LandslideMapperError, match="--nodata expects a number"):
        _parse_years(["2017=a.tif"], [], None, ["black"])
