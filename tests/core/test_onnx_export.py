"""Keras 3 -> ONNX export checked against Keras itself, run with ONNX Runtime.

The models are real Keras functional graphs with random weights and random BatchNormalization
statistics, so a wrong weight layout, a wrong fold or a wrong resize mode shows up numerically.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from landslide_mapper.core.errors import ModelError  # noqa: E402
from landslide_mapper.core.training.onnx_export import export_onnx, keras_to_onnx  # noqa: E402

L = keras.layers
ATOL = 1e-4
SIZES = [(1, 32, 32), (3, 64, 48)]


def _randomise(model, seed: int = 0) -> None:
    """Non-trivial conv biases and BN gamma/beta/moving statistics (the defaults are 0/1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape).astype(np.float32))
        if isinstance(layer, L.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, c).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.3, 2.0, c).astype(np.float32))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0, 0.3, c).astype(np.float32))


def build_model(channels: int = 4, seed: int = 0):
    """Every supported layer; two outputs, the exported head 'prob' being the second one."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, channels), name="img")
    c1 = L.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inp)
    a1 = L.Activation("relu", name="a1")(L.BatchNormalization(epsilon=1e-3, name="bn1")(c1))  # folded
    p1 = L.MaxPooling2D(name="pool1")(a1)
    c2 = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(p1)
    c2b = L.Conv2D(8, 1, name="c2b")(c2)
    bn2 = L.BatchNormalization(center=False, name="bn2")(c2b)  # folded, no beta
    p2 = L.AveragePooling2D(2, name="pool2")(bn2)
    c3 = L.ReLU(name="r3")(L.Conv2D(8, 5, padding="same", name="c3")(p2))
    up_bil = L.UpSampling2D(2, interpolation="bilinear", name="up_bilinear")(c3)
    cat1 = L.Concatenate(name="cat1")([up_bil, bn2])
    bn3 = L.BatchNormalization(scale=False, name="bn3")(cat1)  # after Concatenate: not foldable
    c4 = L.Conv2D(8, 3, padding="same", name="c4")(bn3)
    bn4 = L.BatchNormalization(name="bn4")(c4)  # c4 is also used by the Add: not foldable
    add = L.Add(name="add")([bn4, c4])
    drop = L.Dropout(0.5, name="drop")(add)
    up_near = L.UpSampling2D(2, name="up_nearest")(drop)
    cat2 = L.Concatenate(axis=3, name="cat2")([up_near, a1])
    sdrop = L.SpatialDropout2D(0.3, name="sdrop")(cat2)
    gate = L.Conv2D(1, 1, activation="sigmoid", name="gate")(sdrop)
    mul = L.Multiply(name="mul")([sdrop, gate])  # (.., 16) * (.., 1) broadcast
    head = L.Conv2D(1, 3, padding="same", name="head")(mul)
    prob = L.Activation("sigmoid", dtype="float32", name="prob")(head)
    aux = L.Conv2D(1, 1, activation="sigmoid", name="aux_head")(c3)  # deep supervision only
    model = keras.Model(inp, [aux, prob], name="unet_like")
    _randomise(model, seed)
    return model


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, path, output="prob", metadata={"landslide_mapper": '{"name": "x"}', "b": "2"})
    return path


def _keras_prob(model, x_nhwc, index: int = 1) -> np.ndarray:
    out = model(x_nhwc, training=False)[index]
    return np.asarray(out, dtype=np.float32).transpose(0, 3, 1, 2)


def _ort(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def max_diff(model, session, channels: int = 4, seed: int = 1, reference=None) -> float:
    """Largest |ORT - Keras| over the batch/size combinations, from one session (dynamic dims)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n, h, w in SIZES:
        x = rng.normal(0, 1, (n, h, w, channels)).astype(np.float32)
        (got,) = session.run(["prob"], {"image": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})
        want = _keras_prob(reference or model, x)
        assert got.shape == (n, 1, h, w)
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def test_matches_keras_for_dynamic_batch_and_size(model, exported):
    diff = max_diff(model, _ort(exported))
    print(f"max abs diff float32 model: {diff:.2e}")
    assert diff < ATOL


def test_graph_interface_and_folding(exported):
    proto = onnx.load(str(exported))
    (inp,), (out,) = proto.graph.input, proto.graph.output

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    assert (inp.name, dims(inp)) == ("image", ["N", 4, "H", "W"])
    assert (out.name, dims(out)) == ("prob", ["N", 1, "H", "W"])
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("BatchNormalization") == 2  # bn3, bn4; bn1 and bn2 folded into c1, c2b
    assert ops.count("Resize") == 2 and "Dropout" not in ops and "Transpose" not in ops
    init = {i.name for i in proto.graph.initializer}
    assert not [n for n in init if "aux_head" in n]  # only the exported head's dependencies
    assert not [n for n in proto.graph.node if "aux_head" in n.name]
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in proto.graph.initializer)
    assert "c1+bn1/kernel" in init and "bn1/moving_mean" not in init


