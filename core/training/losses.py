"""Segmentation losses and deep-supervision targets for the Keras models of ``core.training.nets``.

Overlap losses (Tversky, Dice) are computed over the whole batch, not per sample: a tile with
no landslide pixel then cannot produce an undefined per-sample ratio, and the few positive
pixels of a batch all count the same.

Keras 3.6 pitfall (checked): a *dict* of losses or loss weights given to ``compile`` for a
model with a *list* of outputs is flattened in sorted-key order (``ds_1_2, ds_1_4, ds_1_8,
prob``) while the outputs stay in model order (``prob, ds_1_2, ...``), so losses and weights
silently land on the wrong outputs. Use :func:`in_output_order` (lists for ``compile``) and
:func:`targets_in_order` (tuple targets for ``fit``).
"""
from __future__ import annotations

import keras
from keras import ops

from ..errors import InputError

LOSSES = ("adsms", "tversky", "focal_tversky", "dice", "bce", "bce_focal_tversky")
FINAL_OUTPUT = "prob"
DS_PREFIX = "ds_1_"
SMOOTH = 1e-6
EPSILON = 1e-7


def split_target(y_true):
    """(label, weight) of a target: the channels of a 2-channel target (label, pixel weight:
    0 where the label is unknown, >1 for hard negatives), or the target with weight 1."""
    y = ops.cast(y_true, "float32")
    if y.shape[-1] == 2:
        return y[..., :1], y[..., 1:]
    return y, ops.ones_like(y)


def _counts(y_true, y_pred):
    """Soft TP, FN, FP summed over every weighted pixel of every sample (float32 under mixed precision)."""
    y, w = split_target(y_true)
    p = ops.cast(y_pred, "float32")
    tp = ops.sum(w * y * p)
    fn = ops.sum(w * y * (1.0 - p))
    fp = ops.sum(w * (1.0 - y) * p)
    return tp, fn, fp


def tversky_index(y_true, y_pred, alpha=0.7, beta=0.3, smooth=SMOOTH):
    tp, fn, fp = _counts(y_true, y_pred)
    return (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)


def _bce(y_true, y_pred):
    y, w = split_target(y_true)
    p = ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON)
    return ops.sum(-w * (y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))) / ops.maximum(ops.sum(w), 1.0)


def _focal_tversky(y_true, y_pred, alpha, beta, gamma, smooth):
    # Clamp away from 0: d/dx x**(1/γ) is infinite there and would turn a perfect batch into NaN.
    miss = ops.maximum(1.0 - tversky_index(y_true, y_pred, alpha, beta, smooth), EPSILON)
    return ops.power(miss, 1.0 / gamma)


class _BatchLoss(keras.losses.Loss):
    """Base: every subclass returns one scalar for the whole batch."""

    def __init__(self, name, smooth=SMOOTH, **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def get_config(self):
        config = super().get_config()
        config["smooth"] = self.smooth
        return config


@keras.saving.register_keras_serializable(package="landslide_mapper")
class TverskyLoss(_BatchLoss):
    """1 − TI; α > β makes a missed landslide pixel cost more than a false alarm."""

    def __init__(self, alpha=0.7, beta=0.3, smooth=SMOOTH, name="tversky", **kwargs):
        super().__init__(name=name, smooth=smooth, **kwargs)
        self.alpha, self.beta = float(alpha), float(beta)

    def call(self, y_true, y_pred):
        return 1.0 - tversky_index(y_true, y_pred, self.alpha, self.beta, self.smooth)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


@keras.saving.register_keras_serializable(package="landslide_mapper")
class FocalTverskyLoss(_BatchLoss):
    """(1 − TI)^(1/γ): with γ > 1 the loss keeps pushing on batches that are already fairly good."""

    def __init__(self, alpha=0.7, beta=0.3, gamma=4.0 / 3.0, smooth=SMOOTH, name="focal_tversky",
                 **kwargs):
        super().__init__(name=name, smooth=smooth, **kwargs)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)

    def call(self, y_true, y_pred):
        return _focal_tversky(y_true, y_pred, self.alpha, self.beta, self.gamma, self.smooth)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="landslide_mapper")
class DiceLoss(_BatchLoss):
    """Soft Dice, offered for comparison with the papers' other runs."""

    def __init__(self, smooth=SMOOTH, name="dice", **kwargs):
        super().__init__(name=name, smooth=smooth, **kwargs)

    def call(self, y_true, y_pred):
        tp, fn, fp = _counts(y_true, y_pred)
        return 1.0 - (2.0 * tp + self.smooth) / (2.0 * tp + fn + fp + self.smooth)


@keras.saving.register_keras_serializable(package="landslide_mapper")
class BCELoss(_BatchLoss):
    """Mean binary cross-entropy over all pixels, computed in float32 from probabilities."""

    def __init__(self, smooth=SMOOTH, name="bce", **kwargs):
        super().__init__(name=name, smooth=smooth, **kwargs)

    def call(self, y_true, y_pred):
        return _bce(y_true, y_pred)


