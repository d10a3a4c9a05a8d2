"""Anchor patches (core/training/anchors.py): cells of unreviewed ground, sampling them with
the base's decisions, and the drift measure. Real GeoTIFFs and GeoPackages; the base is a
plain function here (the fine-tuning test in test_real_training.py runs a real checkpoint)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from landslide_mapper.core.geodata.raster import YearRaster
from landslide_mapper.core.geodata.vector_io import VectorLayer, write_geopackage
from landslide_mapper.core.jobs.specs import TrainingSource
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.training.anchors import Anchors, drift, sample_anchors, unreviewed_cells
from landslide_mapper.core.training.checkpoint import unreviewed_text

CRS = "EPSG:32645"
T = from_origin(500000, 3000000, 3.0, 3.0)


def raster(path, width=256, height=128, nodata_cols=None):
    data = np.random.default_rng(0).uniform(0.02, 0.3, (4, height, width)).astype(np.float32)
    data[:, :, :8] = 0.5   # bright strips the fake base calls landslide: one reviewed,
    data[:, :, 100:104] = 0.5   # one not
    if nodata_cols:
        data[:, :, nodata_cols[0]:nodata_cols[1]] = -9999
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=4, dtype="float32",
                       crs=CRS, transform=T, nodata=-9999) as ds:
        ds.write(data)
    return str(path)


def reviewed_box(path, x_px_end):
    write_geopackage(path, {"reviewed": VectorLayer(
        np.array([shapely.box(500000, 3000000 - 128 * 3, 500000 + 3 * x_px_end, 3000000)], dtype=object), {},
        rasterio.crs.CRS.from_string(CRS).to_wkt())})
    return str(path)


def test_cells_sharing_only_an_edge_with_the_review_are_unreviewed(tmp_path):
    path = raster(tmp_path / "a.tif")
    with YearRaster(path, 2020) as r:
        rev = np.array([shapely.box(500000, 3000000 - 384, 500000 + 3 * 64, 3000000)], dtype=object)
        rows, cols = unreviewed_cells(r, rev, 64, stride=64)
        assert sorted(set(cols.tolist())) == [64, 128, 192] and sorted(set(rows.tolist())) == [0, 64]
        part = np.array([shapely.box(500000, 3000000 - 384, 500000 + 3 * 70, 3000000)], dtype=object)
        rows, cols = unreviewed_cells(r, part, 64, stride=64)     # reaching 6 px into the second column
        assert sorted(set(cols.tolist())) == [128, 192]
        rows, cols = unreviewed_cells(r, rev, 64)                 # half-overlapping cells by default
        assert sorted(set(cols.tolist())) == [64, 96, 128, 160, 192] and sorted(set(rows.tolist())) == [0, 32, 64]


def test_sampling_takes_unreviewed_valid_ground_with_the_base_decision(tmp_path):
    path = raster(tmp_path / "a.tif", nodata_cols=(192, 256))
    src = TrainingSource(raster=path, labels="unused.gpkg", reviewed=reviewed_box(tmp_path / "r.gpkg", 64), year=2020)
    complete = TrainingSource(raster=path, labels="unused.gpkg", year=2020)     # no review layer: all reviewed
    seen = []

    def base(images, valid):
        seen.append(images.shape)
        return (images[..., 0] > 0.4).astype(np.float32)

    a = sample_anchors([src, complete], ["B", "G", "R", "NIR"], 64, count=20, predict=base, threshold=0.5,
                       seed=1, reporter=Reporter())
    # cells at columns 64, 96, 128 and 160 (half nodata: enough) are unreviewed, 192 is all nodata;
    # three rows: twelve cells, of twenty asked for
    assert len(a) == 12 and seen == [(12, 64, 64, 4)] and set(a.source.tolist()) == {0}
    assert a.valid.sum() == (3 * 64 + 32) * 64 * 3
    assert a.base.sum() == 3 * 2 * 64 * 4       # the unreviewed strip lies in the cells at 64 and 96
    assert len(sample_anchors([src], ["B", "G", "R", "NIR"], 64, 5, base, 0.5, 1, Reporter())) == 5
    assert sample_anchors([complete], ["B"], 64, 10, base, 0.5, 1, Reporter()) is None


def test_drift_compares_the_new_map_with_the_base():
    base = np.zeros((1, 4, 4), bool)
    base[0, :2] = True                                  # 8 pixels
    valid = np.ones_like(base)
    valid[0, 3] = False                                 # 12 valid pixels
    a = Anchors(np.zeros((1, 4, 4, 1), np.float32), valid, base, np.zeros(1, np.int64))
    new = np.zeros_like(base)
    new[0, :1] = True                                   # 4 pixels, all inside the base's
    new[0, 3] = True                                    # invalid: not counted
    d = drift(a, new)
    assert d == {"patches": 1, "base_share": round(8 / 12, 5), "new_share": round(4 / 12, 5),
                 "area_ratio": 0.5, "agreement_f1": round(8 / 12, 4)}
    text = unreviewed_text({"unreviewed": d})
    assert "0.5 times" in text and "quiet year" in text and unreviewed_text({}) == ""
    assert drift(a, np.zeros_like(base))["agreement_f1"] == 0.0
    empty = Anchors(a.images, valid, np.zeros_like(base), a.source)
    assert drift(empty, np.zeros_like(base)) == {"patches": 1, "base_share": 0.0, "new_share": 0.0,
                                                 "area_ratio": None, "agreement_f1": 1.0}


def test_a_negative_weight_is_refused():
    from landslide_mapper.core.errors import InputError
    from landslide_mapper.core.jobs.specs import TrainJob

    with pytest.raises(InputError, match="unreviewed ground"):
        TrainJob(sources=[TrainingSource("a.tif", "b.gpkg")], output_dir="o", name="n", distill_weight=-0.1).validate()


def test_anchor_pixels_carry_the_base_decision_with_their_own_weight():
    from landslide_mapper.core.training.loop import _anchor_codes, _target

    base = np.array([[[True, False], [False, False]]])
    valid = np.array([[[True, True], [True, False]]])
    a = Anchors(np.zeros((1, 2, 2, 1), np.float32), valid, base, np.zeros(1, np.int64))
    target = _target(_anchor_codes(a), hard_weight=3.0, anchor_weight=0.4)
    assert target[..., 0].tolist() == [[[1.0, 0.0], [0.0, 0.0]]]
    assert np.allclose(target[..., 1], [[[0.4, 0.4], [0.4, 0.0]]])       # nodata weighs nothing
    labelled = _target(np.array([[0, 1], [2, 3]], np.uint8), hard_weight=3.0, anchor_weight=0.4)
    assert labelled[..., 1].tolist() == [[1.0, 1.0], [3.0, 0.0]]           # corrections keep their weights
