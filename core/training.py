"""Training and fine-tuning a cascade checkpoint (Keras 3 on TensorFlow).

One function, :func:`run_training`, serves both: without a base checkpoint it trains a new
network from scratch (stage 1 of a cascade); with one it fine-tunes a copy of that network
on new regions or corrected polygons and writes the result as the next stage. The base
checkpoint is only read. Nothing is written until training succeeded: a cancelled or
failed run leaves no checkpoint behind.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import Checkpoint, load_checkpoint, new_id, today, write_checkpoint
from .errors import InputError, ModelError
from .jobs import TrainJob
from .metrics import PixelScores
from .progress import Reporter

DEFAULT_CHANNELS = ["B", "G", "R", "NIR", "NDVI"]
INFERENCE_TILE = 256       # fully convolutional: mapping uses larger tiles than training
DEPTH = 4


@dataclass
class TrainResult:
    checkpoint: str
    name: str
    id: str
    stage: int
    base_id: str | None
    epochs_run: int
    best_epoch: int
    patches: dict[str, int]
    validation: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    onnx_max_abs_diff: float | None = None
    device: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _configure_tensorflow(job: TrainJob, reporter: Reporter):
    """Device, precision and seeds; must run before TensorFlow builds anything."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    device = job.device.lower()
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TensorFlow already started on the GPU in this process
            raise InputError("The GPU is already in use by this process; run CPU training in a new "
                             "worker process.") from None
        gpus = []
    if device in ("gpu", "cuda") and not gpus:
        raise InputError("A GPU was requested for training, but TensorFlow sees none (is the CUDA "
                         "build of TensorFlow installed and the driver working?). Choose device "
                         "'auto' or 'cpu'.")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    mixed = job.mixed_precision == "on" or (job.mixed_precision == "auto" and bool(gpus))
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(job.seed)
    if not gpus:  # deterministic kernels cost little on the CPU; several GPU kernels lack one
        tf.config.experimental.enable_op_determinism()
    where = f"GPU ({gpus[0].name})" if gpus else "CPU"
    reporter.log(f"Training on {where}{', mixed precision' if mixed else ''}.")
    return keras, tf, mixed, where


def _scores(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    """Pixel scores; None where undefined (e.g. recall without any landslide pixel), as JSON has no NaN."""
    s = PixelScores(tp, fp, fn, 0)
    return {k: (None if math.isnan(v) else v)
            for k, v in (("precision", s.precision), ("recall", s.recall), ("f1", s.f1), ("iou", s.iou))}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


_HAZE_WEIGHT = {"B": 1.0, "G": 0.75, "R": 0.5, "RE": 0.35, "NIR": 0.25}


def radiometric_jitter(channels: list[str], seed: int):
    """Illumination, sensor-gain and haze differences between acquisitions, which the
    geometric and blur augmentations do not cover: a random gain per image (and a little
    per band) and an additive path radiance strongest in blue; NDVI is recomputed so it
    stays consistent with R and NIR."""
    rng = np.random.default_rng(seed + 7919)
    spectral = [i for i, c in enumerate(channels) if c in _HAZE_WEIGHT]
    haze_w = np.array([_HAZE_WEIGHT[channels[i]] for i in spectral], np.float32)
    ndvi = channels.index("NDVI") if {"NDVI", "R", "NIR"} <= set(channels) else None
    r, nir = (channels.index("R"), channels.index("NIR")) if ndvi is not None else (None, None)

    def apply(img: np.ndarray) -> np.ndarray:
        img = img.copy()
        # centred on the data as it is: gain log-uniform in [0.8, 1.25], offset around zero
        gain = np.exp(rng.uniform(-0.223, 0.223)) * rng.uniform(0.95, 1.05, len(spectral)).astype(np.float32)
        haze = rng.uniform(-0.01, 0.015) * haze_w
        img[..., spectral] = img[..., spectral] * gain + haze
        if ndvi is not None:
            den = img[..., nir] + img[..., r]
            img[..., ndvi] = np.where(den > 0, (img[..., nir] - img[..., r]) / np.where(den > 0, den, 1), 0)
        return img

    return apply


THRESHOLDS = np.round(np.arange(0.30, 0.951, 0.05), 2)


def calibrate_threshold(probs: np.ndarray, truth: np.ndarray, default: float = 0.5):
    """The probability threshold with the best validation F1, and the scores there.

    Tversky losses with α > β deliberately favour recall, so 0.5 is rarely the F1-optimal
    cut; the threshold travels in the checkpoint and mapping uses it. Without landslide
    pixels in the validation set the default is kept. Ties go to the value nearest 0.5."""
    if not truth.any():
        return default, _scores(0, int(np.count_nonzero(probs >= default)), 0)
    best_t, best_s, best_f1 = default, None, -1.0
    for t in sorted(THRESHOLDS, key=lambda v: abs(v - default)):
        pred = probs >= t
        s = _scores(int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred & ~truth)),
                    int(np.count_nonzero(~pred & truth)))
        f1 = s["f1"] or 0.0
        if f1 > best_f1 + 1e-9:
            best_t, best_s, best_f1 = float(t), s, f1
    return best_t, best_s


