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

from ..geodata.bands import DEFAULT_CHANNELS
from .checkpoint import (Checkpoint, improvement_text, load_checkpoint, new_id, today, unreviewed_text,
                         write_checkpoint)
from ..errors import InputError, ModelError
from ..jobs.specs import TRAINING_MODULES, TrainJob
from .calibration import calibrate_threshold, score_text, validation_scores
from ..progress import Reporter

INFERENCE_TILE = 256       # fully convolutional: mapping uses larger tiles than training
DEPTH = 4
IMPROVEMENT_MARGIN = 0.005  # validation F1 a fine-tune must gain over its base to count as better


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
    threshold: float | None = None
    base_validation: dict[str, float] | None = None   # the base on the same validation patches
    improved: bool | None = None                       # None: trained from scratch
    unreviewed: dict[str, Any] | None = None           # new vs base on unreviewed ground (anchors.drift)

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


def recalibrate_batch_norm(model, inputs, idx: np.ndarray, batch_size: int, seed: int, reporter: Reporter,
                           batches: int = 20) -> None:
    """Re-estimate the BatchNormalization moving statistics on un-augmented training patches.

    During training they average the statistics of *augmented* batches (blurred,
    re-lit, warped), which differ from real images; evaluated with them, the network
    lost up to a fifth of its F1 and swung from epoch to epoch. Forward passes in
    training mode (no weight update) over clean patches (``inputs(indexes)`` gives them
    normalised) make them match what inference will see. Frozen BatchNormalization
    layers keep their statistics (Keras runs them in inference mode)."""
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
            model(inputs(np.sort(order[s:s + batch_size])), training=True)
    finally:
        for la, m in zip(layers, saved):
            la.momentum = m


# Label codes of a patch mask during augmentation (moved by nearest neighbour, so they
# survive any warp) and the loss weight of each.
NEGATIVE, LANDSLIDE, HARD_NEGATIVE, UNKNOWN, NODATA = 0, 1, 2, 3, 4
BASE_NEGATIVE, BASE_LANDSLIDE = 5, 6      # anchor patches: the base's decision (core/training/anchors.py)
MIN_ROUND_STEPS = 25        # optimisation steps between validations, however few the patches
# Training patches under which augmentation is strong (a few dozen: item 5 of the real-ground
# issue). It was 400; a fine-tuning of 213 patches on a validation place where the base is
# already good (western Dolomites, seed 61, the west half corrected, the east half scored:
# README "Fine-tuning where the model is already good") kept more of the base's skill with
# normal augmentation: F1 2018 / 2019 on the unseen half 0.850 / 0.632 against 0.792 / 0.568
# with strong (zero-shot 0.874 / 0.667), validation F1 0.940 against 0.930.
STRONG_AUGMENT_BELOW = 100


def _codes(patches, hard: np.ndarray | None) -> np.ndarray:
    code = patches.masks.astype(np.uint8)             # 0 / 1 where known
    if hard is not None:
        code[hard] = HARD_NEGATIVE
    code[~patches.known] = UNKNOWN
    code[~patches.valid] = NODATA
    return code


def _target(code: np.ndarray, hard_weight: float, anchor_weight: float = 0.0) -> np.ndarray:
    """(…, 2) float32: label and pixel weight (0 unknown/nodata, ``hard_weight`` hard negatives,
    ``anchor_weight`` the base's decisions on unreviewed ground)."""
    weight = np.ones(code.shape, np.float32)
    weight[code == HARD_NEGATIVE] = hard_weight
    weight[(code == UNKNOWN) | (code == NODATA)] = 0.0
    weight[code >= BASE_NEGATIVE] = anchor_weight
    label = (code == LANDSLIDE) | (code == BASE_LANDSLIDE)
    return np.stack([label.astype(np.float32), weight], -1)


def _anchor_codes(anchors) -> np.ndarray:
    code = np.where(anchors.base, BASE_LANDSLIDE, BASE_NEGATIVE).astype(np.uint8)
    code[~anchors.valid] = NODATA
    return code


def _onnx_session(onnx_path):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def _onnx_probs(sess, x_nhwc: np.ndarray, reporter: Reporter) -> np.ndarray:
    """Probabilities of an ONNX cascade model on normalised NHWC patches, 16 at a time."""
    name = sess.get_inputs()[0].name
    out = np.empty(x_nhwc.shape[:3], np.float32)
    for s in range(0, len(x_nhwc), 16):
        reporter.check_cancelled()
        out[s:s + 16] = sess.run(None, {name: np.ascontiguousarray(x_nhwc[s:s + 16].transpose(0, 3, 1, 2))})[0][:, 0]
    return out


