"""Real (tiny) training and fine-tuning, the checkpoint they write, and its use for mapping."""
from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from conftest import NO_TRAINING, write_raster
from landslide_mapper.core.mapping import probability
from landslide_mapper.core.training.checkpoint import load_checkpoint
from landslide_mapper.core.demo import SceneSpec, generate_scene
from landslide_mapper.core.errors import Cancelled, InputError, ModelError
from landslide_mapper.core.jobs.specs import InferenceJob, TrainingSource, TrainJob, YearInput, job_from_json, job_to_json
from landslide_mapper.core.mapping.model import OnnxModel
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.training.weight_storage import compact_checkpoint

keras = pytest.importorskip("keras", reason=NO_TRAINING)

from landslide_mapper.core.training.loop import run_training  # noqa: E402  (after the skip)

TINY = dict(base_filters=4, patch_size=64, epochs=2, max_steps_per_epoch=2, batch_size=4, augment=True)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    return generate_scene(d, SceneSpec(size=192, years=(2016, 2017), seed=5))


def sources(scene, year=2017, **kw):
    return [TrainingSource(raster=scene.rasters[year], labels=scene.truth_path, labels_layer=f"landslides_{year}",
                           region="Test valley", year=year, **kw)]


@pytest.fixture(scope="module")
def trained(scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    events = []
    job = TrainJob(sources=sources(scene), output_dir=str(out), name="stage1", trigger="test storm", **TINY)
    result = run_training(job, Reporter(on_event=lambda name, **kw: events.append((name, kw))))
    return result, events


def test_training_writes_a_complete_self_describing_checkpoint(trained, scene):
    result, events = trained
    ckpt = load_checkpoint(result.checkpoint)
    assert sorted(p.name for p in ckpt.folder.iterdir()) == ["MODEL_CARD.md", "checkpoint.json", "model.keras",
                                                             "model.onnx"]
    assert ckpt.channels == ["B", "G", "R", "NIR", "NDVI"] and ckpt.info["architecture"]["name"] == "adsms_unet"
    (stage,) = ckpt.lineage
    assert stage["mode"] == "train" and stage["base_id"] is None and stage["region"] == "Test valley"
    assert stage["years"] == [2017] and stage["trigger"] == "test storm"
    assert stage["patches"]["train"] > 0 and stage["patches"]["validation"] > 0
    assert set(stage["validation"]) >= {"precision", "recall", "f1", "iou", "loss"}
    epochs = [kw for e, kw in events if e == "epoch"]       # (warnings are events too)
    assert len(epochs) == 2 and epochs[0]["epoch"] == 1
    # the ONNX file carries the same facts, so it alone is enough for mapping
    meta = OnnxModel(ckpt.onnx_path).metadata
    assert meta.channels == ckpt.channels and meta.mean == ckpt.info["mean"] and meta.lineage == ckpt.lineage
    assert meta.size_multiple == 16 and meta.layout == "NCHW"
    card = (ckpt.folder / "MODEL_CARD.md").read_text()
    assert "Test valley" in card and "B, G, R, NIR, NDVI" in card and ckpt.id in card
    assert result.onnx_max_abs_diff < 1e-4
    assert json.loads((ckpt.folder / "checkpoint.json").read_text())["lineage"][0]["validation"]["loss"] > 0


@pytest.fixture(scope="module")
def finetuned(trained, scene):
    base = Path(trained[0].checkpoint)
    before = digest(base)
    job = TrainJob(sources=sources(scene), output_dir=str(base.parent), name="stage1",
                   base_checkpoint=str(base), freeze="encoder", **{**TINY, "epochs": 1})
    return run_training(job), before


def test_finetune_appends_a_stage_and_leaves_the_base_untouched(trained, finetuned):
    base = Path(trained[0].checkpoint)
    result, before = finetuned
    assert digest(base) == before
    child = load_checkpoint(result.checkpoint)
    assert child.folder != base and child.name == child.folder.name == "stage1_2"
    assert [s["stage"] for s in child.lineage] == [1, 2]
    assert child.lineage[1]["base_id"] == load_checkpoint(base).id
    assert child.lineage[1]["mode"] == "finetune" and child.lineage[1]["freeze"] == "encoder"
    assert child.lineage[1]["years"] == [2017] and child.lineage[1]["region"] == "Test valley"
    assert child.info["mean"] == load_checkpoint(base).info["mean"]  # the base's normalisation is kept
    # the stored network is fully trainable again; freezing is a per-run choice
    assert all(layer.trainable for layer in child.load_keras().layers)


def test_onnx_export_matches_keras_through_tiled_inference(finetuned, scene, tmp_path):
    """Fine-tuned Keras network on a whole 128×128 raster == the mapping pipeline on it with
    one 128 px tile (export, metadata, normalisation and tiling all in the loop)."""
    from landslide_mapper.core.geodata.bands import build_channels
    from landslide_mapper.core.mapping.job import run_inference

    ckpt = load_checkpoint(finetuned[0].checkpoint)
    assert len(ckpt.lineage) == 2
    with rasterio.open(scene.rasters[2017]) as src:
        data = src.read(window=Window(32, 32, 128, 128))
        profile = dict(crs=src.crs, transform=src.window_transform(Window(32, 32, 128, 128)))
    path = write_raster(tmp_path / "crop.tif", data, **profile, nodata=None)
    refl = {b: data[i].astype(np.float32) / 10000 for i, b in enumerate(["B", "G", "R", "NIR"])}
    x = build_channels(refl, ckpt.channels)
    x = (x - np.array(ckpt.info["mean"], np.float32)[:, None, None]) / np.array(ckpt.info["std"], np.float32)[:, None, None]
    model = ckpt.load_keras()
    expected = np.asarray(model(x.transpose(1, 2, 0)[None], training=False)[0])[0, ..., 0]
    result = run_inference(InferenceJob(years=[YearInput(2017, str(path), "planetscope4")], model=str(ckpt.folder),
                                        output_dir=str(tmp_path / "runs"), tile_size=128, overlap=0))
    with rasterio.open(Path(result.run_dir) / result.years[0].probability) as ds:
        got = probability.as_probability(ds.read(1))     # 8-bit codes: p × 254, rounded
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) < 0.5 / 254 + 1e-4
    assert result.model_kind == "cascade"


