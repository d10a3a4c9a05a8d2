"""Change evidence: a new part is kept only where the two images changed under it."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.transform import from_origin

from landslide_mapper.core.inventory import change_evidence as ce
from landslide_mapper.core.inventory.series import YearInventory
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.geodata.raster import YearRaster
from landslide_mapper.core.inventory.subtraction import SubtractionSettings, subtract_pair

CRS_UTM = CRS.from_epsg(32645)
X0, Y0 = 500_000.0, 3_000_000.0
FOREST = np.array([0.03, 0.05, 0.04, 0.35])      # B, G, R, NIR reflectance
SOIL = np.array([0.12, 0.14, 0.17, 0.22])
SNOW = np.array([0.80, 0.82, 0.83, 0.75])
DEBRIS = np.array([0.20, 0.21, 0.22, 0.26])


def box(col0, row0, col1, row1, px=3.0):
    return shapely.box(X0 + col0 * px, Y0 - row1 * px, X0 + col1 * px, Y0 - row0 * px)


def write(path, cover: np.ndarray, px: float = 3.0, gain: float = 1.0, nodata_box=None):
    """A 4-band uint16 image (reflectance × 10000) of per-pixel cover spectra."""
    data = np.clip(cover.transpose(2, 0, 1) * gain * 10000, 0, 65534).astype(np.uint16)
    rng = np.random.default_rng(1)
    data = (data + rng.integers(0, 40, data.shape)).astype(np.uint16)       # sensor noise
    if nodata_box is not None:
        r0, r1, c0, c1 = nodata_box
        data[:, r0:r1, c0:c1] = 65535
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=4,
                       dtype="uint16", crs=CRS_UTM, transform=from_origin(X0, Y0, px, px), nodata=65535) as ds:
        ds.write(data)
    return str(path)


def scene(n=120, base=FOREST):
    cover = np.empty((n, n, 4))
    cover[:] = base
    return cover


def inventory(year, geoms):
    geoms = np.array(geoms, dtype=object)
    return YearInventory(year, f"landslides_{year}", geoms, np.arange(1, len(geoms) + 1), CRS_UTM)


@pytest.fixture()
def pair(tmp_path):
    """2017: forest with a bare field; 2018 (brighter overall, as after a new sensor
    calibration): the same field, a new scar, a scar grown from an old one, and ground that
    had no data in 2017."""
    before, after = scene(), scene()
    for cover in (before, after):
        cover[10:25, 10:30] = SOIL                  # a bare field, there in both years
        cover[60:75, 10:25] = SOIL                  # an old scar ...
    after[75:90, 10:25] = SOIL                      # ... grown downslope in 2018
    after[40:55, 60:80] = SOIL                      # a new scar
    after[90:105, 80:100] = SOIL                    # a scar where 2017 had no data
    p17 = write(tmp_path / "2017.tif", before, nodata_box=(85, 110, 75, 105))
    p18 = write(tmp_path / "2018.tif", after, gain=1.25)
    maps = {2017: [box(10, 60, 25, 75)],
            2018: [box(10, 10, 30, 25), box(10, 60, 25, 90), box(60, 40, 80, 55), box(80, 90, 100, 105)]}
    return p17, p18, maps


def _evidence(p17, p18, maps):
    change = subtract_pair(inventory(2018, maps[2018]), inventory(2017, maps[2017]),
                           SubtractionSettings.for_pixel_size(3.0))
    with YearRaster(p17, 2017, "planetscope4") as r17, YearRaster(p18, 2018, "planetscope4") as r18:
        kept, aside = ce.confirm_changes([change], {2017: r17, 2018: r18},
                                         {y: np.array(g, dtype=object) for y, g in maps.items()},
                                         Reporter(on_log=LOG.append))
    return change, kept[0], aside[0]


LOG: list[str] = []


def _where(change, geom):
    return int(np.argmax(shapely.area(shapely.intersection(change.geometries, geom))))


def test_new_scar_and_enlargement_confirmed_unchanged_field_and_unseen_ground_set_aside(pair):
    p17, p18, maps = pair
    change, kept, aside = _evidence(p17, p18, maps)
    assert len(change) == 4 and len(kept) + len(aside) == 4
    confirmed = {kept.change[_where(kept, g)] for g in (box(60, 40, 80, 55), box(10, 75, 25, 90))}
    assert confirmed == {"new", "enlarged"}
    assert set(kept.fields["evidence"]) == {ce.CONFIRMED}
    verdicts = dict(zip([round(g.centroid.x) for g in aside.geometries], aside.fields["evidence"]))
    assert verdicts == {round(box(10, 10, 30, 25).centroid.x): ce.NO_CHANGE,
                        round(box(80, 90, 100, 105).centroid.x): ce.NOT_OBSERVED}
    # the scene-wide 25 % gain moved neither measure of the unchanged field
    field = _where(aside, box(10, 10, 30, 25))
    assert abs(aside.fields["brightness_change"][field]) < 0.05
    assert aside.fields["colour_change"][field] < 0.03
    new = _where(kept, box(60, 40, 80, 55))
    assert kept.fields["ndvi_change"][new] < -0.4           # forest to soil: NDVI fell
    assert kept.unconfirmed == 2 and kept.not_observed == 1
    summary = kept.summary()
    assert summary["unconfirmed_parts"] == 2 and summary["not_observed_parts"] == 1
    assert summary["new"] + summary["enlarged"] == 2
    assert "2018: 2 new or enlarged parts show a change in the images; 2 set aside (1 not observed in 2017" in LOG[-1]


def test_a_scar_darker_than_its_surroundings_counts_too(tmp_path):
    """Debris on snow darkens the ground: change in either direction is evidence."""
    before, after = scene(base=SNOW), scene(base=SNOW)
    after[40:60, 40:60] = DEBRIS
    p17, p18 = write(tmp_path / "a.tif", before), write(tmp_path / "b.tif", after)
    maps = {2017: [], 2018: [box(40, 40, 60, 60)]}
    _change, kept, aside = _evidence(p17, p18, maps)
    assert len(kept) == 1 and len(aside) == 0
    assert kept.fields["brightness_change"][0] < -ce.THRESHOLDS["brightness_change"]
    # snow passes the cloud tests in both years: white in T−1 and still around the debris in T
    assert kept.fields["cover_before"][0] > 0.9 and kept.fields["cover_now"][0] >= ce.COVERED


def test_years_on_different_grids_are_compared_on_their_own(tmp_path):
    """T−1 at 5 m, T at 3 m: the contrasts are means, measured on each year's own grid."""
    n5 = 72                                         # 72 × 5 m = 120 × 3 m
    before = scene(n5)
    before[6:15, 6:18] = SOIL                       # the field again, on the 5 m grid
    after = scene()
    after[10:25, 10:30] = SOIL
    after[40:55, 60:80] = SOIL
    p17 = write(tmp_path / "a.tif", before, px=5.0)
    p18 = write(tmp_path / "b.tif", after)
    maps = {2017: [], 2018: [box(10, 10, 30, 25), box(60, 40, 80, 55)]}
    _change, kept, aside = _evidence(p17, p18, maps)
    assert len(kept) == 1 and kept.geometries[0].equals(box(60, 40, 80, 55))
    assert list(aside.fields["evidence"]) == [ce.NO_CHANGE]