def _keras_probs(prob_model, n: int, batch, reporter: Reporter, size: int = 32) -> np.ndarray:
    """Probabilities of the Keras ``prob`` head on ``n`` patches, ``batch(slice)`` giving each
    batch's normalised input, so no more than a batch is normalised at once."""
    out = None
    for s in range(0, n, size):
        reporter.check_cancelled()
        p = np.asarray(prob_model(batch(slice(s, s + size)), training=False), np.float32)[..., 0]
        if out is None:
            out = np.empty((n,) + p.shape[1:], np.float32)
        out[s:s + size] = p
    return out if out is not None else np.empty((0,), np.float32)


def _normalised(images: np.ndarray, valid: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The network's input: normalised channels, nodata as zeros (as inference sees it)."""
    x = (images - mean) / std
    x[~valid] = 0.0
    return x


def _pixel_range(sizes, base: Checkpoint | None) -> list[float]:
    """[smallest, largest] pixel size the network has learnt from, with its base's."""
    values = [float(v) for v in sizes if v]
    if base is not None and base.info.get("pixel_size_m"):
        values += [float(v) for v in base.info["pixel_size_m"]]
    return [round(min(values), 3), round(max(values), 3)] if values else []


def require_training_stack() -> None:
    """Refuse a training job, before any work, in a Python without TensorFlow/Keras (e.g.
    Python 3.14, for which TensorFlow publishes no release): mapping needs neither."""
    import importlib.util
    import sys

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):        # a broken or hidden install counts as absent
            return True

    missing = [m for m in TRAINING_MODULES if absent(m)]
    if missing:
        version = ".".join(map(str, sys.version_info[:2]))
        raise InputError(
            f"Training and fine-tuning need {', '.join(missing)}, which this worker Python "
            f"({sys.executable}, Python {version}) does not have. Mapping works without them. "
            "Create the worker environment in the dock's Worker tab, or choose a worker Python "
            "3.9–3.13 that has TensorFlow (TensorFlow publishes no release for Python 3.14).")


