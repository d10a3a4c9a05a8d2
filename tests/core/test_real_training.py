"""Training on composited real-texture scenes, end to end: pretrain (validation by place) →
fine-tune on a corrected half with a reviewed area → map with uncertainty; the pixel
size record; the base-versus-new comparison and the not-better path; reducing a
checkpoint to R, G, B. Real (tiny) TensorFlow training; ../shared/data for the scenes."""
from __future__ import annotations

import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import NO_TRAINING  # noqa: E402

keras = pytest.importorskip("keras", reason=NO_TRAINING)
import rasterio  # noqa: E402
import shapely  # noqa: E402

from conftest import shared  # noqa: E402
from landslide_mapper.core.training import nets  # noqa: E402
from landslide_mapper.core.training.checkpoint import load_checkpoint  # noqa: E402
from landslide_mapper.core.training.corpus.composite import CompositeSpec, generate_composite  # noqa: E402
from landslide_mapper.core.jobs.specs import InferenceJob, TrainingSource, TrainJob, YearInput  # noqa: E402
from landslide_mapper.core.mapping.job import run_inference  # noqa: E402
from landslide_mapper.core.mapping.model import OnnxModel  # noqa: E402
from landslide_mapper.core.progress import Reporter  # noqa: E402
from landslide_mapper.core.training.loop import run_training  # noqa: E402
from landslide_mapper.core.geodata.vector_io import VectorLayer, list_layers, write_geopackage  # noqa: E402

TINY = dict(base_filters=4, patch_size=64, steps=4, batch_size=4, loss="bce", learning_rate=1e-3)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    shared("mountain_backgrounds")
    root = shared("bhuyan2023_inventories").parent
    tmp = tmp_path_factory.mktemp("scenes")
    common = dict(size=(128, 128), event_density=80.0, background_rate=10.0, nodata_probability=0.0)
    train = generate_composite(tmp / "train", CompositeSpec("naip", 7, years=(2016, 2017), **common), root)
    val = generate_composite(tmp / "val", CompositeSpec("zion", 8, years=(2017,), **common), root)
    return train, val


def sources(m, split="auto", reviewed=None):
    return [TrainingSource(raster=p, labels=m.truth_path, labels_layer=f"labels_{y}", year=y, split=split,
                           region=f"{m.spec.background} {m.spec.seed}", reviewed=reviewed)
            for y, p in sorted(m.rasters.items())]


def reviewed_west(m, tmp_path):
    """A reviewed-area GeoPackage covering the western half of scene ``m``."""
    with rasterio.open(m.rasters[min(m.rasters)]) as ds:
        x0, y0, x1, y1 = ds.bounds
        wkt = ds.crs.to_wkt()
    reviewed = tmp_path / "reviewed.gpkg"
    write_geopackage(reviewed, {"reviewed": VectorLayer(np.array([shapely.box(x0, y0, (x0 + x1) / 2, y1)],
                                                                 dtype=object), {}, wkt)})
    return reviewed


@pytest.fixture(scope="module")
def pretrained(scenes, tmp_path_factory):
    train, val = scenes
    out = tmp_path_factory.mktemp("ckpt")
    logs = []
    result = run_training(TrainJob(sources=sources(train) + sources(val, "validation"), output_dir=str(out),
                                   name="stage1", calibrate_threshold=False, **TINY), Reporter(on_log=logs.append))
    return result, logs


def test_pretraining_validates_by_place_and_records_the_pixel_size(pretrained):
    result, logs = pretrained
    ckpt = load_checkpoint(result.checkpoint)
    stage = ckpt.lineage[-1]
    assert stage["split"] == "by place" and stage["pixel_size_m"] == [3.0, 3.0]
    assert ckpt.info["pixel_size_m"] == [3.0, 3.0]
    assert OnnxModel(ckpt.onnx_path).metadata.pixel_size == [3.0, 3.0]
    assert "pixel size trained on | 3 m" in (ckpt.folder / "MODEL_CARD.md").read_text()
    assert any(m.startswith("Validation by place") for m in logs)
    assert result.improved is None and result.base_validation is None          # nothing to compare with


def test_finetune_on_a_corrected_half_then_map_with_review_areas(scenes, pretrained, tmp_path):
    train, _ = scenes
    reviewed = reviewed_west(train, tmp_path)
    logs = []
    result = run_training(TrainJob(sources=sources(train, reviewed=str(reviewed)), output_dir=str(tmp_path),
                                   name="stage2", base_checkpoint=pretrained[0].checkpoint, hard_negative_weight=5.0,
                                   **{k: v for k, v in TINY.items() if k != "base_filters"}),
                          Reporter(on_log=logs.append))
    ckpt = load_checkpoint(result.checkpoint)
    stage = ckpt.lineage[-1]
    assert set(result.base_validation) == {"precision", "recall", "f1", "iou"}
    assert stage["base_validation"] == result.base_validation and stage["improved"] == result.improved
    assert "hard_negative_pixels" in stage and stage["augment"] == "strong"       # few patches
    assert any("Base checkpoint on the validation patches" in m for m in logs)
    assert any("deleted false alarms" in m for m in logs)
    card = (ckpt.folder / "MODEL_CARD.md").read_text()
    assert "its base on the same validation patches" in card
    # map with it: uncertainty and review areas
    res = run_inference(InferenceJob(years=[YearInput(y, p) for y, p in sorted(train.rasters.items())],
                                     model=result.checkpoint, output_dir=str(tmp_path / "runs"),
                                     uncertainty=True, review_areas=2))
    assert {"review_2016", "review_2017", "landslides_2017", "new_2017"} <= set(list_layers(res.geopackage))