def recalibrate_batch_norm(model, images: np.ndarray, idx: np.ndarray, mean: np.ndarray, std: np.ndarray,
                           batch_size: int, seed: int, reporter: Reporter, batches: int = 20) -> None:
    """Re-estimate the BatchNormalization moving statistics on un-augmented training patches.

    During training they average the statistics of *augmented* batches (blurred,
    re-lit, warped), which differ from real images; evaluated with them, the network
    lost up to a fifth of its F1 and swung from epoch to epoch. Forward passes in
    training mode (no weight update) over clean patches make them match what inference
    will see. Frozen BatchNormalization layers keep their statistics (Keras runs them in
    inference mode)."""
    import keras

    layers = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization) and la.trainable]
    saved = [la.momentum for la in layers]
    rng = np.random.default_rng(seed)
    need = batches * batch_size
    order = rng.choice(idx, size=need, replace=len(idx) < need)
    try:
        for k, s in enumerate(range(0, len(order), batch_size), start=1):
            reporter.check_cancelled()
            for la in layers:  # momentum (k-1)/k: the moving statistics become the plain mean
                la.momentum = (k - 1) / k  # over these batches, with nothing left of the old ones
            model(np.ascontiguousarray((images[np.sort(order[s:s + batch_size])] - mean) / std), training=True)
    finally:
        for la, m in zip(layers, saved):
            la.momentum = m