def test_metadata_round_trip(exported):
    props = _ort(exported).get_modelmeta().custom_metadata_map
    assert props["landslide_mapper"] == '{"name": "x"}' and props["b"] == "2"
    assert {p.key: p.value for p in onnx.load(str(exported)).metadata_props} == props


def test_deterministic_re_export(model, exported, tmp_path):
    again = tmp_path / "again.onnx"
    export_onnx(model, again, output="prob", metadata={"landslide_mapper": '{"name": "x"}', "b": "2"})
    assert again.read_bytes() == exported.read_bytes()
    assert keras_to_onnx(model).SerializeToString() == keras_to_onnx(model).SerializeToString()


def test_other_head_and_unknown_output(model, tmp_path):
    path = tmp_path / "aux.onnx"
    export_onnx(model, path, output="aux_head")
    proto = onnx.load(str(path))
    assert not [i for i in proto.graph.initializer if i.name.startswith(("head", "gate", "c4"))]
    x = np.random.default_rng(3).normal(0, 1, (2, 16, 24, 4)).astype(np.float32)
    (got,) = _ort(path).run(None, {"image": x.transpose(0, 3, 1, 2).copy()})
    want = _keras_prob(model, x, index=0)  # the aux head works at a quarter of the resolution
    assert got.shape == want.shape == (2, 1, 4, 6)
    assert np.abs(got - want).max() < ATOL
    dims = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, "H_out", "W_out"]
    with pytest.raises(ModelError, match="nope"):
        keras_to_onnx(model, output="nope")


def test_valid_padding_and_plain_relu_output(tmp_path):
    inp = keras.Input((None, None, 3))
    x = L.Conv2D(4, 3, padding="valid", name="valid3")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(1, 1, activation="sigmoid", name="out")(x)
    model = keras.Model(inp, x)
    _randomise(model, 5)
    path = tmp_path / "v.onnx"
    export_onnx(model, path, output="out")
    xin = np.random.default_rng(4).normal(0, 1, (2, 20, 17, 3)).astype(np.float32)
    (got,) = _ort(path).run(None, {"image": xin.transpose(0, 3, 1, 2).copy()})
    want = np.asarray(model(xin, training=False)).transpose(0, 3, 1, 2)
    assert got.shape == (2, 1, 18, 15) and np.abs(got - want).max() < ATOL


def _tiny(layer_factory):
    inp = keras.Input((None, None, 2))
    x = layer_factory()(inp)
    x = L.Conv2D(1, 1, name="out")(x)
    return keras.Model(inp, x)


@pytest.mark.parametrize("factory, name", [
    (lambda: L.Conv2DTranspose(2, 3, padding="same", name="deconv"), "deconv"),
    (lambda: L.Conv2D(2, 3, strides=2, padding="same", name="strided"), "strided"),
    (lambda: L.Conv2D(2, 3, dilation_rate=2, padding="same", name="dilated"), "dilated"),
    (lambda: L.Conv2D(2, 3, padding="same", activation="tanh", name="tanh_conv"), "tanh_conv"),
    (lambda: L.Lambda(lambda t: t * 2.0, name="lam"), "lam"),
    (lambda: L.LeakyReLU(name="leaky"), "leaky"),
    (lambda: L.UpSampling2D(2, interpolation="bicubic", name="bicubic"), "bicubic"),
    (lambda: L.MaxPooling2D(3, strides=1, name="pool3"), "pool3"),
])
def test_unsupported_layers_raise(factory, name):
    with pytest.raises(ModelError, match=f"'{name}'"):
        keras_to_onnx(_tiny(factory), output="out")


def test_mixed_precision_model_exports_float32(model, exported):
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        mixed = build_model()  # Functional inserts float16/float32 Cast ops between layers
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(model.get_weights())
    assert mixed.get_layer("c1").compute_dtype == "float16"
    proto = keras_to_onnx(mixed)
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in proto.graph.initializer)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    # the float32 export of the float16-trained weights equals the float32 network...
    exact = max_diff(model, session)
    # ...and the float16 Keras network itself is only close to it
    loose = max_diff(mixed, session)
    print(f"max abs diff mixed export vs float32 Keras: {exact:.2e}; vs mixed_float16 Keras: {loose:.2e}")
    assert exact < ATOL
    assert loose < 2e-2