@keras.saving.register_keras_serializable(package="landslide_mapper")
class BCEFocalTverskyLoss(_BatchLoss):
    """w_bce·BCE + w_ft·Focal Tversky: BCE gives smooth per-pixel gradients early in training."""

    def __init__(self, bce_weight=0.2, ft_weight=0.8, alpha=0.7, beta=0.3, gamma=4.0 / 3.0,
                 smooth=SMOOTH, name="bce_focal_tversky", **kwargs):
        super().__init__(name=name, smooth=smooth, **kwargs)
        self.bce_weight, self.ft_weight = float(bce_weight), float(ft_weight)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)

    def call(self, y_true, y_pred):
        ft = _focal_tversky(y_true, y_pred, self.alpha, self.beta, self.gamma, self.smooth)
        return self.bce_weight * _bce(y_true, y_pred) + self.ft_weight * ft

    def get_config(self):
        return {**super().get_config(), "bce_weight": self.bce_weight, "ft_weight": self.ft_weight,
                "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


def _scale_of(name: str) -> int:
    """1 for ``prob``, k for ``ds_1_k``; anything else is not an output we know how to supervise."""
    if name == FINAL_OUTPUT:
        return 1
    if name.startswith(DS_PREFIX) and name[len(DS_PREFIX):].isdigit() and int(name[len(DS_PREFIX):]) > 1:
        return int(name[len(DS_PREFIX):])
    raise InputError(f"Unknown model output {name!r}: expected {FINAL_OUTPUT!r} or "
                     f"'{DS_PREFIX}<k>' (deep-supervision output at 1/k resolution).")


def losses_for(output_names, loss: str = "adsms") -> tuple[dict, dict]:
    """(loss by output name, loss weight by output name) for a model's outputs.

    Pass them to ``compile`` through :func:`in_output_order`, not as dicts (see module note).
    """
    names = list(output_names)
    for name in names:
        _scale_of(name)
    if FINAL_OUTPUT not in names:
        raise InputError(f"The model has no {FINAL_OUTPUT!r} output (outputs: {names}).")
    losses, weights = {}, {}
    for name in names:
        final = name == FINAL_OUTPUT
        if loss == "adsms":
            # Bhuyan et al.: Focal Tversky on the intermediate outputs, plain Tversky on the last.
            losses[name] = TverskyLoss() if final else FocalTverskyLoss()
            weights[name] = 1.0
        elif loss == "tversky":
            losses[name], weights[name] = TverskyLoss(), 1.0
        elif loss == "focal_tversky":
            losses[name], weights[name] = FocalTverskyLoss(), 1.0
        elif loss == "dice":
            losses[name], weights[name] = DiceLoss(), 1.0
        elif loss == "bce":
            losses[name], weights[name] = BCELoss(), 1.0
        elif loss == "bce_focal_tversky":
            losses[name] = BCEFocalTverskyLoss()
            weights[name] = 5.0 if final else 1.0
        else:
            raise InputError(f"Unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}.")
    return losses, weights


def in_output_order(by_name: dict, output_names) -> list:
    """The values of a by-name dict as a list in the model's output order, for ``compile``."""
    return [by_name[name] for name in output_names]


def downsample_targets(mask, output_names) -> dict:
    """Targets by output name: the mask for ``prob``, its k×k average (fraction of landslide
    pixels) for ``ds_1_k``. Works on (N, H, W, C) and (H, W, C) tensors, eagerly or in tf.data.

    With a weight channel (C = 2, see :func:`split_target`) the coarse label is the weighted
    fraction of landslide pixels and the coarse weight the mean weight of the k×k cell, so a
    cell of unknown pixels weighs nothing at any scale."""
    import tensorflow as tf

    mask = tf.convert_to_tensor(mask, tf.float32)
    rank = mask.shape.rank
    if rank not in (3, 4):
        raise InputError(f"A training mask must be (H, W, C) or (N, H, W, C); got shape {mask.shape}.")
    batched = mask if rank == 4 else mask[tf.newaxis]
    weighted = mask.shape[-1] == 2
    targets = {}
    for name in output_names:
        k = _scale_of(name)
        if k == 1:
            targets[name] = mask
            continue
        if weighted:
            y, w = batched[..., :1], batched[..., 1:]
            pw = tf.nn.avg_pool2d(w, ksize=k, strides=k, padding="VALID")
            py = tf.nn.avg_pool2d(y * w, ksize=k, strides=k, padding="VALID") / tf.maximum(pw, 1e-6)
            pooled = tf.concat([py, pw], axis=-1)
        else:
            pooled = tf.nn.avg_pool2d(batched, ksize=k, strides=k, padding="VALID")
        targets[name] = pooled if rank == 4 else pooled[0]
    return targets


def targets_in_order(mask, output_names):
    """Targets as ``fit`` needs them for a list-output model: a tuple in output order, or the
    bare mask when there is a single output."""
    names = list(output_names)
    targets = downsample_targets(mask, names)
    if len(names) == 1:
        return targets[names[0]]
    return tuple(targets[name] for name in names)
