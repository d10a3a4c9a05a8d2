import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from landslide_mapper.core.errors import InputError
from landslide_mapper.core.mapping.tiling import TileGrid, axis_tiles


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 3000), tile=st.integers(16, 512), overlap_frac=st.floats(0, 0.49))
def test_every_pixel_is_kept_exactly_once_and_inside_its_tile(length, tile, overlap_frac):
    overlap = int(tile * overlap_frac)
    tiles = axis_tiles(length, tile, overlap)
    covered = np.zeros(length, int)
    for origin, start, stop in tiles:
        assert 0 <= origin and (origin + tile <= length or origin == 0)
        assert origin <= start < stop <= min(origin + tile, length)
        covered[start:stop] += 1
    assert (covered == 1).all()
    # centre-cropping: away from the raster edges a kept pixel is at least overlap//2 from the tile edge
    for origin, start, stop in tiles:
        if start > 0:
            assert start - origin >= overlap // 2
        if stop < length:
            assert origin + tile - stop >= overlap // 2


def test_last_tile_is_snapped_to_the_edge():
    tiles = axis_tiles(1000, 256, 32)
    assert tiles[-1][0] == 1000 - 256 and tiles[-1][2] == 1000
    assert axis_tiles(100, 256, 32) == [(0, 0, 100)]


def test_grid_counts_and_order():
    grid = TileGrid(700, 1000, 256, 32)
    rows = list(grid.tile_rows())
    assert len(grid) == sum(len(t) for _, t in rows) == len(grid.rows) * len(grid.cols)
    assert [t.col for t in rows[0][1]] == sorted(t.col for t in rows[0][1])


@pytest.mark.parametrize("tile,overlap", [(0, 0), (64, 64), (64, -1)])
def test_bad_geometry_is_refused(tile, overlap):
    with pytest.raises(InputError):
        TileGrid(100, 100, tile, overlap)


def test_apply_transform_maps_pixels_and_back_for_numbers_and_arrays():
    import numpy as np
    from rasterio.transform import Affine

    from landslide_mapper.core.geodata.raster import apply_transform

    t = Affine(3.0, 0.5, 600000.0, -0.25, -3.0, 5200000.0)    # rotated, as some rasters are
    assert apply_transform(t, 10, 20) == pytest.approx((600000.0 + 30 + 10, 5200000.0 - 2.5 - 60))
    cols, rows = np.array([0.0, 7.5, 4096.0]), np.array([0.0, 3.25, 2048.0])
    x, y = apply_transform(t, cols, rows)
    back = apply_transform(~t, x, y)
    np.testing.assert_allclose(back[0], cols, atol=1e-6)
    np.testing.assert_allclose(back[1], rows, atol=1e-6)
