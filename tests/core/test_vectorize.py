"""Strip-wise labelling must give exactly the polygons of a single whole-raster pass."""
import numpy as np
import pytest
import shapely
from rasterio.transform import Affine
from scipy import ndimage

from conftest import write_raster
from landslide_mapper.core.mapping import probability
from landslide_mapper.core.mapping import vectorize
from landslide_mapper.core.mapping.probability import LEGACY_NODATA as PROB_NODATA  # float32 files of earlier versions


def blobs(shape, seed=0):
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random(shape), 2.5)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    prob = prob.astype(np.float32)
    prob[:, :5] = PROB_NODATA
    return prob


def canonical(geoms, counts, means):
    order = np.lexsort(np.array(shapely.bounds(geoms)).T[::-1])
    return geoms[order], counts[order], means[order]


@pytest.mark.parametrize("strip", [1, 7, 64])
def test_strips_give_the_same_regions_as_one_pass(tmp_path, monkeypatch, strip):
    prob = blobs((150, 170))
    # a rotated grid too: stitching happens in pixel space, before the transform
    tf = Affine(2.5, 0.4, 500000.0, 0.3, -2.5, 4000000.0)
    path = write_raster(tmp_path / "p.tif", prob, transform=tf, nodata=PROB_NODATA)
    whole = canonical(*vectorize.regions(path, 0.55))
    monkeypatch.setattr(vectorize, "STRIP", strip)
    striped = canonical(*vectorize.regions(path, 0.55))
    assert len(whole[0]) == len(striped[0]) > 10
    assert (shapely.area(shapely.symmetric_difference(whole[0], striped[0])) < 1e-6).all()
    assert (whole[1] == striped[1]).all()
    np.testing.assert_allclose(whole[2], striped[2], rtol=1e-9)
    assert (shapely.get_type_id(striped[0]) == 3).all() and shapely.is_valid(striped[0]).all()


def test_region_pixels_match_the_thresholded_raster(tmp_path):
    prob = blobs((90, 120), seed=3)
    path = write_raster(tmp_path / "p.tif", prob, nodata=PROB_NODATA)
    geoms, counts, means = vectorize.regions(path, 0.6)
    mask = (prob >= 0.6) & (prob != PROB_NODATA)
    labels, n = ndimage.label(mask)
    assert len(geoms) == n and counts.sum() == mask.sum()
    np.testing.assert_allclose(np.sort(shapely.area(geoms)), np.sort(counts * 9.0))
    expected = ndimage.mean(prob, labels, range(1, n + 1))
    np.testing.assert_allclose(np.sort(means), np.sort(expected), rtol=1e-6)


def test_diagonal_pixels_are_separate_regions(tmp_path):
    prob = np.zeros((4, 4), np.float32)
    prob[0, 0] = prob[1, 1] = 0.9
    path = write_raster(tmp_path / "p.tif", prob, nodata=PROB_NODATA)
    geoms, counts, _ = vectorize.regions(path, 0.5)
    assert len(geoms) == 2 and list(counts) == [1, 1]


def test_empty_raster_gives_an_empty_layer(tmp_path):
    path = write_raster(tmp_path / "p.tif", np.zeros((20, 20), np.float32), nodata=PROB_NODATA)
    layer = vectorize.landslide_polygons(path, 2020, 0.5, 200.0, None)
    assert len(layer) == 0 and set(layer.fields) == {"year", "area_m2", "perimeter_m", "mean_prob"}


@pytest.mark.parametrize("strip", [1024, 5, 1])
def test_small_regions_are_dropped_before_polygonising(tmp_path, monkeypatch, strip):
    """Also when strips cut regions into pieces smaller than the minimum."""
    prob = blobs((120, 140), seed=5)
    path = write_raster(tmp_path / "p.tif", prob, nodata=PROB_NODATA)
    all_geoms, all_counts, _ = vectorize.regions(path, 0.55)
    monkeypatch.setattr(vectorize, "STRIP", strip)
    big_geoms, big_counts, _ = vectorize.regions(path, 0.55, min_pixels=20)
    assert len(big_counts) == sum(c >= 20 for c in all_counts) < len(all_counts)
    # each kept region still covers its own pixels (plus any holes below 20 px it had)
    assert sorted(big_counts) >= sorted(c for c in all_counts if c >= 20)
    layer = vectorize.landslide_polygons(path, 2020, 0.55, 20 * 9.0, None)
    assert sorted(layer.fields["area_m2"]) == sorted(c * 9.0 for c in big_counts)


