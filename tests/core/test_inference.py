"""Tiled inference against the model applied to the whole image, edges and nodata included."""
import numpy as np
import pytest
import rasterio
import shapely

from conftest import forest_with_scars, write_raster
from onnx_factory import conv_model, nhwc_identity_mean_model
from landslide_mapper.core.geodata.bands import build_channels, required_spectral
from landslide_mapper.core.mapping import probability
from landslide_mapper.core.mapping.inference import PROB_NODATA, predict_raster
from landslide_mapper.core.mapping.model import OnnxModel
from landslide_mapper.core.geodata.raster import YearRaster
from landslide_mapper.core.mapping.vectorize import landslide_polygons


def whole_image_prediction(raster_path, model: OnnxModel) -> np.ndarray:
    """The model run once on the full image: the reference the tiles must reproduce."""
    with YearRaster(raster_path, 2020) as r:
        spectral = required_spectral(model.metadata.channels)
        spec, valid = r.read(rasterio.windows.Window(0, 0, r.width, r.height), spectral)
    x = model.normalise(build_channels(spec, model.metadata.channels))
    x[:, ~valid] = 0
    return probability.encode(model.predict(x[None])[0], valid)


def run_tiled(tmp_path, raster_path, model, tile, overlap, batch, threshold=0.5):
    prob = tmp_path / "prob.tif"
    with YearRaster(raster_path, 2020) as r:
        stats = predict_raster(r, model, prob, tile, overlap, batch, threshold)
    with rasterio.open(prob) as ds:
        return ds.read(1), stats, prob