def test_cancel_leaves_no_checkpoint_and_the_base_untouched(trained, scene, tmp_path):
    base = Path(trained[0].checkpoint)
    before = digest(base)
    stop = threading.Event()
    seen = []

    def on_progress(fraction, message):
        seen.append(message)
        if "step " in message:
            stop.set()  # the user presses Cancel during the first batch

    out = tmp_path / "out"
    job = TrainJob(sources=sources(scene), output_dir=str(out), name="never", base_checkpoint=str(base),
                   **{**TINY, "epochs": 5})
    with pytest.raises(Cancelled):
        run_training(job, Reporter(on_progress, cancel_event=stop))
    assert sum("step " in m for m in seen) == 1  # stopped at the next progress point
    assert list(out.iterdir()) == [] if out.exists() else True
    assert digest(base) == before


def test_checkpoint_for_another_band_count(trained, tmp_path):
    rgb = write_raster(tmp_path / "rgb.tif", np.full((3, 80, 80), 500, np.uint16))
    from conftest import polygons_gpkg
    labels = polygons_gpkg(tmp_path / "l.gpkg", [(10, 30, 10, 30)], tmp_path / "rgb.tif")
    job = TrainJob(sources=[TrainingSource(raster=str(rgb), labels=str(labels), bands="B=3,G=2,R=1")],
                   output_dir=str(tmp_path / "o"), name="x", base_checkpoint=trained[0].checkpoint, **TINY)
    with pytest.raises(InputError, match="NIR"):
        run_training(job)


