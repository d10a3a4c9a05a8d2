"""Losses against hand-computed values, and deep-supervision targets."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import NO_TRAINING

keras = pytest.importorskip("keras", reason=NO_TRAINING)
tf = pytest.importorskip("tensorflow", reason=NO_TRAINING)

from landslide_mapper.core.training import losses as L  # noqa: E402
from landslide_mapper.core.errors import InputError  # noqa: E402

# y = [1, 1, 0, 0], p = [0.9, 0.2, 0.3, 0.0]  →  TP = 0.9 + 0.2 = 1.1,
# FN = 0.1 + 0.8 = 0.9, FP = 0.3 + 0.0 = 0.3 (shaped as two 1×2 images of one channel).
Y = np.array([1, 1, 0, 0], np.float32).reshape(2, 1, 2, 1)
P = np.array([0.9, 0.2, 0.3, 0.0], np.float32).reshape(2, 1, 2, 1)
TI = 1.1 / (1.1 + 0.7 * 0.9 + 0.3 * 0.3)          # 1.1 / 1.82
TVERSKY = 1 - TI                                   # 0.72 / 1.82 ≈ 0.395604
FOCAL = (0.72 / 1.82) ** 0.75                      # γ = 4/3 → exponent 3/4
DICE = 1 - 2.2 / (2.2 + 0.9 + 0.3)                 # 1.2 / 3.4 ≈ 0.352941
BCE = (-math.log(0.9) - math.log(0.2) - math.log(0.7) - 0.0) / 4   # p = 0 with y = 0 costs ~0


def value(loss, y=Y, p=P):
    out = loss(tf.constant(y), tf.constant(p))
    assert out.shape == ()
    return float(out)


@pytest.mark.parametrize("loss, expected", [
    (L.TverskyLoss(), TVERSKY),
    (L.FocalTverskyLoss(), FOCAL),
    (L.DiceLoss(), DICE),
    (L.BCELoss(), BCE),
    (L.BCEFocalTverskyLoss(), 0.2 * BCE + 0.8 * FOCAL),
])
def test_hand_computed_values(loss, expected):
    assert value(loss) == pytest.approx(expected, abs=2e-6)


def test_hand_values_are_what_we_think():
    assert TVERSKY == pytest.approx(0.395604, abs=1e-6)
    assert DICE == pytest.approx(0.352941, abs=1e-6)
    assert BCE == pytest.approx(0.517868, abs=1e-6)


def test_batch_wide_not_per_sample():
    # Per-sample Tversky would average 1 - 0.9/0.97 (sample 1: TP .9, FN .1) and
    # 1 - 0.2/0.97 (sample 2: y=[1,0], p=[.2,.3]); the batch-wide value pools the counts.
    y = np.array([[1, 0], [1, 0]], np.float32).reshape(2, 1, 2, 1)
    p = np.array([[0.9, 0.0], [0.2, 0.3]], np.float32).reshape(2, 1, 2, 1)
    expected = 1 - 1.1 / (1.1 + 0.7 * 0.9 + 0.3 * 0.3)
    assert value(L.TverskyLoss(), y, p) == pytest.approx(expected, abs=2e-6)


def test_alpha_weighs_misses_more_than_false_alarms():
    # Same TP (2) in both; two missed pixels versus two false-alarm pixels.
    y_miss = np.array([1, 1, 1, 1, 0, 0], np.float32).reshape(1, 1, 6, 1)
    p_miss = np.array([1, 1, 0, 0, 0, 0], np.float32).reshape(1, 1, 6, 1)
    y_fa = np.array([1, 1, 0, 0, 0, 0], np.float32).reshape(1, 1, 6, 1)
    p_fa = np.array([1, 1, 1, 1, 0, 0], np.float32).reshape(1, 1, 6, 1)
    miss = value(L.TverskyLoss(), y_miss, p_miss)
    false_alarm = value(L.TverskyLoss(), y_fa, p_fa)
    assert miss == pytest.approx(1 - 2 / (2 + 0.7 * 2), abs=1e-6)
    assert false_alarm == pytest.approx(1 - 2 / (2 + 0.3 * 2), abs=1e-6)
    assert miss > false_alarm
    assert value(L.FocalTverskyLoss(), y_miss, p_miss) > value(L.FocalTverskyLoss(), y_fa, p_fa)
    symmetric = L.TverskyLoss(alpha=0.5, beta=0.5)
    assert value(symmetric, y_miss, p_miss) == pytest.approx(value(symmetric, y_fa, p_fa), abs=1e-6)


def test_perfect_and_empty_batches_are_finite():
    y = np.zeros((1, 2, 2, 1), np.float32)
    for loss in (L.TverskyLoss(), L.FocalTverskyLoss(), L.DiceLoss(), L.BCEFocalTverskyLoss()):
        assert value(loss, y, y) == pytest.approx(0.0, abs=1e-4)
        p = tf.Variable(np.full((1, 2, 2, 1), 0.5, np.float32))
        with tf.GradientTape() as tape:
            out = loss(tf.constant(np.ones_like(y)), p)
        assert np.all(np.isfinite(tape.gradient(out, p).numpy()))


def test_float16_predictions_give_float32_loss():
    for loss in (L.TverskyLoss(), L.BCEFocalTverskyLoss()):
        out = loss(tf.constant(Y, tf.float16), tf.constant(P, tf.float16))
        assert out.dtype == tf.float32


def test_config_round_trip():
    loss = L.FocalTverskyLoss(alpha=0.6, beta=0.4, gamma=2.0)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(again, L.FocalTverskyLoss)
    assert (again.alpha, again.beta, again.gamma) == (0.6, 0.4, 2.0)
    assert value(again) == pytest.approx(value(loss), abs=1e-7)


ADSMS_OUTPUTS = ["prob", "ds_1_2", "ds_1_4", "ds_1_8"]


def test_losses_for_adsms():
    losses, weights = L.losses_for(ADSMS_OUTPUTS, "adsms")
    assert list(losses) == ADSMS_OUTPUTS
    assert type(losses["prob"]) is L.TverskyLoss
    assert all(type(losses[n]) is L.FocalTverskyLoss for n in ADSMS_OUTPUTS[1:])
    assert weights == {n: 1.0 for n in ADSMS_OUTPUTS}


def test_losses_for_combo_weights():
    losses, weights = L.losses_for(ADSMS_OUTPUTS, "bce_focal_tversky")
    assert all(type(v) is L.BCEFocalTverskyLoss for v in losses.values())
    assert weights == {"prob": 5.0, "ds_1_2": 1.0, "ds_1_4": 1.0, "ds_1_8": 1.0}
    assert L.in_output_order(weights, ADSMS_OUTPUTS) == [5.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("name, cls", [("tversky", L.TverskyLoss), ("focal_tversky", L.FocalTverskyLoss),
                                       ("dice", L.DiceLoss), ("bce", L.BCELoss)])
def test_losses_for_single_loss(name, cls):
    losses, weights = L.losses_for(ADSMS_OUTPUTS, name)
    assert all(type(v) is cls for v in losses.values())
    assert set(weights.values()) == {1.0}
    losses, weights = L.losses_for(["prob"], name)
    assert list(losses) == ["prob"] and weights == {"prob": 1.0}


def test_losses_for_errors():
    with pytest.raises(InputError, match="bce_focal_tversky"):
        L.losses_for(ADSMS_OUTPUTS, "jaccard")
    with pytest.raises(InputError, match="logits"):
        L.losses_for(["prob", "logits"])


def test_downsample_targets_batched_and_unbatched():
    rng = np.random.default_rng(1)
    mask = (rng.random((2, 16, 16, 1)) > 0.6).astype(np.float32)
    targets = L.downsample_targets(tf.constant(mask), ADSMS_OUTPUTS)
    assert list(targets) == ADSMS_OUTPUTS
    np.testing.assert_array_equal(targets["prob"].numpy(), mask)
    for k, name in ((2, "ds_1_2"), (4, "ds_1_4"), (8, "ds_1_8")):
        expected = mask.reshape(2, 16 // k, k, 16 // k, k, 1).mean(axis=(2, 4))
        assert targets[name].shape == (2, 16 // k, 16 // k, 1)
        np.testing.assert_allclose(targets[name].numpy(), expected, atol=1e-6)
    single = L.downsample_targets(tf.constant(mask[1]), ADSMS_OUTPUTS)
    assert single["ds_1_4"].shape == (4, 4, 1)
    np.testing.assert_allclose(single["ds_1_4"].numpy(), targets["ds_1_4"].numpy()[1], atol=1e-6)


def test_downsample_targets_hand_values():
    mask = np.zeros((4, 4, 1), np.float32)
    mask[0, 0] = mask[0, 1] = mask[1, 0] = 1      # 3 of the top-left 2×2 cell
    mask[3, 3] = 1                                # 1 of the bottom-right 2×2 cell
    t = L.downsample_targets(tf.constant(mask), ["prob", "ds_1_2", "ds_1_4"])
    np.testing.assert_allclose(t["ds_1_2"].numpy()[..., 0], [[0.75, 0.0], [0.0, 0.25]])
    np.testing.assert_allclose(t["ds_1_4"].numpy()[..., 0], [[4 / 16]])


def test_targets_inside_tf_data():
    masks = np.ones((3, 8, 8, 1), np.float32)
    ds = tf.data.Dataset.from_tensor_slices(masks).map(lambda m: L.targets_in_order(m, ADSMS_OUTPUTS)).batch(3)
    prob, d2, d4, d8 = next(iter(ds))
    assert prob.shape == (3, 8, 8, 1) and d2.shape == (3, 4, 4, 1)
    assert d4.shape == (3, 2, 2, 1) and d8.shape == (3, 1, 1, 1)
    single = L.targets_in_order(tf.constant(masks), ["prob"])
    assert single.shape == (3, 8, 8, 1)


def test_losses_compile_in_graph_and_xla():
    for loss in (L.TverskyLoss(), L.FocalTverskyLoss(), L.DiceLoss(), L.BCELoss(), L.BCEFocalTverskyLoss()):
        graph = tf.function(lambda y, p, loss=loss: loss(y, p), jit_compile=True)
        assert float(graph(tf.constant(Y), tf.constant(P))) == pytest.approx(value(loss), abs=1e-6)
