"""The real-texture scene generator: real outlines composited onto real imagery.

Uses ../shared/data (the backgrounds and the Bhuyan inventories); skips without it.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely

from conftest import shared
from landslide_mapper.core.training.corpus import backgrounds
from landslide_mapper.core.training.corpus.composite import (CompositeManifest, CompositeSpec, generate_composite,
                                                             load_or_generate)
from landslide_mapper.core.errors import InputError
from landslide_mapper.core.training.corpus.outlines import load_outlines
from landslide_mapper.core.training.corpus.pretrained import (HELD_OUT, HELD_OUT_PLACE, OTHER_GROUNDS,
                                                              OTHER_GROUNDS_VALIDATION, REAL_STAGES, REAL_VALIDATION,
                                                              VISUAL_SCENES)
from landslide_mapper.core.geodata.vector_io import list_layers, read_layer

SMALL = dict(size=(160, 160), years=(2016, 2017, 2018), event_density=60.0, background_rate=6.0,
             nodata_probability=0.0)


@pytest.fixture(scope="module")
def data_root():
    shared("mountain_backgrounds")
    return shared("bhuyan2023_inventories").parent


@pytest.fixture(scope="module")
def scene(data_root, tmp_path_factory):
    spec = CompositeSpec("naip", 5, **SMALL)
    return generate_composite(tmp_path_factory.mktemp("scene"), spec, data_root)


@pytest.fixture(scope="module")
def bare(data_root, tmp_path_factory):
    """The same scene without any landslide: the background's own look (and look-alikes)."""
    spec = CompositeSpec("naip", 5, **{**SMALL, "event_density": 0.0, "background_rate": 0.0})
    return generate_composite(tmp_path_factory.mktemp("bare"), spec, data_root)


def read(path):
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float64), ds.transform, ds.descriptions, ds.res


def burn(geoms, shape, transform):
    geoms = [g for g in geoms if not g.is_empty]
    if not geoms:
        return np.zeros(shape, bool)
    return rasterio.features.rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform,
                                       dtype="uint8").astype(bool)


def test_a_scene_is_a_pure_function_of_its_spec(scene, data_root, tmp_path):
    again = generate_composite(tmp_path, scene.spec, data_root)
    for year in scene.spec.years:
        assert np.array_equal(read(scene.rasters[year])[0], read(again.rasters[year])[0])
        a = read_layer(scene.truth_path, f"landslides_{year}").geometries
        b = read_layer(again.truth_path, f"landslides_{year}").geometries
        assert len(a) == len(b) and all(x.equals(y) for x, y in zip(a, b))
    other = generate_composite(tmp_path / "other", dataclasses.replace(scene.spec, seed=6), data_root)
    assert not np.array_equal(read(scene.rasters[2017])[0], read(other.rasters[2017])[0])
    # a manifest that matches is reused, not regenerated
    assert load_or_generate(tmp_path, scene.spec, data_root).rasters == again.rasters


def test_the_scene_files(scene):
    img, t, desc, res = read(scene.rasters[2017])
    assert img.shape == (4, 160, 160) and desc == ("Blue", "Green", "Red", "NIR") and res == (3.0, 3.0)
    assert 0 < np.median(img[2]) < 3000                      # surface reflectance × 10,000
    layers = set(list_layers(scene.truth_path))
    for year in scene.spec.years:
        assert {f"landslides_{year}", f"labels_{year}", f"scars_{year}"} <= layers
    assert "new_2016" not in layers and {"new_2017", "new_2018"} <= layers
    assert scene.counts[2017] > scene.counts[2016]          # the event year
    again = CompositeManifest.load(scene.directory)
    assert again.spec == scene.spec and again.rasters == scene.rasters


def test_labels_are_exactly_what_was_burned_in(scene, bare):
    """Inside the truth the image is scar, not ground; away from every scar (healing ones
    included) it is the bare background, pixel for pixel."""
    year = 2017
    img, t, _, _ = read(scene.rasters[year])
    ground, _, _, _ = read(bare.rasters[year])
    truth = read_layer(scene.truth_path, f"landslides_{year}").geometries
    scars = read_layer(scene.truth_path, f"scars_{year}").geometries
    shape = img.shape[1:]
    inside = burn(truth, shape, t)
    near_scar = burn([g.buffer(18.0) for g in scars], shape, t)      # 2 px of soft edge, 3 px of blur
    assert inside.sum() > 500
    assert np.array_equal(img[:, ~near_scar], ground[:, ~near_scar])
    changed = np.abs(img - ground).sum(0) > 0.15 * ground.sum(0)
    assert changed[inside].mean() > 0.8                               # what is labelled was burned in
    # truth is what is visible: every truth polygon lies in a scar part
    assert shapely.union_all(scars).buffer(0.01).contains(shapely.union_all(truth))


