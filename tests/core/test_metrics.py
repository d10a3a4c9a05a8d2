import math

import numpy as np
import pytest
import shapely

from conftest import write_raster
from landslide_mapper.core.inventory.metrics import PixelScores, pixel_scores


def test_hand_counted_confusion(tmp_path):
    # 10×10 grid of 3 m pixels starting at (300000, 3100000); left column is nodata
    grid = np.zeros((10, 10), np.float32)
    grid[:, 0] = -1
    path = write_raster(tmp_path / "g.tif", grid, nodata=-1)
    x0, y0 = 300000.0, 3100000.0
    px = lambda c0, r0, c1, r1: shapely.box(x0 + 3 * c0, y0 - 3 * r1, x0 + 3 * c1, y0 - 3 * r0)
    reference = np.array([px(0, 0, 4, 2)])            # 8 px, 2 of them in the nodata column
    predicted = np.array([px(2, 0, 6, 2)])            # 8 px
    s = pixel_scores(path, predicted, reference)
    assert (s.tp, s.fp, s.fn, s.tn) == (4, 4, 2, 90 - 10)
    assert s.precision == 0.5 and s.recall == pytest.approx(4 / 6)
    assert s.f1 == pytest.approx(2 * 4 / (8 + 4 + 2)) and s.iou == pytest.approx(4 / 10)
    expected_mcc = (4 * 80 - 4 * 2) / math.sqrt(8 * 6 * 84 * 82)
    assert s.mcc == pytest.approx(expected_mcc)


def test_degenerate_scores_are_nan_not_errors():
    s = PixelScores(0, 0, 0, 100)
    assert math.isnan(s.precision) and math.isnan(s.f1) and math.isnan(s.mcc)


def test_grid_for_bounds_snaps_outwards_to_pixel_multiples():
    from landslide_mapper.core.inventory.metrics import grid_for_bounds

    g = grid_for_bounds((-7.5, 1.0, 10.0, 9.1), 3.0)
    assert g.bounds == (-9.0, 0.0, 12.0, 12.0)
    assert (g.width, g.height) == (7, 4)
    with pytest.raises(ValueError):
        grid_for_bounds((0, 0, 1, 1), 0.0)


def test_pixel_scores_on_grid_with_area_and_windows(monkeypatch):
    from landslide_mapper.core.inventory import metrics
    from landslide_mapper.core.inventory.metrics import grid_for_bounds, pixel_scores_on_grid

    grid = grid_for_bounds((0, 0, 10, 10), 1.0)                 # 100 pixels
    predicted = np.array([shapely.box(0, 0, 5, 10)])            # left half, 50 px
    reference = np.array([shapely.box(0, 0, 10, 5)])            # bottom half, 50 px
    area = shapely.box(0, 0, 10, 8)                             # rows with centre y < 8: 80 px
    for window in (1024, 3):
        monkeypatch.setattr(metrics, "WINDOW", window)
        s = pixel_scores_on_grid(grid, predicted, reference, area=area)
        # tp: x<5, y<5 = 25; fp: x<5, 5<y<8 = 15; fn: x>5, y<5 = 25; tn: x>5, 5<y<8 = 15
        assert (s.tp, s.fp, s.fn, s.tn) == (25, 15, 25, 15)