def test_damaged_checkpoints_are_refused_with_the_reason(trained, tmp_path):
    good = Path(trained[0].checkpoint)
    cases = {}
    for name in ("truncated", "no_onnx", "no_info", "other_channels"):
        cases[name] = shutil.copytree(good, tmp_path / name)
    keras_file = cases["truncated"] / "model.keras"
    keras_file.write_bytes(keras_file.read_bytes()[:1000])
    (cases["no_onnx"] / "model.onnx").unlink()
    (cases["no_info"] / "checkpoint.json").unlink()
    info = json.loads((cases["other_channels"] / "checkpoint.json").read_text())
    info["channels"], info["mean"], info["std"] = ["B", "G", "R"], [0, 0, 0], [1, 1, 1]
    (cases["other_channels"] / "checkpoint.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match="corrupt.*model.keras"):
        load_checkpoint(cases["truncated"])
    with pytest.raises(ModelError, match="incomplete.*model.onnx is missing"):
        load_checkpoint(cases["no_onnx"])
    with pytest.raises(ModelError, match="checkpoint.json is missing"):
        load_checkpoint(cases["no_info"])
    with pytest.raises(ModelError, match="takes 5 channels but checkpoint.json lists 3"):
        load_checkpoint(cases["other_channels"]).load_keras()
    with pytest.raises(ModelError, match="corrupt"):  # mapping refuses it too, before loading anything
        OnnxModel(cases["truncated"])
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_a_raster_smaller_than_the_patch_gives_one_padded_patch_and_no_validation(tmp_path):
    img = write_raster(tmp_path / "small.tif", np.full((4, 40, 40), 500, np.uint16))
    from conftest import polygons_gpkg
    labels = polygons_gpkg(tmp_path / "l.gpkg", [(5, 20, 5, 20)], img)
    job = TrainJob(sources=[TrainingSource(raster=str(img), labels=str(labels))], output_dir=str(tmp_path / "o"),
                   name="x", **{**TINY, "patch_size": 64})
    with pytest.raises(InputError, match="Only 1 training patch"):
        run_training(job)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_train_job_round_trips_through_json_and_rejects_bad_fields(scene):
    job = TrainJob(sources=sources(scene), output_dir="out", name="n", base_checkpoint="base",
                   freeze="upto:enc2")
    again = job_from_json(job_to_json(job))
    assert again == job
    for bad, match in ((dict(name="a/b"), "name"), (dict(patch_size=100), "multiple of 16"),
                       (dict(loss="l2"), "Unknown loss"), (dict(freeze="half"), "Freeze"),
                       (dict(validation_fraction=1.0), "fraction"), (dict(sources=[]), "No training data")):
        with pytest.raises(InputError, match=match):
            TrainJob(**{**dict(sources=sources(scene), output_dir="out", name="n"), **bad}).validate()


def test_cli_train_then_finetune(scene, tmp_path):
    import os
    import subprocess
    import sys

    from landslide_mapper.core.jobs.events import parse_event

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "landslide_mapper", *map(str, args)], capture_output=True,
                              text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    labels = f"{scene.truth_path}|layername=landslides_2017"
    tiny = ["--base-filters", 4, "--patch-size", 64, "--epochs", 1, "--max-steps", 2, "--batch", 4]
    r = cli("train", "--raster", scene.rasters[2017], "--labels", labels, "--region", "CLI valley", "--year", 2017,
            "--output", tmp_path, "--name", "cli", "--jsonl", *tiny)
    assert r.returncode == 0, r.stderr[-3000:]
    events = [e for e in map(parse_event, r.stdout.splitlines()) if e]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "result" and "progress" in kinds and "epoch" in kinds
    ckpt = events[-1]["result"]["checkpoint"]
    assert load_checkpoint(ckpt).lineage[0]["region"] == "CLI valley"

    r = cli("finetune", "--checkpoint", ckpt, "--source", f"raster={scene.rasters[2017]};labels={labels};region=More",
            "--output", tmp_path, "--name", "cli", "--freeze", "upto:enc2", "--distill-weight", 0.5, *tiny[2:])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Checkpoint:" in r.stdout and "stage 2" in r.stdout
    lineage = load_checkpoint(tmp_path / "cli_2").lineage
    assert [s["region"] for s in lineage] == ["CLI valley", "More"] and lineage[-1]["distill_weight"] == 0.5

    r = cli("finetune", "--checkpoint", tmp_path / "missing", "--raster", scene.rasters[2017], "--labels", labels,
            "--output", tmp_path, "--name", "bad")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_cancel_while_writing_discards_the_checkpoint(trained, scene, tmp_path):
    stop = threading.Event()

    def on_progress(fraction, message):
        if message == "Writing the checkpoint":
            stop.set()

    out = tmp_path / "out"
    job = TrainJob(sources=sources(scene), output_dir=str(out), name="late", base_checkpoint=trained[0].checkpoint,
                   **{**TINY, "epochs": 1})
    with pytest.raises(Cancelled):
        run_training(job, Reporter(on_progress, cancel_event=stop))
    assert not out.exists() or list(out.iterdir()) == []


def test_mapping_finds_the_onnx_of_a_checkpoint_from_any_file_in_it(trained, tmp_path):
    from landslide_mapper.core.mapping.model import resolve_model_path

    folder = Path(trained[0].checkpoint)
    for p in (folder, folder / "checkpoint.json", folder / "model.keras", folder / "model.onnx"):
        assert resolve_model_path(p) == folder / "model.onnx"
    partial = shutil.copytree(folder, tmp_path / "partial")
    (partial / "checkpoint.json").unlink()
    with pytest.raises(ModelError, match="incomplete cascade checkpoint"):
        resolve_model_path(partial / "model.onnx")


