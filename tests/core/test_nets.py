"""The Keras models: shapes, naming, exporter vocabulary, save/load, and what freezing freezes."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import NO_TRAINING

keras = pytest.importorskip("keras", reason=NO_TRAINING)
tf = pytest.importorskip("tensorflow", reason=NO_TRAINING)

from landslide_mapper.core.training import losses
from landslide_mapper.core.training import nets  # noqa: E402
from landslide_mapper.core.errors import InputError  # noqa: E402

F = 4          # tiny base filters keep every test fast
SIZE = 32      # a multiple of size_multiple(4) = 16
ADSMS_OUTPUTS = ["prob", "ds_1_2", "ds_1_4", "ds_1_8"]
ALLOWED = {"InputLayer", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D",
           "AveragePooling2D", "UpSampling2D", "Concatenate", "Add", "Multiply", "Dropout"}
ADSMS_ORDER = ["enc1", "pyr2", "enc2", "pyr4", "enc3", "pyr8", "enc4", "bridge",
               "att4", "dec4", "att3", "dec3", "att2", "dec2", "att1", "dec1", "head"]


@pytest.fixture(scope="module")
def models():
    return {a: nets.build_model(a, channels=5, base_filters=F) for a in nets.ARCHITECTURES}


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 5)).astype(np.float32)


def as_list(out):
    return out if isinstance(out, (list, tuple)) else [out]


def test_size_multiple():
    assert nets.size_multiple(4) == 16 and nets.size_multiple(3) == 8


@pytest.mark.parametrize("arch", nets.ARCHITECTURES)
def test_outputs_names_and_shapes(models, batch, arch):
    model = models[arch]
    assert model.inputs[0].shape == (None, None, None, 5)
    assert model.get_layer("image").name == "image"
    out = as_list(model(batch, training=False))
    if arch == "adsms_unet":
        assert list(model.output_names) == ADSMS_OUTPUTS
        assert [tuple(o.shape) for o in out] == [(2, 32, 32, 1), (2, 16, 16, 1), (2, 8, 8, 1), (2, 4, 4, 1)]
    else:
        assert list(model.output_names) == ["prob"]
        assert [tuple(o.shape) for o in out] == [(2, 32, 32, 1)]
    for o in out:
        assert o.dtype == tf.float32
        assert 0.0 <= float(tf.reduce_min(o)) and float(tf.reduce_max(o)) <= 1.0


def test_other_tile_sizes(models):
    out = as_list(models["adsms_unet"](np.zeros((1, 48, 64, 5), np.float32)))
    assert [tuple(o.shape[1:3]) for o in out] == [(48, 64), (24, 32), (12, 16), (6, 8)]


@pytest.mark.parametrize("arch", nets.ARCHITECTURES)
def test_layer_names_follow_block_scheme(models, arch):
    model = models[arch]
    order = nets.block_order(model)
    for layer in model.layers:
        block = nets.block_of(layer.name)
        if isinstance(layer, keras.layers.InputLayer):
            assert block is None
            continue
        assert block in order, layer.name
        if layer.name not in ADSMS_OUTPUTS:
            assert layer.name.startswith(block + "_") and len(layer.name) > len(block) + 1
    assert nets.block_of("prob") == "head" and nets.block_of("ds_1_2") == "head"
    assert nets.block_of("image") is None and nets.block_of("enc3_conv1") == "enc3"


def test_block_orders(models):
    assert nets.block_order(models["adsms_unet"]) == ADSMS_ORDER
    plain = ["enc1", "enc2", "enc3", "enc4", "bridge", "dec4", "dec3", "dec2", "dec1", "head"]
    assert nets.block_order(models["unet"]) == plain
    assert nets.block_order(models["resunet"]) == plain
    assert nets.block_order(models["attention_unet"]) == [b for b in ADSMS_ORDER if not b.startswith("pyr")]


@pytest.mark.parametrize("arch", nets.ARCHITECTURES)
def test_only_exporter_vocabulary(models, arch):
    for layer in models[arch].layers:
        kind = type(layer).__name__
        assert kind in ALLOWED, layer.name
        cfg = layer.get_config()
        if kind == "Conv2D":
            assert tuple(cfg["kernel_size"]) in ((1, 1), (3, 3))
            assert tuple(cfg["strides"]) == (1, 1) and tuple(cfg["dilation_rate"]) == (1, 1)
            assert cfg["padding"] == "same" and cfg["activation"] == "linear" and cfg["groups"] == 1
        elif kind == "Activation":
            assert cfg["activation"] in ("relu", "sigmoid", "linear")
        elif kind == "MaxPooling2D":
            assert tuple(cfg["pool_size"]) == (2, 2) and tuple(cfg["strides"]) == (2, 2)
        elif kind == "AveragePooling2D":
            assert cfg["pool_size"] == cfg["strides"] and cfg["padding"] == "valid"
        elif kind == "UpSampling2D":
            assert cfg["interpolation"] in ("nearest", "bilinear")
        elif kind == "Concatenate":
            assert cfg["axis"] == -1
        elif kind == "BatchNormalization":
            assert cfg["axis"] == -1


def test_adsms_structure(models):
    model = models["adsms_unet"]
    names = {layer.name for layer in model.layers}
    # pyramid levels from the input, concatenated into enc2..enc4
    for scale, enc in ((2, "enc2"), (4, "enc3"), (8, "enc4")):
        pool = model.get_layer(f"pyr{scale}_pool")
        assert pool.pool_size == (scale, scale)
        assert pool.input.name == model.inputs[0].name
        concat_inputs = {t._keras_history.operation.name for t in model.get_layer(f"{enc}_concat").input}
        assert concat_inputs == {f"{enc}_pool", f"pyr{scale}_relu1"}
    assert "pyr16_pool" not in names and "enc1_concat" not in names
    # each attention gate multiplies its skip by a one-channel coefficient
    for k in range(1, 5):
        gate = model.get_layer(f"att{k}_gate")
        assert {t._keras_history.operation.name for t in gate.input} == {f"enc{k}_relu2", f"att{k}_alpha"}
        assert model.get_layer(f"att{k}_alpha").output.shape[-1] == 1
    assert model.get_layer("bridge_conv1").filters == 16 * F
    assert model.get_layer("enc4_conv2").filters == 8 * F


def test_unknown_architecture_and_bad_params():
    with pytest.raises(InputError, match="adsms_unet, unet, resunet, attention_unet"):
        nets.build_model("segformer")
    with pytest.raises(InputError, match="depth"):
        nets.build_model("unet", depth=1)


def test_mixed_precision_outputs_are_float32(batch):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = nets.build_model("adsms_unet", base_filters=F, depth=3)
        assert model.get_layer("enc1_conv1").compute_dtype == "float16"
        out = model(batch, training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert [o.dtype for o in out] == [tf.float32] * 3
    assert list(model.output_names) == ["prob", "ds_1_2", "ds_1_4"]


def test_keras_save_load_round_trip(tmp_path, batch):
    model = nets.build_model("adsms_unet", base_filters=F)
    # give BN layers non-trivial moving statistics so inference differs from initialisation
    model(batch * 3 + 1, training=True)
    path = tmp_path / "model.keras"
    model.save(path)
    again = keras.saving.load_model(path, compile=False)
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(as_list(model.predict(batch, verbose=0)), as_list(again.predict(batch, verbose=0))):
        np.testing.assert_array_equal(a, b)


def _trainable_counts(model):
    nets.apply_freeze(model, "none")
    return {layer.name: len(layer.trainable_weights) for layer in model.layers}


def _block_set(order, last):
    return set(order[:order.index(last) + 1])


def test_apply_freeze_sets(models):
    model = models["adsms_unet"]
    counts = _trainable_counts(model)
    total = len(model.trainable_weights)
    assert total == sum(counts.values())
    named = [layer.name for layer in model.layers if nets.block_of(layer.name) is not None]

    assert nets.apply_freeze(model, "none") == []
    assert all(layer.trainable for layer in model.layers)

    cases = {
        "encoder": {"pyr2", "pyr4", "pyr8", "enc1", "enc2", "enc3", "enc4", "bridge"},
        "upto:enc2": {"enc1", "pyr2", "enc2"},
        "upto:head": set(ADSMS_ORDER),
    }
    for spec, blocks in cases.items():
        frozen = nets.apply_freeze(model, spec)
        expected = [n for n in named if nets.block_of(n) in blocks]
        assert frozen == expected, spec
        for layer in model.layers:
            if nets.block_of(layer.name) is not None:
                assert layer.trainable == (nets.block_of(layer.name) not in blocks), (spec, layer.name)
        assert len(model.trainable_weights) == sum(c for n, c in counts.items() if n not in frozen)
        assert len(model.trainable_weights) < total
    assert _block_set(ADSMS_ORDER, "enc2") == cases["upto:enc2"]
    nets.apply_freeze(model, "none")
    assert len(model.trainable_weights) == total


def test_apply_freeze_errors(models):
    model = models["unet"]
    with pytest.raises(InputError) as err:
        nets.apply_freeze(model, "upto:pyr2")
    assert "'pyr2'" in str(err.value) and "enc1, enc2, enc3, enc4, bridge, dec4" in str(err.value)
    with pytest.raises(InputError, match="'none', 'encoder' or 'upto:<block>'"):
        nets.apply_freeze(model, "decoder")


def test_short_fit_changes_only_trainable_weights():
    rng = np.random.default_rng(3)
    model = nets.build_model("adsms_unet", base_filters=F)
    frozen = set(nets.apply_freeze(model, "upto:enc2"))
    by_name, weights = losses.losses_for(model.output_names, "adsms")
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=losses.in_output_order(by_name, model.output_names),
                  loss_weights=losses.in_output_order(weights, model.output_names),
                  run_eagerly=True)   # tracing would take most of a 2-step fit
    x = rng.normal(size=(4, SIZE, SIZE, 5)).astype(np.float32)
    masks = (rng.random((4, SIZE, SIZE, 1)) > 0.7).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, masks)).batch(2).map(
        lambda img, m: (img, losses.targets_in_order(m, model.output_names)))
    before = {layer.name: [w.numpy().copy() for w in layer.weights] for layer in model.layers}
    history = model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert {"prob_loss", "ds_1_2_loss", "ds_1_4_loss", "ds_1_8_loss"} <= set(history.history)

    changed_blocks = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        after = [w.numpy() for w in layer.weights]
        same = [np.array_equal(a, b) for a, b in zip(before[layer.name], after)]
        if layer.name in frozen:
            # kernels, biases and the BN moving statistics all stay as they were
            assert all(same), layer.name
        else:
            assert not same[0], layer.name       # the kernel / gamma moved
            changed_blocks.add(nets.block_of(layer.name))
    assert changed_blocks == set(ADSMS_ORDER) - {"enc1", "pyr2", "enc2"}