@pytest.fixture(scope="module")
def dry(data_root, tmp_path_factory):
    """A dried and tinted Dolomites scene and the same ground without landslides."""
    spec = CompositeSpec("dolomites", 5, **SMALL, bare_ground=1.0, ground_tint=0.3)
    return (generate_composite(tmp_path_factory.mktemp("dry"), spec, data_root),
            generate_composite(tmp_path_factory.mktemp("dry_bare"), dataclasses.replace(
                spec, event_density=0.0, background_rate=0.0), data_root))


def test_labels_are_exactly_what_was_burned_in_on_dried_tinted_ground(dry, tmp_path, data_root):
    """Drying and tinting change the ground before any scar is burned in, the same way every
    year and in every run: the labels are still exactly the scars."""
    test_labels_are_exactly_what_was_burned_in(*dry)
    again = generate_composite(tmp_path, dry[0].spec, data_root)
    assert np.array_equal(read(dry[0].rasters[2018])[0], read(again.rasters[2018])[0])
    b, g, r, nir = read(dry[1].rasters[2016])[0]
    ndvi = (nir - r) / np.maximum(nir + r, 1)
    assert np.median(ndvi[b > 0]) < 0.3                                    # the forest is gone
    ob, _, orr, _ = read(plain_twin(dry[1].spec, tmp_path / "plain", data_root).rasters[2016])[0]
    assert np.median(ob[ob > 0]) > np.median(orr[ob > 0])                 # bluish forest as imaged,
    assert np.median(r[b > 0]) > np.median(b[b > 0])                      # warm dry ground


def plain_twin(spec, folder, data_root):
    return generate_composite(folder, dataclasses.replace(spec, bare_ground=0.0, ground_tint=0.0), data_root)


def test_every_scene_has_a_work_folder_of_its_own():
    """A dried or tinted scene shares its twin's seed (the same place) but never its folder."""
    from landslide_mapper.core.training.corpus.pretrained import scene_folder_name

    specs = TRAIN + VALIDATION + [HELD_OUT, HELD_OUT_PLACE]
    names = [scene_folder_name(s) for s in specs]
    assert len(set(names)) == len(names)
    assert scene_folder_name(REAL_VALIDATION[0].spec) == "composite_everest_31"     # old work folders reused


def test_strip_vegetation_dries_the_ground_and_keeps_its_relief(data_root):
    img = backgrounds.load_background("dolomites", 0, 3.0, (0, 0, 200, 200), data_root)
    refl, valid = img.reflectance, img.valid
    b, g, r, nir = refl
    ndvi = (nir - r) / np.maximum(nir + r, 1e-6)
    forest = valid & (ndvi > 0.6)
    assert forest.sum() > 1000
    out = backgrounds.strip_vegetation(refl, valid, 1.0, np.random.default_rng(1))
    assert np.array_equal(out, backgrounds.strip_vegetation(refl, valid, 1.0, np.random.default_rng(1)))
    ob, og, orr, onir = out
    dried = (onir - orr) / np.maximum(onir + orr, 1e-6)
    assert (dried[forest] < 0.3).mean() > 0.8                 # most vegetation is now soil and rock
    assert (dried[forest] > 0.33).mean() > 0.02               # scattered shrub clumps stay
    assert orr[forest].mean() > 1.5 * r[forest].mean()        # dry ground is brighter in red than forest

    def local(x):
        from scipy import ndimage
        m = x.mean(0)
        return m / ndimage.gaussian_filter(m, 4)
    corr = np.corrcoef(local(refl)[valid], local(out)[valid])[0, 1]
    assert corr > 0.5                                         # the relief's texture is kept
    assert backgrounds.strip_vegetation(refl, valid, 0.0, np.random.default_rng(1)) is refl
    assert not out[:, ~valid].any()


def test_tint_moves_the_grounds_colour_and_keeps_contrasts():
    rng = np.random.default_rng(0)
    refl = rng.uniform(0.02, 0.4, (4, 50, 50)).astype(np.float32)
    valid = np.ones((50, 50), bool)
    ratios = []
    for seed in range(20):
        out = backgrounds.tint(refl, valid, 0.3, np.random.default_rng(seed))
        gain = out / refl
        assert np.allclose(gain, gain[:, :1, :1], rtol=1e-4)  # one gain per band: contrasts kept
        ratios.append(gain[2, 0, 0] / gain[0, 0, 0])
    assert min(ratios) < 0.8 and max(ratios) > 1.25           # warmer and cooler grounds
    assert backgrounds.tint(refl, valid, 0.0, rng) is refl


def test_no_label_on_a_background_look_alike(scene, bare):
    """The background's own bare ground (fields, pond margins, roads) stays unlabelled."""
    year = 2018
    ground, t, _, _ = read(bare.rasters[year])
    b, g, r, nir = ground
    ndvi = (nir - r) / np.maximum(nir + r, 1)
    look_alike = (ndvi < 0.3) & (r > np.percentile(r, 60))                # bare and bright
    scars = read_layer(scene.truth_path, f"scars_{year}").geometries
    labels = read_layer(scene.truth_path, f"labels_{year}").geometries
    shape = ground.shape[1:]
    free = look_alike & ~burn(scars, shape, t)
    assert free.sum() > 100                                               # the background has look-alikes
    assert not (burn(labels, shape, t) & free).any()
    assert not read_layer(bare.truth_path, f"labels_{year}").geometries.size