@pytest.mark.parametrize("strip", [256, 11, 1])
def test_holes_below_the_minimum_are_filled_but_never_nodata(tmp_path, monkeypatch, strip):
    monkeypatch.setattr(vectorize, "STRIP", strip)
    prob = np.zeros((40, 40), np.float32)
    prob[5:35, 5:35] = 0.9
    prob[10:12, 10:12] = 0.1          # 4-pixel hole: filled
    prob[20:30, 20:30] = 0.1          # 100-pixel hole: kept
    prob[14:16, 25:27] = PROB_NODATA  # nodata hole: stays a hole
    path = write_raster(tmp_path / "p.tif", prob, nodata=PROB_NODATA)
    geoms, counts, means = vectorize.regions(path, 0.5, min_pixels=10)
    assert len(geoms) == 1 and len(geoms[0].interiors) == 2
    assert counts[0] == 30 * 30 - 100 - 4 and shapely.area(geoms[0]) == counts[0] * 9.0
    assert means[0] == pytest.approx((0.9 * (900 - 108) + 0.1 * 4) / counts[0])
    # a small pocket open to the raster edge is a notch, not a hole
    prob[0:2, 0:40] = 0.9
    prob[0:1, 20:22] = 0.1
    edge = write_raster(tmp_path / "edge.tif", prob, nodata=PROB_NODATA)
    geoms, counts, _ = vectorize.regions(edge, 0.5, min_pixels=10)
    assert counts.sum() == (prob >= 0.5).sum() + 4  # only the 4-pixel hole was filled


@pytest.mark.parametrize("blocks", [2, 3, 7])
def test_blocks_vectorised_apart_join_into_the_regions_of_one_pass(tmp_path, monkeypatch, blocks):
    """A distributed run vectorises blocks of rows on different workers: regions crossing a
    seam (blobs, a ring with a filled hole, a column spanning every block) come out as one
    polygon each, with the pixels, area and mean probability of a single pass."""
    monkeypatch.setattr(vectorize, "STRIP", 8)
    prob = blobs((96, 70), seed=7)
    prob[:, 60:62] = 0.9                      # spans every block
    prob[20:40, 30:50] = 0.95
    prob[29:31, 39:41] = 0.1                  # a 4-pixel hole across the seam at row 32: filled
    codes = probability.encode(prob, prob != PROB_NODATA)
    tf = Affine(3.0, 0.0, 500000.0, 0.0, -3.0, 4000000.0)
    path = write_raster(tmp_path / "p.tif", codes, transform=tf, nodata=probability.NODATA)
    whole = canonical(*vectorize.regions(path, 0.55, min_pixels=10))
    parts = [vectorize.vectorise_block(path, 0.55, 10, rows) for rows in vectorize.block_rows(96, 70, blocks)]
    assert 1 < len(parts) <= blocks and all(p.row0 % 8 == 0 for p in parts)
    joined = canonical(*vectorize.merge_blocks(parts, tf, 10))
    assert len(joined[0]) == len(whole[0]) > 5
    assert (shapely.area(shapely.symmetric_difference(whole[0], joined[0])) < 1e-6).all()
    np.testing.assert_allclose(shapely.area(joined[0]), joined[1] * 9.0)
    assert (whole[1] == joined[1]).all()
    np.testing.assert_allclose(whole[2], joined[2], rtol=1e-9)
    assert (shapely.get_type_id(joined[0]) == 3).all() and shapely.is_valid(joined[0]).all()


def test_eight_bit_probabilities_threshold_at_their_code(tmp_path):
    """Codes are p × 254: a pixel is a landslide when its code's probability reaches the threshold."""
    codes = np.array([[126, 127, 128, 255]], np.uint8)          # 0.496, 0.5, 0.504, nodata
    assert probability.landslide(codes, 0.5, 255).tolist() == [[False, True, True, False]]
    assert probability.threshold_value(0.5, np.uint8) == 127
    assert probability.threshold_value(0.501, np.uint8) == 128
    assert probability.encode(np.array([0.0, 0.5, 1.0, 0.3]), np.array([True, True, True, False])).tolist() == \
        [0, 127, 254, 255]
    path = write_raster(tmp_path / "p.tif", np.repeat(codes, 3, axis=0), nodata=255)
    geoms, counts, means = vectorize.regions(path, 0.5)
    assert list(counts) == [6] and means[0] == pytest.approx((127 + 128) / 2 / 254)


@pytest.mark.parametrize("opencv,osgeo", [(False, False), (True, False), (False, True)])
def test_every_labeller_and_polygoniser_gives_the_same_regions(tmp_path, monkeypatch, opencv, osgeo):
    """OpenCV or scipy labelling, GDAL's bindings or rasterio polygonising (a worker without
    QGIS' GDAL bindings or OpenCV), in one thread or four: the same regions."""
    prob = blobs((200, 130), seed=11)
    path = write_raster(tmp_path / "p.tif", probability.encode(prob, prob != PROB_NODATA), nodata=255)
    reference = canonical(*vectorize.regions(path, 0.55, min_pixels=6, threads=1))
    if not opencv:
        monkeypatch.setattr(vectorize, "cv2", None)
    monkeypatch.setattr(vectorize, "_OSGEO", osgeo and vectorize._OSGEO)
    monkeypatch.setattr(vectorize, "STRIP", 16)
    for threads in (1, 4):
        other = canonical(*vectorize.regions(path, 0.55, min_pixels=6, threads=threads))
        assert len(other[0]) == len(reference[0]) > 10
        assert (shapely.area(shapely.symmetric_difference(reference[0], other[0])) < 1e-6).all()
        assert (other[1] == reference[1]).all()
        np.testing.assert_allclose(other[2], reference[2], rtol=1e-9)
    assert not list(tmp_path.glob("*.labels.tif")) and not list(tmp_path.glob("*.regions.tif"))