def test_a_part_without_surrounding_ground_is_kept_unmeasured(tmp_path):
    """Nothing around the part but other landslides: no ring, no verdict against it."""
    before, after = scene(40), scene(40)
    after[:, :] = SOIL
    p17, p18 = write(tmp_path / "a.tif", before), write(tmp_path / "b.tif", after)
    maps = {2017: [box(0, 0, 40, 18)], 2018: [box(0, 0, 40, 40)]}
    _change, kept, aside = _evidence(p17, p18, maps)
    assert len(aside) == 0 and list(kept.fields["evidence"]) == [ce.UNMEASURED]


def test_rgb_images_are_judged_on_their_three_bands(tmp_path):
    before, after = scene(), scene()
    after[40:55, 60:80] = SOIL
    paths = []
    for name, cover in (("a.tif", before), ("b.tif", after)):
        rgb = cover[..., [2, 1, 0]]
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=120, height=120, count=3, dtype="uint8",
                           crs=CRS_UTM, transform=from_origin(X0, Y0, 3.0, 3.0)) as ds:
            ds.write(np.clip(rgb.transpose(2, 0, 1) * 600, 0, 255).astype(np.uint8))
        paths.append(str(tmp_path / name))
    change = subtract_pair(inventory(2018, [box(60, 40, 80, 55), box(10, 10, 30, 25)]), inventory(2017, []),
                           SubtractionSettings.for_pixel_size(3.0))
    with YearRaster(paths[0], 2017, "rgb") as a, YearRaster(paths[1], 2018, "rgb") as b:
        assert ce.common_channels(b, a) == ["B", "G", "R"]
        evidence = ce.measure(change, b, a, change.geometries)
    assert np.isnan(evidence.measures["ndvi_change"]).all()
    by_x = dict(zip([round(g.centroid.x) for g in change.geometries], evidence.verdict))
    assert by_x[round(box(60, 40, 80, 55).centroid.x)] == ce.CONFIRMED
    assert by_x[round(box(10, 10, 30, 25).centroid.x)] == ce.NO_CHANGE