def test_freezing_needs_a_base_and_must_leave_something_to_train(trained, scene, tmp_path):
    with pytest.raises(InputError, match="only makes sense when fine-tuning"):
        TrainJob(sources=sources(scene), output_dir=str(tmp_path), name="n", freeze="encoder").validate()
    job = TrainJob(sources=sources(scene), output_dir=str(tmp_path / "o"), name="n",
                   base_checkpoint=trained[0].checkpoint, freeze="upto:head", **TINY)
    with pytest.raises(InputError, match="leaves no trainable layer"):
        run_training(job)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("channels", [["B", "G", "R", "NIR", "NDVI"], ["G", "R", "NDVI"], ["R", "NIR"]])
def test_radiometric_jitter_keeps_ndvi_consistent(channels):
    from landslide_mapper.core.training.augment import radiometric_jitter

    rng = np.random.default_rng(1)
    img = rng.uniform(0.02, 0.4, (8, 8, len(channels))).astype(np.float32)
    out = radiometric_jitter(channels, 0)(img)
    assert out.shape == img.shape and out.dtype == np.float32 and not np.allclose(out, img)
    if {"R", "NIR", "NDVI"} <= set(channels):
        r, n = out[..., channels.index("R")], out[..., channels.index("NIR")]
        assert np.allclose(out[..., channels.index("NDVI")], (n - r) / (n + r), atol=1e-6)
    elif "NDVI" in channels:  # nothing to recompute it from: left as it was
        assert np.array_equal(out[..., channels.index("NDVI")], img[..., channels.index("NDVI")])


def test_colour_jitter_moves_patches_warmer_and_cooler_and_is_off_by_default():
    """The warm-cool jitter shifts red against blue both ways, NIR moves only with the
    overall gain, and without it the jitter's sequence is what it was."""
    from landslide_mapper.core.training.augment import radiometric_jitter

    channels = ["B", "G", "R", "NIR", "NDVI"]
    img = np.random.default_rng(2).uniform(0.05, 0.3, (16, 16, 5)).astype(np.float32)
    plain, off = radiometric_jitter(channels, 3), radiometric_jitter(channels, 3, colour=0.0)
    for _ in range(3):
        assert np.array_equal(plain(img), off(img))
    colour = radiometric_jitter(channels, 3, colour=0.3)
    # red against blue, measured on the mean (the haze adds to blue a little)
    shift = [np.log(o[..., 2].mean() / o[..., 0].mean()) - np.log(img[..., 2].mean() / img[..., 0].mean())
             for o in (colour(img) for _ in range(40))]
    assert min(shift) < -0.3 and max(shift) > 0.3
    plain_shift = [np.log(o[..., 2].mean() / o[..., 0].mean()) - np.log(img[..., 2].mean() / img[..., 0].mean())
                   for o in (plain(img) for _ in range(40))]
    assert np.std(shift) > 2 * np.std(plain_shift)
    source = [TrainingSource(raster="a.tif", labels="a.gpkg")]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match="colour.jitter"):
            TrainJob(sources=source, output_dir="o", name="n", colour_jitter=bad).validate()
    with pytest.raises(InputError, match="with augmentation off"):
        TrainJob(sources=source, output_dir="o", name="n", colour_jitter=0.2, augment=False).validate()


def test_batch_norm_statistics_are_recalibrated_on_clean_patches():
    """Moving statistics left by augmented batches are replaced by those of clean patches."""
    from landslide_mapper.core.training import nets
    from landslide_mapper.core.training.loop import recalibrate_batch_norm

    model = nets.build_model("unet", 2, 4)
    bn = model.get_layer("enc1_bn1")
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 50.0, np.float32))  # stale, far off
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, (64, 32, 32, 2)).astype(np.float32)
    mean, std = np.array([3.0, 3.0], np.float32), np.array([2.0, 2.0], np.float32)
    recalibrate_batch_norm(model, lambda idx: (images[idx] - mean) / std, np.arange(64), batch_size=8, seed=0,
                           reporter=Reporter())
    conv = keras.Model(model.input, model.get_layer("enc1_conv1").output)
    expected = np.asarray(conv((images - mean) / std)).mean(axis=(0, 1, 2))
    assert np.allclose(np.asarray(bn.moving_mean), expected, atol=0.05 * np.abs(expected).max() + 1e-3)