@pytest.mark.parametrize("shape,tile,overlap,batch", [
    ((517, 389), 128, 32, 3),     # ragged right and bottom strips
    ((300, 700), 256, 0, 16),     # no overlap, tall last tile row
    ((40, 50), 64, 16, 2),        # raster smaller than one tile
    ((257, 129), 128, 2, 1),      # one pixel past a tile multiple
])
def test_one_pixel_model_tiled_equals_whole_image(tmp_path, baseline_model, shape, tile, overlap, batch):
    h, w = shape
    img = forest_with_scars(h, w, scars=[(9, h // 2, 5, w // 2), (h - 10, h, w - 12, w)])
    img[:, :7, :] = 0  # a nodata collar along the top edge
    src = write_raster(tmp_path / "in.tif", img)
    model = OnnxModel(baseline_model)
    tiled, stats, _ = run_tiled(tmp_path, src, model, tile, overlap, batch)
    whole = whole_image_prediction(src, model)
    np.testing.assert_array_equal(tiled, whole)
    assert (tiled[:7] == PROB_NODATA).all() and (tiled[7:] != PROB_NODATA).all()
    assert stats.valid_pixels == (shape[0] - 7) * shape[1]


@pytest.mark.parametrize("kernel,overlap", [(3, 2), (5, 4), (7, 32)])
def test_conv_model_tiled_equals_whole_image_when_overlap_covers_receptive_field(tmp_path, kernel, overlap):
    """Centre-cropping keeps pixels at least overlap/2 from a tile edge: exact for radius ≤ overlap/2."""
    src = write_raster(tmp_path / "in.tif", forest_with_scars(301, 263, scars=[(50, 90, 40, 120)]))
    model = OnnxModel(conv_model(tmp_path / "conv.onnx", kernel=kernel))
    tiled, _, _ = run_tiled(tmp_path, src, model, 64, overlap, 5)
    whole = whole_image_prediction(src, model)
    # the same probabilities to within float rounding: a code may differ by one step
    np.testing.assert_allclose(tiled.astype(int), whole.astype(int), rtol=0, atol=1)
    assert np.mean(tiled == whole) > 0.999


def test_nhwc_models_are_transposed(tmp_path):
    src = write_raster(tmp_path / "in.tif", forest_with_scars(70, 90))
    model = OnnxModel(nhwc_identity_mean_model(tmp_path / "nhwc.onnx"))
    tiled, _, _ = run_tiled(tmp_path, src, model, 32, 8, 4)
    np.testing.assert_allclose(tiled.astype(int), whole_image_prediction(src, model).astype(int), atol=1)


def test_outputs_keep_the_input_grid_and_are_tiled_compressed(tmp_path, baseline_model):
    src = write_raster(tmp_path / "in.tif", forest_with_scars(300, 420, scars=[(100, 140, 100, 160)]))
    _, stats, prob = run_tiled(tmp_path, src, OnnxModel(baseline_model), 128, 16, 4)
    with rasterio.open(src) as a, rasterio.open(prob) as b:
        assert a.crs == b.crs and a.transform == b.transform and a.shape == b.shape
        assert b.profile["tiled"] and b.compression.name.lower() == "zstd"
        assert b.nodata == PROB_NODATA == 255 and b.dtypes[0] == "uint8"
        assert b.scales == (1 / 254,)       # GDAL and QGIS read probabilities 0-1
    assert stats.landslide_pixels == 40 * 60


def test_polygons_have_exact_areas_and_attributes(tmp_path, baseline_model):
    scars = [(100, 140, 100, 160), (10, 14, 10, 14), (200, 220, 300, 310)]  # 2400 px, 16 px (too small), 200 px
    src = write_raster(tmp_path / "in.tif", forest_with_scars(300, 420, scars=scars))
    model = OnnxModel(baseline_model)
    _, _, prob = run_tiled(tmp_path, src, model, 128, 16, 4)
    with YearRaster(src, 2020) as r:
        crs_wkt = r.crs.to_wkt()
    layer = landslide_polygons(prob, 2020, 0.5, 200.0, crs_wkt)
    areas = sorted(layer.fields["area_m2"])
    assert areas == [200 * 9.0, 2400 * 9.0]  # the 16-pixel (144 m²) one is below 200 m²
    assert sorted(layer.fields["perimeter_m"]) == [2 * (20 + 10) * 3.0, 2 * (40 + 60) * 3.0]
    assert (layer.fields["year"] == 2020).all()
    assert ((layer.fields["mean_prob"] > 0.5) & (layer.fields["mean_prob"] <= 1)).all()
    assert shapely.is_valid(layer.geometries).all()
    # the 40×60 scar starts at row 100, col 100 of a raster whose origin is (300000, 3100000), 3 m pixels
    big = layer.geometries[np.argmax(layer.fields["area_m2"])]
    assert big.bounds == (300300.0, 3100000 - 140 * 3.0, 300480.0, 3100000 - 100 * 3.0)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_alpha_band_and_nan_are_masked(tmp_path, baseline_model, dtype):
    img = forest_with_scars(64, 80, scars=[(0, 64, 0, 80)]).astype(dtype)
    alpha = np.full((1, 64, 80), 255, dtype)
    alpha[0, 50:] = 0
    if dtype == "float32":
        img[:, :, :10] = np.nan
    src = tmp_path / "alpha.tif"
    with rasterio.open(src, "w", driver="GTiff", width=80, height=64, count=5, dtype=dtype,
                       crs="EPSG:32645", transform=rasterio.transform.from_origin(0, 6400000, 3, 3),
                       nodata=np.nan if dtype == "float32" else None) as ds:
        ds.write(np.concatenate([img, alpha]))
        ds.colorinterp = [rasterio.enums.ColorInterp.blue, rasterio.enums.ColorInterp.green,
                          rasterio.enums.ColorInterp.red, rasterio.enums.ColorInterp.undefined,
                          rasterio.enums.ColorInterp.alpha]
    with YearRaster(src, 2020, reflectance_scale=10000) as r:
        assert r.mapping.as_dict() == {"B": 1, "G": 2, "R": 3, "NIR": 4}
    tiled, stats, _ = run_tiled(tmp_path, src, OnnxModel(baseline_model), 32, 8, 4)
    blank = 10 if dtype == "float32" else 0
    assert (tiled[:, :blank] == PROB_NODATA).all() and (tiled[50:] == PROB_NODATA).all()
    assert (tiled[:50, blank:] > 0.5).all()
    assert stats.valid_pixels == 50 * (80 - blank)


def test_prefetcher_runs_a_stopped_generators_cleanup():
    """A run stopped early (cancel, an error downstream) must not leave the reading thread
    or an inner reader behind: the generator's own cleanup runs when it is closed."""
    import threading

    from landslide_mapper.core.mapping.inference import _Prefetcher

    cleaned = threading.Event()

    def items():
        try:
            for i in range(1000):
                yield i
        finally:
            cleaned.set()

    pre = _Prefetcher(items())
    assert next(iter(pre)) == 0
    pre.close()
    assert cleaned.wait(5) and not pre._thread.is_alive()


@pytest.mark.parametrize("layout", [
    dict(tiled=True, blockxsize=64, blockysize=64),     # block rows taller than a tile row's stride
    dict(tiled=True, blockxsize=32, blockysize=16),     # several block rows per tile row
    dict(tiled=True, blockxsize=128, blockysize=128),   # one block row holds more than one tile row
    dict(blockysize=3),                                 # strips of 3 rows
    dict(blockysize=300),                               # one strip: too tall to read ahead
])
@pytest.mark.parametrize("clipped", [False, True])
def test_rows_kept_between_tile_rows_give_the_same_prediction_whatever_the_blocks(
        tmp_path, baseline_model, monkeypatch, layout, clipped):
    """The reader keeps the rows the next tile row reads again (undecoded, with their
    validity) instead of decoding their blocks twice: the prediction must not depend on
    how the file is blocked, on a grid clipped at an offset to the blocks, or on a mask."""
    from shapely.geometry import Polygon

    from landslide_mapper.core.geodata.area import AreaOfInterest
    from landslide_mapper.core.mapping import inference

    monkeypatch.setattr(inference, "REUSE_BLOCK_ROWS", 200)
    img = forest_with_scars(300, 230, scars=[(40, 90, 30, 100), (150, 290, 180, 230)])
    img[:, 100:130, 50:70] = 0                                        # nodata inside
    src = write_raster(tmp_path / "in.tif", img, compress="deflate", **layout)
    model = OnnxModel(baseline_model)
    with YearRaster(src, 2020) as r:
        if clipped:       # a triangle's window starts at row 37, col 11; outside it is invalid
            t = r.transform
            r.clip(AreaOfInterest(Polygon([t * (11, 37), t * (225, 37), t * (11, 297)]), "triangle"))
            block = r.dataset.block_shapes[0][0]
            assert r.block_row_end(0) == min(r.height, (37 // block + 1) * block - 37)
        predict_raster(r, model, tmp_path / "p.tif", 64, 16, 3, 0.5)
        spectral = required_spectral(model.metadata.channels)
        spec, valid = r.read(rasterio.windows.Window(0, 0, r.width, r.height), spectral)
    x = model.normalise(build_channels(spec, model.metadata.channels))
    x[:, ~valid] = 0
    with rasterio.open(tmp_path / "p.tif") as ds:
        tiled = ds.read(1)
    np.testing.assert_array_equal(tiled, probability.encode(model.predict(x[None])[0], valid))
    assert tiled.shape == ((260, 214) if clipped else (300, 230))
    assert (tiled == PROB_NODATA).sum() >= 20 * 30 + (10000 if clipped else 0)


def test_rows_kept_for_the_next_tile_row_are_trimmed_copies():
    """What the reader keeps starts at the next tile row and holds no view on the rows
    above it (a view would keep the whole read alive)."""
    from landslide_mapper.core.mapping.inference import _from_row

    a = (100, np.arange(2 * 40 * 5, dtype=np.uint16).reshape(2, 40, 5), np.ones((40, 5), bool))
    b = (140, np.zeros((2, 30, 5), np.uint16), np.zeros((30, 5), bool))
    kept = _from_row([a, b], 124)
    assert [(r, d.shape[1]) for r, d, _ in kept] == [(124, 16), (140, 30)]
    assert not np.shares_memory(kept[0][1], a[1]) and not np.shares_memory(kept[0][2], a[2])
    np.testing.assert_array_equal(kept[0][1], a[1][:, 24:])
    assert kept[1][1] is b[1]                   # starts below the row: kept as it is
    assert _from_row([a], 140) == []