def test_finetune_keeps_the_base_on_unreviewed_ground_when_asked(scenes, pretrained, tmp_path):
    """Anchor patches from the unreviewed (eastern) half carry the base's mapping; their drift
    is reported either way, and with a weight they are trained on."""
    train, _ = scenes
    reviewed = reviewed_west(train, tmp_path)
    runs = {}
    for weight in (0.0, 0.5):
        logs = []
        result = run_training(TrainJob(sources=sources(train, reviewed=str(reviewed)), output_dir=str(tmp_path),
                                       name=f"w{weight}", base_checkpoint=pretrained[0].checkpoint,
                                       distill_weight=weight, calibrate_threshold=False,
                                       **{k: v for k, v in TINY.items() if k != "base_filters"}),
                              Reporter(on_log=logs.append))
        runs[weight] = (result, logs)
        drift = result.unreviewed
        # the eastern 64 px column of each 128 px year: three half-overlapping cells a year, two years,
        # as many as there are training patches
        assert drift["patches"] == min(6, 2 * math.ceil(result.patches["train"] / 2))
        assert drift["weight"] == weight
        assert drift["trained_on"] == (math.ceil(result.base_validation["f1"] * drift["patches"]) if weight else 0)
        assert 0.0 <= drift["agreement_f1"] <= 1.0
        ckpt = load_checkpoint(result.checkpoint)
        assert ckpt.lineage[-1]["unreviewed"] == drift and ckpt.lineage[-1]["distill_weight"] == weight
        assert "patches of unreviewed ground" in (ckpt.folder / "MODEL_CARD.md").read_text()
        assert any("patches of unreviewed ground the new checkpoint maps" in m for m in logs)
        assert any(m.startswith("Training ") and "rounds of" in m for m in logs)
    keeps = "so the new checkpoint keeps the base's mapping"
    assert not any(keeps in m for m in runs[0.0][1])
    assert runs[0.5][0].base_validation["f1"] > 0                 # so the anchors were trained on
    assert any(keeps in m for m in runs[0.5][1])


def test_a_finetune_that_is_not_better_is_said_so(scenes, pretrained, tmp_path):
    train, val = scenes
    result = run_training(TrainJob(sources=sources(train) + sources(val, "validation"), output_dir=str(tmp_path),
                                   name="same", base_checkpoint=pretrained[0].checkpoint, calibrate_threshold=False,
                                   **{**{k: v for k, v in TINY.items() if k != "base_filters"},
                                      "learning_rate": 1e-12, "steps": 1}))
    assert result.improved is False
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.lineage[-1]["improved"] is False
    assert "**not better**" in (ckpt.folder / "MODEL_CARD.md").read_text()


def test_reducing_a_checkpoint_to_rgb(scenes, pretrained, tmp_path):
    train, val = scenes
    base = load_checkpoint(pretrained[0].checkpoint)
    result = run_training(TrainJob(sources=sources(train) + sources(val, "validation"), output_dir=str(tmp_path),
                                   name="rgb", base_checkpoint=str(base.folder), channels=["R", "G", "B"],
                                   **{k: v for k, v in TINY.items() if k != "base_filters"}))
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.channels == ["R", "G", "B"] and ckpt.lineage[-1]["channels_from"] == base.channels
    idx = [base.channels.index(c) for c in "RGB"]
    assert ckpt.info["mean"] == [base.info["mean"][i] for i in idx]
    assert OnnxModel(ckpt.onnx_path).metadata.channels == ["R", "G", "B"]


def test_transferred_weights_equal_the_full_network_without_the_dropped_bands():
    src = nets.build_model("adsms_unet", 5, 4)
    dst = nets.build_model("adsms_unet", 3, 4)
    keep = [2, 1, 0]
    sliced = nets.transfer_weights(src, dst, keep)
    assert sliced == ["enc1_conv1", "pyr2_conv1", "pyr4_conv1", "pyr8_conv1"]      # the layers reading the image
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 5)).astype(np.float32)
    x_full = np.zeros_like(x)
    x_full[..., keep] = x[..., keep]
    full = keras.Model(src.input, src.get_layer("prob").output)(x_full, training=False)
    small = keras.Model(dst.input, dst.get_layer("prob").output)(x[..., keep], training=False)
    assert np.allclose(np.asarray(full), np.asarray(small), atol=1e-5)


def test_training_jobs_with_the_new_fields_round_trip(scenes):
    from landslide_mapper.core.errors import InputError
    from landslide_mapper.core.jobs.specs import job_from_json, job_to_json

    train, _ = scenes
    job = TrainJob(sources=sources(train, "validation"), output_dir="o", name="n", steps=10, hard_negative_weight=2.0)
    assert job_from_json(job_to_json(job)) == job
    assert json.loads(job_to_json(job))["sources"][0]["split"] == "validation"
    for bad, match in ((dict(steps=0), "Steps"), (dict(hard_negative_weight=0.5), "hard-negative"),
                       (dict(distill_weight=-1.0), "unreviewed ground")):
        with pytest.raises(InputError, match=match):
            TrainJob(sources=sources(train), output_dir="o", name="n", **bad).validate()
    with pytest.raises(InputError, match="split must be"):
        TrainJob(sources=[TrainingSource("a.tif", "b.gpkg", split="test")], output_dir="o", name="n").validate()