def test_threshold_calibration_picks_the_best_validation_f1():
    from landslide_mapper.core.training.calibration import calibrate_threshold

    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    probs = np.array([0.9, 0.85, 0.8, 0.6, 0.7, 0.55, 0.2, 0.1], np.float32)
    t, s = calibrate_threshold(probs, truth)
    # at 0.5: TP 4, FP 2 -> F1 0.8; at 0.75: TP 3, FN 1, FP 0 -> F1 6/7; in (0.55, 0.6]: TP 4, FP 1 -> F1 8/9
    # (best); of those the one nearest 0.5
    assert 0.55 < t < 0.56 and s["f1"] == pytest.approx(8 / 9)
    assert calibrate_threshold(probs, np.zeros(8, bool))[0] == 0.5  # nothing to calibrate on
    # only known pixels count: with the 0.55 false alarm hidden, 0.5 is as good as any cut
    known = np.array([1, 1, 1, 1, 1, 0, 1, 1], bool)
    t, s = calibrate_threshold(probs, truth, known=known)
    assert s["f1"] == pytest.approx(8 / 9) and t == pytest.approx(0.5)


def test_threshold_calibration_has_no_ceiling():
    """Nearly binary outputs that over-predict: the old 0.95 ceiling kept every false alarm."""
    from landslide_mapper.core.training.calibration import calibrate_threshold

    rng = np.random.default_rng(0)
    truth = rng.random(20000) < 0.1
    probs = np.where(truth, rng.uniform(0.9993, 1.0, truth.size), rng.uniform(0.96, 0.9992, truth.size))
    t, s = calibrate_threshold(probs, truth)
    assert 0.9985 < t < 0.9994 and s["f1"] > 0.99
    t, s = calibrate_threshold(1 - probs, ~truth)       # and at the bottom of the range
    assert s["f1"] > 0.99


def test_a_compact_checkpoint_is_half_the_size_and_maps_and_fine_tunes_the_same(trained, scene, tmp_path):
    from landslide_mapper.core.jobs.cli import main

    src = load_checkpoint(trained[0].checkpoint)
    hand = "\n## Benchmark added by hand\n\nkept.\n"
    copy = tmp_path / "src" / src.folder.name
    shutil.copytree(src.folder, copy)
    with open(copy / "MODEL_CARD.md", "a", encoding="utf-8") as f:
        f.write(hand)
    assert main(["compact-checkpoint", str(copy), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    small = load_checkpoint(tmp_path / "out" / src.folder.name)           # hashes verified
    assert small.id == src.id and small.lineage == src.lineage and small.info["weight_storage"] == "float16"
    for name in ("model.keras", "model.onnx"):
        assert (small.folder / name).stat().st_size < 0.65 * (src.folder / name).stat().st_size
    card = (small.folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert card.endswith(hand) and "| weights stored as | float16, computed in float32" in card
    # Keras loads float32 variables holding the float16-rounded weights
    for a, b in zip(src.load_keras().weights, small.load_keras().weights):
        assert b.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a).astype(np.float16).astype(np.float32))
    # the ONNX graph computes in float32 what the float32 one does, to the recorded rounding
    x = np.random.default_rng(3).normal(size=(2, len(src.channels), 64, 64)).astype(np.float32)
    p32, p16 = (OnnxModel(c.onnx_path).predict(x) for c in (src, small))
    assert p16.dtype == np.float32 and 0 < np.abs(p16 - p32).max() < 0.01
    assert 0 < small.info["float16_max_abs_diff"] < 0.01
    # a fine-tuned child of the compact copy is a float32 checkpoint again
    child = run_training(TrainJob(sources=sources(scene), output_dir=str(tmp_path / "out"), name="child",
                                  base_checkpoint=str(small.folder), **{**TINY, "epochs": 1}))
    assert "weight_storage" not in load_checkpoint(child.checkpoint).info
    # a renamed copy (as build-pretrained names the bundled ones) says its new name and
    # description in checkpoint.json, the model card and the ONNX file alike
    renamed = load_checkpoint(compact_checkpoint(copy, tmp_path / "out", "renamed", "New words."))
    meta = OnnxModel(renamed.onnx_path).metadata
    assert renamed.name == meta.name == "renamed" and renamed.info["description"] == meta.description == "New words."
    assert (renamed.folder / "MODEL_CARD.md").read_text(encoding="utf-8").startswith("# renamed\n\nNew words.")
    # compacting twice is refused with the reason
    assert main(["compact-checkpoint", str(small.folder), "--output", str(tmp_path / "again"), "--quiet"]) == 2