def run_training(job: TrainJob, reporter: Reporter | None = None) -> TrainResult:
    reporter = reporter or Reporter()
    job.validate()
    require_training_stack()
    t0 = time.time()
    from .anchors import ANCHOR_SHARE, drift, sample_anchors
    from .augment import make_augmenter, radiometric_jitter
    from .split import split_patches
    from .patches import normalisation, prepare_patches

    base: Checkpoint | None = None
    reduced_from = None
    if job.base_checkpoint:
        base = load_checkpoint(job.base_checkpoint)
        channels = base.channels
        if job.channels and list(job.channels) != channels:
            missing = [c for c in job.channels if c not in channels]
            if missing:
                raise InputError(f"Fine-tuning can only drop input channels of the base checkpoint "
                                 f"({', '.join(channels)}); {', '.join(missing)} is not one of them.")
            reduced_from, channels = channels, list(job.channels)
        reporter.log(f"Fine-tuning {base.name} ({base.id}, stage {len(base.lineage)}); it takes "
                     f"{', '.join(reduced_from or channels)}"
                     + (f", reduced to {', '.join(channels)}." if reduced_from else "."))
    else:
        channels = list(job.channels or DEFAULT_CHANNELS)

    # -- data --------------------------------------------------------------------------
    patches = prepare_patches(job.sources, channels, patch_size=job.patch_size, stride=job.stride,
                              drop_empty=job.drop_empty, reporter=reporter.sub(0.0, 0.08))
    train_idx, val_idx = split_patches(patches, fraction=job.validation_fraction,
                                       method=job.validation, seed=job.seed, reporter=reporter)
    by_place = bool((patches.role == "validation").any())
    reporter.log(f"{len(patches)} patches of {job.patch_size} px: {len(train_idx)} for training, "
                 f"{len(val_idx)} for validation ({'by place' if by_place else job.validation + ' split'}).")
    labels = patches.masks.astype(bool)
    if not labels[train_idx].any():
        raise InputError("After the validation split no training patch contains a landslide pixel (they "
                         "all fell into the validation blocks); add labelled areas or lower the "
                         "validation fraction.")
    if not labels[val_idx].any():
        reporter.log("Warning: no validation patch contains a landslide pixel, so validation recall and "
                     "F1 are undefined; the best epoch is chosen on the validation loss alone.")
    if base is not None:  # the weights were learnt on this scale: keep it
        keep = [base.channels.index(c) for c in channels]
        mean = [float(base.info["mean"][i]) for i in keep]
        std = [float(base.info["std"][i]) for i in keep]
    else:
        mean, std = normalisation(patches, train_idx)
    mean_a = np.asarray(mean, np.float32)
    std_a = np.asarray(std, np.float32)
    images, valid = patches.images, patches.valid

    def inputs(idx) -> np.ndarray:
        return _normalised(images[idx], valid[idx], mean_a, std_a)

    x_val = inputs(val_idx)
    known_val = patches.known[val_idx]
    truth_val = labels[val_idx]

    # -- the base on the same patches: its validation scores, and its false alarms ------
    base_scores, hard, hard_pixels, anchors, trained_anchors, anchor_weight = None, None, 0, None, None, 0.0
    if base is not None and reduced_from is None:
        sess = _onnx_session(base.onnx_path)
        base_probs = _onnx_probs(sess, x_val, reporter)
        bt = float(base.info.get("threshold", 0.5))
        bp = base_probs >= bt
        base_scores = validation_scores(int((bp & truth_val & known_val).sum()),
                                        int((bp & ~truth_val & known_val).sum()),
                                        int((~bp & truth_val & known_val).sum()))
        reporter.log(f"Base checkpoint on the validation patches (threshold {bt:g}): precision "
                     f"{score_text(base_scores['precision'])}, recall {score_text(base_scores['recall'])}, "
                     f"F1 {score_text(base_scores['f1'])}.")
        if job.hard_negative_weight > 1:
            # what the base maps as landslide where the labels say none: the false alarms a
            # user deleted inside the reviewed area weigh more, so they are unlearnt first
            hard = np.zeros(labels.shape, bool)
            for s in range(0, len(train_idx), 256):
                part = train_idx[s:s + 256]
                hard[part] = (_onnx_probs(sess, inputs(part), reporter) >= bt) & ~labels[part] & patches.known[part]
            hard_pixels = int(hard.sum())
            reporter.log(f"{hard_pixels:,} training pixels the base maps as landslide but the labels do not "
                         f"(deleted false alarms) weigh ×{job.hard_negative_weight:g} in the loss.")
        # unreviewed ground with the base's mapping: trained on (distill_weight) and/or
        # used to report how far the new checkpoint strays from its base there
        anchors = sample_anchors(job.sources, channels, job.patch_size, math.ceil(ANCHOR_SHARE * len(train_idx)),
                                 lambda img, ok: _onnx_probs(sess, _normalised(img, ok, mean_a, std_a), reporter),
                                 bt, job.seed, reporter)
        # trusted as far as the base proved right where it was checked: a share of them equal
        # to its validation F1 is trained on, so a base that fails on this ground (F1 near 0)
        # neither teaches its misses back nor takes the corrections' place in the batches
        if anchors is not None and job.distill_weight > 0:
            keep = math.ceil(float(base_scores["f1"] or 0.0) * len(anchors))
            if keep:
                anchor_weight = float(job.distill_weight)
                trained_anchors = anchors.subset(np.random.default_rng(job.seed).permutation(len(anchors))[:keep])
                reporter.log(f"Anchors: {keep} of them (the base's validation F1 × {len(anchors)}) weigh "
                             f"×{anchor_weight:g} in the loss, so the new checkpoint keeps the base's mapping where "
                             "nobody corrected it unless the corrections teach otherwise.")
    codes = _codes(patches, hard)

    keras, tf, mixed, where = _configure_tensorflow(job, reporter)
    from . import losses as loss_lib
    from . import nets

    # -- network -----------------------------------------------------------------------
    if base is not None:
        arch = dict(base.info["architecture"])
        loaded = base.load_keras()
        model = nets.build_model(arch["name"], len(channels), arch["base_filters"], arch["depth"])
        try:
            if reduced_from:
                sliced = nets.transfer_weights(loaded, model, [reduced_from.index(c) for c in channels])
                reporter.log(f"Input layers {', '.join(sliced)} keep the weights of {', '.join(channels)}.")
            else:
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

    # -- schedule: by optimisation steps, validated every round ---------------------------
    # anchor patches follow the labelled ones in the sample order (indexes from len(patches) on)
    n_patches = len(patches)
    anchor_codes = _anchor_codes(trained_anchors) if trained_anchors is not None else None
    order_idx = train_idx if trained_anchors is None else \
        np.concatenate([train_idx, n_patches + np.arange(len(trained_anchors))])
    per_pass = math.ceil(len(order_idx) / job.batch_size)
    round_steps = max(per_pass, MIN_ROUND_STEPS)
    if job.max_steps_per_epoch:
        round_steps = min(round_steps, job.max_steps_per_epoch)
    rounds = math.ceil(job.steps / round_steps) if job.steps else job.epochs
    strong = len(train_idx) < STRONG_AUGMENT_BELOW or "NIR" not in channels
    if job.augment:
        reporter.log(f"Augmentation: {'strong' if strong else 'normal'} ({len(train_idx)} training patches"
                     f"{'' if 'NIR' in channels else ', colour-only input'}).")
    augment = make_augmenter(job.seed, strong=strong) if job.augment else None
    jitter = radiometric_jitter(channels, job.seed, strong=strong, colour=job.colour_jitter) \
        if job.augment else None
    p = job.patch_size
    n_ch = len(channels)
    hard_w = float(job.hard_negative_weight)

    def train_samples():
        rng = np.random.default_rng(job.seed)
        while True:
            for i in rng.permutation(order_idx):
                if i < n_patches:
                    img, code = images[i], codes[i]
                else:
                    img, code = trained_anchors.images[i - n_patches], anchor_codes[i - n_patches]
                if augment is not None:
                    img, code = augment(img, code)
                    img = jitter(img)
                x = (img - mean_a) / std_a
                x[code == NODATA] = 0.0
                yield x, _target(code, hard_w, anchor_weight)

    def with_targets(x, y):
        return x, loss_lib.targets_in_order(y, output_names)

    train_ds = (tf.data.Dataset.from_generator(
        train_samples, output_signature=(tf.TensorSpec((p, p, n_ch), tf.float32),
                                         tf.TensorSpec((p, p, 2), tf.float32)))
        .batch(job.batch_size).map(with_targets).prefetch(2))
    y_val = _target(np.where(known_val, truth_val.astype(np.uint8), UNKNOWN), 1.0)
    val_loss_fn = loss["prob"]
    prob_model = keras.Model(model.input, model.get_layer("prob").output)
    threshold = 0.5

    history: list[dict[str, float]] = []
    best = {"val_loss": math.inf, "epoch": 0, "weights": None, "scores": {}}
    fit_reporter = reporter.sub(0.08, 0.95)

    class Monitor(keras.callbacks.Callback):
        """Progress per batch (where cancel is honoured), validation scores per round,
        and the best weights on the validation loss kept in memory."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            done = (self.epoch * round_steps + batch + 1) / (rounds * round_steps)
            loss_now = float((logs or {}).get("loss", float("nan")))
            fit_reporter.progress(done, f"round {self.epoch + 1}/{rounds}, step {batch + 1}/{round_steps}, "
                                        f"loss {loss_now:.4f}")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            recalibrate_batch_norm(self.model, inputs, train_idx, job.batch_size, job.seed + epoch, reporter)
            probs = _keras_probs(prob_model, len(x_val), lambda sl: x_val[sl], reporter)
            # The losses pool over a batch, so the validation loss pools over the whole
            # validation set (Keras' own would average per-batch values, and a batch without
            # landslides scores ~1 whatever the network does); it is what the LR schedule,
            # early stopping and the best-weights choice see.
            logs["val_loss"] = float(keras.ops.convert_to_numpy(
                val_loss_fn(y_val, keras.ops.convert_to_tensor(probs[..., None]))))
            pred = probs >= threshold
            scores = validation_scores(int(np.count_nonzero(pred & truth_val & known_val)),
                                       int(np.count_nonzero(pred & ~truth_val & known_val)),
                                       int(np.count_nonzero(~pred & truth_val & known_val)))
            for k, v in scores.items():
                logs[f"val_{k}"] = v
            row = {"epoch": epoch + 1, "step": (epoch + 1) * round_steps, "loss": float(logs.get("loss", math.nan)),
                   "val_loss": logs["val_loss"],
                   "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                   **{f"val_{k}": v for k, v in scores.items()}}
            history.append(row)
            if row["val_loss"] < best["val_loss"]:
                best.update(val_loss=row["val_loss"], epoch=epoch + 1, weights=self.model.get_weights(),
                            scores=scores, probs=probs)
            reporter.event("epoch", **row)
            reporter.log(f"round {epoch + 1} (step {row['step']}): loss {row['loss']:.4f}, val loss "
                         f"{row['val_loss']:.4f}, val precision {score_text(scores['precision'])}, recall "
                         f"{score_text(scores['recall'])}, F1 {score_text(scores['f1'])}, "
                         f"IoU {score_text(scores['iou'])}")

    callbacks = [
        Monitor(),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, job.patience // 2),
                                          min_lr=1e-6, verbose=0),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=job.patience, verbose=0),
    ]
    reporter.log(f"Training {arch['name']} ({model.count_params():,} parameters) for up to {rounds} "
                 f"rounds of {round_steps} steps of {job.batch_size} patches ({rounds * round_steps} steps, "
                 f"{rounds * round_steps * job.batch_size / max(len(train_idx), 1):.1f} passes over the "
                 "training patches), validated after each round.")
    try:
        model.fit(train_ds, epochs=rounds, steps_per_epoch=round_steps, callbacks=callbacks, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # never leak the policy into the process
    reporter.check_cancelled()
    if best["weights"] is None:  # every validation loss was NaN: training diverged
        raise ModelError("Training diverged (the validation loss was never a number); try a lower "
                         "learning rate or check the labels.")
    model.set_weights(best["weights"])
    val_scores = best["scores"]
    if job.calibrate_threshold:
        threshold, val_scores = calibrate_threshold(best["probs"], truth_val, threshold, known_val)
        reporter.log(f"Threshold {threshold:.4g} maximises the validation F1 of the best round "
                     f"({score_text(val_scores['f1'])}, against {score_text(best['scores']['f1'])} at 0.5).")
    improved = None
    if base_scores is not None:
        new_f1, base_f1 = val_scores.get("f1"), base_scores.get("f1")
        improved = new_f1 is not None and (base_f1 is None or new_f1 > base_f1 + IMPROVEMENT_MARGIN)
        text = improvement_text({"base_validation": base_scores, "improved": improved, "validation": val_scores})
        reporter.log(text if improved else f"Warning: {text}")
    unreviewed = None
    if anchors is not None:
        new = _keras_probs(prob_model, len(anchors), lambda sl: _normalised(
            anchors.images[sl], anchors.valid[sl], mean_a, std_a), reporter) >= threshold
        unreviewed = drift(anchors, new) | {"trained_on": 0 if trained_anchors is None else len(trained_anchors),
                                            "weight": anchor_weight}
        reporter.log(unreviewed_text({"unreviewed": unreviewed}))
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
    stage_px = _pixel_range(patches.pixel_size, None)
    stage = {
        "stage": len(base_lineage) + 1, "id": ckpt_id, "base_id": base.id if base else None,
        "mode": "finetune" if base else "train", "region": ", ".join(regions), "years": years,
        "trigger": job.trigger, "sources": [Path(s.raster).name for s in job.sources],
        "patches": {"train": int(len(train_idx)), "validation": int(len(val_idx))},
        "patch_size": job.patch_size, "split": "by place" if by_place else job.validation, "epochs": len(history),
        "steps": len(history) * round_steps, "best_epoch": best["epoch"], "loss": job.effective_loss,
        "freeze": job.freeze, "learning_rate": job.learning_rate, "augment": job.augment and
        ("strong" if strong else "normal"), "colour_jitter": job.colour_jitter, "pixel_size_m": stage_px,
        "threshold": float(threshold),
        "validation": {k: (None if v is None else round(float(v), 4)) for k, v in val_scores.items()}
                      | {"loss": round(float(best["val_loss"]), 5)},
        "date": today(), "device": where,
    }
    if base_scores is not None:
        stage["base_validation"] = {k: (None if v is None else round(float(v), 4)) for k, v in base_scores.items()}
        stage["improved"] = bool(improved)
        stage["hard_negative_pixels"] = hard_pixels
        stage["distill_weight"] = float(job.distill_weight)
    if unreviewed is not None:
        stage["unreviewed"] = unreviewed
    if reduced_from:
        stage["channels_from"] = reduced_from
    if job.description:
        stage["notes"] = job.description
    info = {
        "id": ckpt_id, "created": today(),
        "description": job.description or (base.info.get("description", "") if base else ""),
        "architecture": {**arch, "parameters": int(model.count_params()), "outputs": output_names},
        "channels": channels, "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        "tile_size": INFERENCE_TILE, "threshold": threshold,
        "size_multiple": nets.size_multiple(arch["depth"]),
        "pixel_size_m": _pixel_range(patches.pixel_size, base),
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
        seconds=round(time.time() - t0, 1), threshold=stage["threshold"],
        base_validation=stage.get("base_validation"), improved=stage.get("improved"),
        unreviewed=stage.get("unreviewed"))