def test_new_landslides_and_enlargements(scene):
    for year in (2017, 2018):
        new = read_layer(scene.truth_path, f"new_{year}")
        truth = shapely.union_all(read_layer(scene.truth_path, f"landslides_{year}").geometries)
        assert len(new) and set(new.fields["change"]) <= {"new", "enlarged"}
        for g in new.geometries:                                          # what is new is visible
            assert truth.buffer(0.01).contains(g)


def test_clouds_hide_labels_but_not_truth(data_root, tmp_path):
    spec = CompositeSpec("zion", 3, **{**SMALL, "cloud_probability": 1.0})
    m = generate_composite(tmp_path, spec, data_root)
    truth = read_layer(m.truth_path, "landslides_2018").geometries
    labels = read_layer(m.truth_path, "labels_2018").geometries
    assert shapely.union_all(labels).area < shapely.union_all(truth).area


@pytest.mark.parametrize("sensor,bands", [("rapideye", 5), ("visual", 3)])
def test_sensors(data_root, tmp_path, sensor, bands):
    m = generate_composite(tmp_path, CompositeSpec("everest", 2, sensor=sensor, size=(96, 96), years=(2016, 2017)),
                           data_root)
    img, _, desc, res = read(m.rasters[2017])
    assert img.shape[0] == bands
    if sensor == "rapideye":
        assert res == (5.0, 5.0) and desc[3] == "RedEdge"
    else:
        with rasterio.open(m.rasters[2017]) as ds:
            assert ds.dtypes[0] == "uint8" and [c.name for c in ds.colorinterp] == ["red", "green", "blue"]


def test_outline_sets_are_disjoint_places(data_root):
    train, bench = load_outlines("train", data_root), load_outlines("benchmark", data_root)
    assert len(train) > 10000 and len(bench) > 500
    assert not {s for s in bench.source if s.startswith("Nepal")} & set(train.source)
    # centred (simplification moves a centroid by centimetres), the tiniest slivers left out
    assert np.all(train.areas >= 120) and np.all(np.abs(shapely.get_x(shapely.centroid(train.shapes))) < 1.0)


TRAIN = [sc.spec for _, _, scenes in REAL_STAGES + (OTHER_GROUNDS,) for sc in scenes] + [
    sc.spec for sc in VISUAL_SCENES]
VALIDATION = [sc.spec for sc in REAL_VALIDATION + (OTHER_GROUNDS_VALIDATION,)]


def test_training_never_sees_the_benchmark():
    """The held-out background, the held-out place and the benchmark outline set are in no
    training or validation scene."""
    assert HELD_OUT.background not in {s.background for s in TRAIN + VALIDATION}
    assert {s.outlines for s in TRAIN + VALIDATION} == {"train"}
    assert HELD_OUT.outlines == HELD_OUT_PLACE.outlines == "benchmark"
    for s in TRAIN + VALIDATION:
        if s.background == HELD_OUT_PLACE.background:       # the same image: left of the held-out part
            assert s.region[2] <= HELD_OUT_PLACE.region[0]


def test_validation_places_are_in_no_training_scene(data_root):
    """Where training and validation share a background, their crops of it do not overlap."""
    from landslide_mapper.core.training.corpus.composite import _Scene

    crops = {id(s): _Scene(s, data_root).crop for s in TRAIN + VALIDATION}
    shared_backgrounds = {s.background for s in TRAIN} & {s.background for s in VALIDATION}
    assert shared_backgrounds == {"everest"}
    for t in TRAIN:
        for v in VALIDATION:
            if t.background == v.background:
                (x, y, w, h), (vx, vy, vw, vh) = crops[id(t)], crops[id(v)]
                assert x + w <= vx or vx + vw <= x or y + h <= vy or vy + vh <= y, (t, v)


def test_bad_specs():
    with pytest.raises(InputError, match="Unknown sensor"):
        CompositeSpec("naip", 1, sensor="landsat")
    with pytest.raises(InputError, match="Unknown background"):
        CompositeSpec("mars", 1)
    with pytest.raises(InputError, match="event year"):
        CompositeSpec("naip", 1, years=(2016, 2017), event_year=2020)
    with pytest.raises(InputError, match="bare_ground"):
        CompositeSpec("naip", 1, bare_ground=1.5)
    with pytest.raises(InputError, match="ground_tint"):
        CompositeSpec("naip", 1, ground_tint=-0.1)


def test_texture_scale_is_documented_per_background():
    assert backgrounds.get("naip").texture_scale(3.0) == pytest.approx(1.0)
    assert backgrounds.get("dolomites").texture_scale(3.0) == pytest.approx(0.6)
    assert backgrounds.get("zion").texture_scale(5.0) == pytest.approx(0.5)