def run_training(job: TrainJob, reporter: Reporter | None = None) -> TrainResult:
    reporter = reporter or Reporter()
    job.validate()
    t0 = time.time()
    from .training_data import make_augmenter, normalisation, prepare_patches, split_patches

    base: Checkpoint | None = None
    if job.base_checkpoint:
        base = load_checkpoint(job.base_checkpoint)
        channels = base.channels
        reporter.log(f"Fine-tuning {base.name} ({base.id}, stage {len(base.lineage)}); "
                     f"it takes {', '.join(channels)}.")
    else:
        channels = list(job.channels or DEFAULT_CHANNELS)

    # -- data --------------------------------------------------------------------------
    patches = prepare_patches(job.sources, channels, patch_size=job.patch_size, stride=job.stride,
                              drop_empty=job.drop_empty, reporter=reporter.sub(0.0, 0.08))
    train_idx, val_idx = split_patches(patches, fraction=job.validation_fraction,
                                       method=job.validation, seed=job.seed, reporter=reporter)
    reporter.log(f"{len(patches)} patches of {job.patch_size} px: {len(train_idx)} for training, "
                 f"{len(val_idx)} for validation ({job.validation} split).")
    if not patches.masks[train_idx].any():
        raise InputError("After the validation split no training patch contains a landslide pixel (they "
                         "all fell into the validation blocks); add labelled areas or lower the "
                         "validation fraction.")
    if not patches.masks[val_idx].any():
        reporter.log("Warning: no validation patch contains a landslide pixel, so validation recall and "
                     "F1 are undefined; the best epoch is chosen on the validation loss alone.")
    if base is not None:  # the weights were learnt on this scale: keep it
        mean, std = list(base.info["mean"]), list(base.info["std"])
    else:
        mean, std = normalisation(patches, train_idx)
    mean_a = np.asarray(mean, np.float32)
    std_a = np.asarray(std, np.float32)

    keras, tf, mixed, where = _configure_tensorflow(job, reporter)
    from . import losses as loss_lib
    from . import nets

    # -- network -----------------------------------------------------------------------
    if base is not None:
        arch = dict(base.info["architecture"])
        loaded = base.load_keras()
        model = nets.build_model(arch["name"], len(channels), arch["base_filters"], arch["depth"])
        try:
            model.set_weights(loaded.get_weights())
        except ValueError as exc:
            raise ModelError(f"Checkpoint {base.folder}: its weights do not fit its recorded "
                             f"architecture ({exc}).") from None
        del loaded
    else:
        arch = {"name": job.architecture, "base_filters": job.base_filters, "depth": DEPTH}
        model = nets.build_model(job.architecture, len(channels), job.base_filters, DEPTH)
    frozen = nets.apply_freeze(model, job.freeze)
    if not model.trainable_weights:
        raise InputError(f"Freezing {job.freeze!r} leaves no trainable layer; freeze less (e.g. 'encoder').")
    if frozen:
        reporter.log(f"Frozen ({job.freeze}): {len(frozen)} layers; "
                     f"{sum(int(np.prod(w.shape)) for w in model.trainable_weights):,} trainable parameters.")
    output_names = list(model.output_names)
    loss, weights = loss_lib.losses_for(output_names, job.effective_loss)
    # Keras 3 pairs dict losses with list outputs by sorted key, not by name: pass lists
    model.compile(optimizer=keras.optimizers.Adam(job.learning_rate),
                  loss=loss_lib.in_output_order(loss, output_names),
                  loss_weights=loss_lib.in_output_order(weights, output_names))

    # -- pipelines ---------------------------------------------------------------------
    augment = make_augmenter(job.seed) if job.augment else None
    jitter = radiometric_jitter(channels, job.seed) if job.augment else None
    images, masks = patches.images, patches.masks
    p = job.patch_size
    n_ch = len(channels)

    def train_samples():
        rng = np.random.default_rng(job.seed)
        while True:
            for i in rng.permutation(train_idx):
                img, m = images[i], masks[i]
                if augment is not None:
                    img, m = augment(img, m)
                    img = jitter(img)
                yield (img - mean_a) / std_a, m.astype(np.float32)[..., None]

    def with_targets(x, y):
        return x, loss_lib.targets_in_order(y, output_names)

    train_ds = (tf.data.Dataset.from_generator(
        train_samples, output_signature=(tf.TensorSpec((p, p, n_ch), tf.float32),
                                         tf.TensorSpec((p, p, 1), tf.float32)))
        .batch(job.batch_size).map(with_targets).prefetch(2))
    x_val = (images[val_idx] - mean_a) / std_a
    y_val_prob = masks[val_idx].astype(np.float32)[..., None]
    val_loss_fn = loss["prob"]
    steps = math.ceil(len(train_idx) / job.batch_size)
    if job.max_steps_per_epoch:
        steps = min(steps, job.max_steps_per_epoch)
    prob_model = keras.Model(model.input, model.get_layer("prob").output)
    threshold = 0.5

    history: list[dict[str, float]] = []
    best = {"val_loss": math.inf, "epoch": 0, "weights": None, "scores": {}}
    fit_reporter = reporter.sub(0.08, 0.95)

    class Monitor(keras.callbacks.Callback):
        """Progress per batch (where cancel is honoured), validation scores per epoch,
        and the best weights on the validation loss kept in memory."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            done = (self.epoch * steps + batch + 1) / (job.epochs * steps)
            loss_now = float((logs or {}).get("loss", float("nan")))
            fit_reporter.progress(done, f"epoch {self.epoch + 1}/{job.epochs}, batch {batch + 1}/{steps}, "
                                        f"loss {loss_now:.4f}")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            recalibrate_batch_norm(self.model, images, train_idx, mean_a, std_a, job.batch_size, job.seed + epoch,
                                   reporter)
            probs = np.empty(masks[val_idx].shape, np.float32)
            for s in range(0, len(x_val), 32):
                reporter.check_cancelled()
                probs[s:s + 32] = np.asarray(prob_model(x_val[s:s + 32], training=False), np.float32)[..., 0]
            # The losses pool over a batch, so the validation loss pools over the whole
            # validation set (Keras' own would average per-batch values, and a batch without
            # landslides scores ~1 whatever the network does); it is what the LR schedule,
            # early stopping and the best-weights choice see.
            logs["val_loss"] = float(keras.ops.convert_to_numpy(
                val_loss_fn(y_val_prob, keras.ops.convert_to_tensor(probs[..., None]))))
            pred = probs >= threshold
            truth = masks[val_idx].astype(bool)
            scores = _scores(int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred & ~truth)),
                             int(np.count_nonzero(~pred & truth)))
            for k, v in scores.items():
                logs[f"val_{k}"] = v
            row = {"epoch": epoch + 1, "loss": float(logs.get("loss", math.nan)),
                   "val_loss": logs["val_loss"],
                   "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                   **{f"val_{k}": v for k, v in scores.items()}}
            history.append(row)
            if row["val_loss"] < best["val_loss"]:
                best.update(val_loss=row["val_loss"], epoch=epoch + 1, weights=self.model.get_weights(),
                            scores=scores, probs=probs)
            reporter.event("epoch", **row)
            reporter.log(f"epoch {epoch + 1}: loss {row['loss']:.4f}, val loss {row['val_loss']:.4f}, "
                         f"val precision {_fmt(scores['precision'])}, recall {_fmt(scores['recall'])}, "
                         f"F1 {_fmt(scores['f1'])}, IoU {_fmt(scores['iou'])}")

    callbacks = [
        Monitor(),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, job.patience // 2),
                                          min_lr=1e-6, verbose=0),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=job.patience, verbose=0),
    ]
    reporter.log(f"Training {arch['name']} ({model.count_params():,} parameters) for up to {job.epochs} "
                 f"epochs of {steps} batches of {job.batch_size}.")
    try:
        model.fit(train_ds, epochs=job.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # never leak the policy into the process
    reporter.check_cancelled()
    if best["weights"] is None:  # every validation loss was NaN: training diverged
        raise ModelError("Training diverged (the validation loss was never a number); try a lower "
                         "learning rate or check the labels.")
    model.set_weights(best["weights"])
    threshold, val_scores = threshold, best["scores"]
    if job.calibrate_threshold:
        threshold, val_scores = calibrate_threshold(best["probs"], masks[val_idx].astype(bool), threshold)
        reporter.log(f"Threshold {threshold:.2f} maximises the validation F1 of the best epoch "
                     f"({_fmt(val_scores['f1'])}, against {_fmt(best['scores']['f1'])} at 0.5).")
    # The checkpoint holds a fresh float32, fully trainable, uncompiled copy: no optimizer
    # state (a third of the size), no mixed-precision policy (inference and later
    # fine-tuning may run without a GPU), no freezing (that is chosen per fine-tuning run).
    final = nets.build_model(arch["name"], n_ch, arch["base_filters"], arch["depth"])
    final.set_weights(model.get_weights())
    model = final

    # -- checkpoint ----------------------------------------------------------------------
    reporter.progress(0.95, "Writing the checkpoint")
    base_lineage = base.lineage if base is not None else []
    ckpt_id = new_id()
    years = sorted({s.year for s in job.sources if s.year is not None})
    regions = [r for r in dict.fromkeys(s.region for s in job.sources) if r]
    stage = {
        "stage": len(base_lineage) + 1, "id": ckpt_id, "base_id": base.id if base else None,
        "mode": "finetune" if base else "train", "region": ", ".join(regions), "years": years,
        "trigger": job.trigger, "sources": [Path(s.raster).name for s in job.sources],
        "patches": {"train": int(len(train_idx)), "validation": int(len(val_idx))},
        "patch_size": job.patch_size, "split": job.validation, "epochs": len(history),
        "best_epoch": best["epoch"], "loss": job.effective_loss, "freeze": job.freeze,
        "learning_rate": job.learning_rate, "augment": job.augment,
        "threshold": round(float(threshold), 2),
        "validation": {k: (None if v is None else round(float(v), 4)) for k, v in val_scores.items()}
                      | {"loss": round(float(best["val_loss"]), 5)},
        "date": today(), "device": where,
    }
    if job.description:
        stage["notes"] = job.description
    info = {
        "id": ckpt_id, "created": today(),
        "description": job.description or (base.info.get("description", "") if base else ""),
        "architecture": {**arch, "parameters": int(model.count_params()), "outputs": output_names},
        "channels": channels, "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        "tile_size": INFERENCE_TILE, "threshold": threshold,
        "size_multiple": nets.size_multiple(arch["depth"]),
        "lineage": base_lineage + [stage],
    }
    probe = x_val[: min(4, len(x_val))]
    reference = np.asarray(keras.Model(model.input, model.get_layer("prob").output)(probe, training=False))

    def check_onnx(path: Path) -> dict[str, Any]:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(probe.transpose(0, 3, 1, 2))})[0]
        diff = float(np.max(np.abs(got[:, 0] - reference[..., 0]))) if probe.size else 0.0
        if not diff <= 1e-3:
            raise ModelError(f"The exported ONNX model disagrees with the Keras network (max difference "
                             f"{diff:.2e}); the checkpoint was not written.")
        return {"onnx_max_abs_diff": diff}

    reporter.check_cancelled()
    folder = write_checkpoint(job.output_dir, job.name, model, info, check_onnx=check_onnx,
                              before_commit=reporter.check_cancelled)
    written = load_checkpoint(folder)
    reporter.log(f"Checkpoint written: {folder}")
    reporter.progress(1.0, "Done")
    return TrainResult(
        checkpoint=str(folder), name=written.name, id=ckpt_id, stage=stage["stage"],
        base_id=stage["base_id"], epochs_run=len(history), best_epoch=best["epoch"],
        patches=stage["patches"], validation=stage["validation"], history=history,
        onnx_max_abs_diff=written.info.get("onnx_max_abs_diff"), device=where,
        seconds=round(time.time() - t0, 1))