CLOUD = np.array([0.42, 0.43, 0.45, 0.47])
SANDSTONE = np.array([0.20, 0.25, 0.33, 0.38])


def test_cloud_like_pixels_follow_fmask_visible_tests():
    covers = np.stack([FOREST, SOIL, SANDSTONE, CLOUD, SNOW])
    data = {c: covers[:, i].astype(np.float32) for i, c in enumerate(("B", "G", "R", "NIR"))}
    assert ce.cloud_like(data).tolist() == [False, False, False, True, True]
    assert ce.cloud_like({c: data[c] for c in ("G", "R", "NIR")}) is None       # no blue: no test
    assert ce.covered_then([0.9, 0.9, 0.2, np.nan, 0.9, 0.9], [0.1, 0.9, 0.1, 0.1, np.nan, 0.1],
                           [3.0, 3.0, 3.0, 3.0, 3.0, 1.3]).tolist() == [True, False, False, False, False, False]


def test_a_scar_hidden_by_cloud_the_year_before_is_not_observed(tmp_path):
    """Under a cloud in T−1 the map could not see an old scar; in T it looks new, and the
    cloud's going reads as a strong change: nobody can date it, so it is set aside."""
    before, after = scene(), scene()
    before[40:55, 60:80] = SOIL                     # the scar was already there ...
    before[25:75, 45:100] = CLOUD                   # ... under a cloud
    after[40:55, 60:80] = SOIL
    after[40:55, 10:30] = SOIL                      # a truly new scar in clear sky
    p17, p18 = write(tmp_path / "a.tif", before), write(tmp_path / "b.tif", after)
    maps = {2017: [], 2018: [box(60, 40, 80, 55), box(10, 40, 30, 55)]}
    _change, kept, aside = _evidence(p17, p18, maps)
    assert len(kept) == 1 and kept.geometries[0].equals(box(10, 40, 30, 55))
    assert list(aside.fields["evidence"]) == [ce.NOT_OBSERVED]
    assert aside.fields["cover_before"][0] > 0.9 and aside.fields["cover_now"][0] < 0.1
    assert aside.fields["ring_dimming"][0] > 5                # an opaque cloud over forest
    assert "1 set aside (1 not observed in 2017, 1 of them under cloud or snow then, 0 with no change" in LOG[-1]
    assert aside.fields["seen_before"][0] == 1.0          # valid pixels: it was the cloud that hid it
