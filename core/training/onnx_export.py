"""Export a trained Keras 3 segmentation network to ONNX, without tf2onnx.

tf2onnx pins protobuf ~3.20 and lags behind Keras 3, while our networks only use a small,
fixed set of layers. So we walk the Keras functional graph backwards from one output layer
(models trained with deep supervision have extra heads we do not ship) and write the ONNX
graph directly with ``onnx.helper``.

The exported graph is NCHW throughout: the weights are transposed once at export time rather
than transposing activations at run time. Input ``image`` is ``[N, C, H, W]`` and output
``prob`` is ``[N, 1, H, W]`` with dynamic batch and spatial size. Any layer or setting outside
the supported vocabulary raises :class:`ModelError` naming the layer, instead of exporting a
graph that silently computes something else.

Keras and ONNX are imported lazily: this module is part of the training tools and must not
make the plugin (which only needs onnxruntime) import TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

INPUT_NAME = "image"
OUTPUT_NAME = "prob"
MIN_OPSET = 13
PRODUCER = "landslide_mapper"
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def keras_to_onnx(model, output: str = "prob", opset: int = 17) -> "onnx.ModelProto":
    """The ONNX model computing the Keras model's output layer ``output`` (NCHW, float32)."""
    import onnx
    from onnx import helper

    max_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= max_opset:
        raise ModelError(f"ONNX opset {opset} is not supported; use {MIN_OPSET}..{max_opset}.")
    exporter = _Exporter(model, output)
    graph = exporter.build_graph()
    opset_ids = [helper.make_opsetid("", int(opset))]
    proto = helper.make_model(graph, opset_imports=opset_ids, producer_name=PRODUCER)
    # the oldest IR version that can hold this opset, so older runtimes can still load the file
    proto.ir_version = helper.find_min_ir_version_for(opset_ids)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # a bug in this exporter, not in the user's model
        raise ModelError(f"The ONNX graph exported from '{output}' is invalid: {exc}") from exc
    return proto


def export_onnx(model, path, output: str = "prob", metadata: dict[str, str] | None = None,
                opset: int = 17) -> None:
    """Write the ONNX export of ``model``'s output ``output`` to ``path`` with ``metadata``.

    The file is written in place; the caller is responsible for atomic placement."""
    from onnx import helper

    proto = keras_to_onnx(model, output=output, opset=opset)
    if metadata:
        props = {}
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ModelError(f"ONNX metadata must map strings to strings; got {key!r}: {type(value).__name__}.")
            props[key] = value
        helper.set_model_props(proto, props)
    try:
        Path(path).write_bytes(proto.SerializeToString())
    except OSError as exc:
        raise ModelError(f"Cannot write the ONNX model {path}: {exc}") from exc


@dataclass
class _Value:
    """An ONNX value standing for one Keras tensor, with how its spatial size relates to the input's.

    ``scale`` is output/input size (pooling halves it, upsampling doubles it); ``exact`` turns
    False after a 'valid' convolution, whose output size is no longer a multiple of H and W."""

    name: str
    scale: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))
    exact: bool = True


class _Exporter:
    """Walks the Keras graph from one output tensor and emits ONNX nodes and initializers."""

    def __init__(self, model, output: str):
        import keras
        try:  # not public API; Keras inserts it between layers of a mixed-precision functional model
            from keras.src.ops.core import Cast
        except ImportError:  # pragma: no cover - a future Keras that moved it
            Cast = None

        self.keras = keras
        self.model = model
        self.nodes: list = []
        self.initializers: list = []
        self.values: dict[tuple, _Value] = {}  # _key(KerasTensor) -> ONNX value
        self.consumers: dict[tuple, int] = {}  # _key(KerasTensor) -> uses within the exported graph
        self.folded: set[int] = set()  # id() of Conv2D call nodes merged into the following BN
        self.used_names: set[str] = set()
        self.handlers: dict[type, Callable] = {
            keras.layers.Conv2D: self._conv,
            keras.layers.BatchNormalization: self._batch_norm,
            keras.layers.Activation: self._activation_layer,
            keras.layers.ReLU: self._relu_layer,
            keras.layers.MaxPooling2D: self._pool,
            keras.layers.AveragePooling2D: self._pool,
            keras.layers.UpSampling2D: self._upsample,
            keras.layers.Concatenate: self._concatenate,
            keras.layers.Add: self._elementwise,
            keras.layers.Multiply: self._elementwise,
            keras.layers.Dropout: self._identity,
            keras.layers.SpatialDropout2D: self._identity,
            keras.layers.Identity: self._identity,
        }
        if Cast is not None:
            self.handlers[Cast] = self._cast
        self.activations = {keras.activations.linear: "linear", keras.activations.relu: "relu",
                            keras.activations.sigmoid: "sigmoid"}
        self.input_tensor = self._single_input()
        self.output_tensor = self._find_output(output)

    # ---- graph walking -------------------------------------------------------------------

    def _single_input(self):
        inputs = list(getattr(self.model, "inputs", None) or [])
        if len(inputs) != 1:
            raise ModelError(f"Model '{self.model.name}' has {len(inputs)} inputs; "
                             "exactly one image input is supported for ONNX export.")
        tensor = inputs[0]
        shape = tuple(tensor.shape)
        if len(shape) != 4 or shape[-1] is None:
            raise ModelError(f"Model '{self.model.name}' input has shape {shape}; a (batch, height, "
                             "width, channels) image with a known number of channels is required.")
        return tensor

    def _find_output(self, output: str):
        outputs = list(getattr(self.model, "outputs", None) or [])
        names = [t._keras_history.operation.name for t in outputs]
        if output not in names:
            raise ModelError(f"Model '{self.model.name}' has no output layer '{output}'; "
                             f"its outputs are: {', '.join(names) or 'none'}.")
        tensor = outputs[names.index(output)]
        shape = tuple(tensor.shape)
        if len(shape) != 4 or shape[-1] != 1:
            raise ModelError(f"Output layer '{output}' has shape {shape}; a single-channel "
                             "(batch, height, width, 1) probability map is required.")
        return tensor

    @staticmethod
    def _key(tensor) -> tuple:
        """Identity of a Keras tensor: (producing layer, call index, output index) of its history."""
        layer, node_index, tensor_index = tensor._keras_history
        return id(layer), node_index, tensor_index

    @staticmethod
    def _producer(tensor):
        """The (layer, call node) that created ``tensor``, from its Keras history."""
        history = tensor._keras_history
        layer = history.operation
        return layer, layer._inbound_nodes[history.node_index]

    def _schedule(self) -> list:
        """Keras call nodes needed for the output, inputs before users (iterative DFS post-order)."""
        order, done, on_stack = [], set(), set()
        input_key = self._key(self.input_tensor)
        stack = [(self.output_tensor, False)]
        while stack:
            tensor, expanded = stack.pop()
            if self._key(tensor) == input_key:
                continue
            layer, node = self._producer(tensor)
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                on_stack.discard(id(node))
                order.append(node)
                continue
            if isinstance(layer, self.keras.layers.InputLayer) or not node.input_tensors:
                raise ModelError(f"Layer '{layer.name}' ({type(layer).__name__}) is a graph input other "
                                 f"than the model's image input; it cannot be exported.")
            if id(node) in on_stack:  # cannot happen in a Keras DAG; guards against corrupt history
                raise ModelError(f"Layer '{layer.name}' is part of a cycle in the Keras graph.")
            on_stack.add(id(node))
            stack.append((tensor, True))
            # reversed so that inputs are visited, and thus emitted, in call order
            for parent in reversed(node.input_tensors):
                stack.append((parent, False))
        return order

    # ---- emission helpers ----------------------------------------------------------------

    def build_graph(self):
        from onnx import TensorProto, helper

        order = self._schedule()
        for node in order:
            for tensor in node.input_tensors:
                self.consumers[self._key(tensor)] = self.consumers.get(self._key(tensor), 0) + 1
        for node in order:
            if type(node.operation) is self.keras.layers.BatchNormalization:
                folded = self._foldable_conv(node)
                if folded is not None:
                    self.folded.add(id(folded[1]))
        self.values[self._key(self.input_tensor)] = _Value(INPUT_NAME)
        self.used_names.add(INPUT_NAME)
        for node in order:
            layer = node.operation
            handler = self.handlers.get(type(layer))
            if handler is None:
                raise self._error(layer, "this layer type is not supported by the ONNX exporter")
            if len(node.output_tensors) != 1:
                raise self._error(layer, f"it has {len(node.output_tensors)} outputs; one is supported")
            inputs = [self.values[self._key(t)] for t in node.input_tensors]
            self.values[self._key(node.output_tensors[0])] = handler(layer, node, inputs)

        final = self.values[self._key(self.output_tensor)]
        if final.name == INPUT_NAME:
            self.nodes.append(helper.make_node("Identity", [INPUT_NAME], [OUTPUT_NAME], name=OUTPUT_NAME))
        else:
            self._rename(final.name, OUTPUT_NAME)
        spatial = ["H", "W"] if final.exact and final.scale == (1, 1) else ["H_out", "W_out"]
        channels = int(self.input_tensor.shape[-1])
        graph_in = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", channels, "H", "W"])
        graph_out = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1, *spatial])
        return helper.make_graph(self.nodes, f"{self.model.name}/{self.output_tensor._keras_history.operation.name}",
                                 [graph_in], [graph_out], initializer=self.initializers)

    def _rename(self, old: str, new: str) -> None:
        """Give the final value the public output name, wherever it appears."""
        for node in self.nodes:
            if node.name == old:
                node.name = new
            for seq in (node.input, node.output):
                for i, name in enumerate(seq):
                    if name == old:
                        seq[i] = new

    def _name(self, base: str) -> str:
        """A unique, deterministic ONNX name derived from a layer name."""
        name, i = base, 1
        while name in self.used_names or name in (OUTPUT_NAME,):
            name, i = f"{base}_{i}", i + 1
        self.used_names.add(name)
        return name

    def _node_name(self, layer, node) -> str:
        """The layer name, suffixed by the call index for a layer called more than once."""
        index = layer._inbound_nodes.index(node)
        return layer.name if index == 0 else f"{layer.name}_call{index}"

    def _const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._name(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def _emit(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        from onnx import helper

        out = self._name(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def _error(self, layer, reason: str) -> ModelError:
        return ModelError(f"Layer '{layer.name}' ({type(layer).__name__}) cannot be exported to ONNX: {reason}.")

    def _numpy(self, variable) -> np.ndarray:
        """A weight as float64 for folding arithmetic (mixed-precision variables are float32)."""
        return np.asarray(self.keras.ops.convert_to_numpy(variable), dtype=np.float64)

    def _activation_name(self, layer, fn) -> str:
        name = self.activations.get(fn)
        if name is None:
            raise self._error(layer, f"activation {getattr(fn, '__name__', fn)!r} is not supported "
                                     "(only linear, relu, sigmoid)")
        return name

    def _apply_activation(self, kind: str, value: _Value, base: str) -> _Value:
        if kind == "linear":
            return value
        op = {"relu": "Relu", "sigmoid": "Sigmoid"}[kind]
        return _Value(self._emit(op, [value.name], base), value.scale, value.exact)

    def _check_channels_last(self, layer) -> None:
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise self._error(layer, f"data_format {layer.data_format!r} is not supported (only channels_last)")

    # ---- layers --------------------------------------------------------------------------

    def _conv_params(self, layer):
        """Validated (OIHW kernel, bias or None, pads, exact, activation) of a Conv2D layer."""
        self._check_channels_last(layer)
        if tuple(layer.strides) != (1, 1):
            raise self._error(layer, f"strides {tuple(layer.strides)} are not supported (only 1)")
        if tuple(layer.dilation_rate) != (1, 1):
            raise self._error(layer, f"dilation_rate {tuple(layer.dilation_rate)} is not supported (only 1)")
        if layer.groups != 1:
            raise self._error(layer, f"groups={layer.groups} is not supported (only 1)")
        kh, kw = layer.kernel_size
        if layer.padding == "same":
            if kh % 2 == 0 or kw % 2 == 0:
                raise self._error(layer, f"padding 'same' with the even kernel size {(kh, kw)} is asymmetric")
            pads = [kh // 2, kw // 2, kh // 2, kw // 2]
            exact = True
        elif layer.padding == "valid":
            pads = [0, 0, 0, 0]
            exact = (kh, kw) == (1, 1)
        else:
            raise self._error(layer, f"padding {layer.padding!r} is not supported")
        activation = self._activation_name(layer, layer.activation)
        kernel = self._numpy(layer.kernel).transpose(3, 2, 0, 1)  # HWIO -> OIHW
        bias = self._numpy(layer.bias) if layer.use_bias else None
        return kernel, bias, pads, exact, activation

    def _emit_conv(self, src: _Value, weights: str, base: str, kernel, bias, pads, exact, activation) -> _Value:
        """Conv (+ activation) reading ``src``; initializers named after ``weights``, outputs after ``base``."""
        inputs = [src.name, self._const(f"{weights}/kernel", kernel)]
        if bias is not None:
            inputs.append(self._const(f"{weights}/bias", bias))
        conv_base = base if activation == "linear" else f"{base}/conv"
        out = self._emit("Conv", inputs, conv_base, kernel_shape=list(kernel.shape[2:]), pads=pads,
                         strides=[1, 1], dilations=[1, 1], group=1)
        return self._apply_activation(activation, _Value(out, src.scale, src.exact and exact), base)

    def _foldable_conv(self, node):
        """The Conv2D layer and call node feeding only this BatchNormalization call, if any."""
        (tensor,) = node.input_tensors
        if self._key(tensor) == self._key(self.input_tensor) or self.consumers.get(self._key(tensor), 0) != 1:
            return None
        layer, parent = self._producer(tensor)
        if type(layer) is not self.keras.layers.Conv2D or layer.activation is not self.keras.activations.linear:
            return None
        return layer, parent

    def _conv(self, layer, node, inputs):
        params = self._conv_params(layer)  # validated even when folded, so errors name the conv
        if id(node) in self.folded:  # emitted by the BatchNormalization that follows (_batch_norm)
            return _Value("<folded>", inputs[0].scale, inputs[0].exact)
        name = self._node_name(layer, node)
        return self._emit_conv(inputs[0], name, name, *params)

    def _bn_params(self, layer):
        if layer.axis not in (-1, 3):
            raise self._error(layer, f"axis={layer.axis} is not supported (only the channel axis -1)")
        mean = self._numpy(layer.moving_mean)
        var = self._numpy(layer.moving_variance)
        gamma = self._numpy(layer.gamma) if layer.scale else np.ones_like(mean)
        beta = self._numpy(layer.beta) if layer.center else np.zeros_like(mean)
        return gamma, beta, mean, var, float(layer.epsilon)

    def _batch_norm(self, layer, node, inputs):
        gamma, beta, mean, var, eps = self._bn_params(layer)
        base = self._node_name(layer, node)
        folded = self._foldable_conv(node)
        if folded is not None:
            conv_layer, conv_node = folded
            kernel, bias, pads, exact, activation = self._conv_params(conv_layer)
            factor = gamma / np.sqrt(var + eps)
            bias = np.zeros_like(mean) if bias is None else bias
            conv_in = self.values[self._key(conv_node.input_tensors[0])]
            weights = f"{self._node_name(conv_layer, conv_node)}+{base}"
            return self._emit_conv(conv_in, weights, base, kernel * factor[:, None, None, None],
                                   (bias - mean) * factor + beta, pads, exact, activation)
        src = inputs[0]
        names = [src.name] + [self._const(f"{base}/{k}", v) for k, v in
                              (("gamma", gamma), ("beta", beta), ("moving_mean", mean), ("moving_variance", var))]
        out = self._emit("BatchNormalization", names, base, epsilon=eps)
        return _Value(out, src.scale, src.exact)

    def _activation_layer(self, layer, node, inputs):
        kind = self._activation_name(layer, layer.activation)
        return self._apply_activation(kind, inputs[0], self._node_name(layer, node))

    def _relu_layer(self, layer, node, inputs):
        if layer.max_value is not None or layer.negative_slope or layer.threshold:
            raise self._error(layer, "only a plain ReLU (no max_value, negative_slope or threshold) is supported")
        return self._apply_activation("relu", inputs[0], self._node_name(layer, node))

    def _pool(self, layer, node, inputs):
        self._check_channels_last(layer)
        pool, strides = tuple(layer.pool_size), tuple(layer.strides)
        if pool != strides or pool[0] != pool[1] or layer.padding != "valid":
            raise self._error(layer, f"pool_size {pool}, strides {strides}, padding {layer.padding!r} are not "
                                     "supported (only k×k pools with strides k and 'valid' padding)")
        if type(layer) is self.keras.layers.MaxPooling2D and pool != (2, 2):
            raise self._error(layer, f"pool_size {pool} is not supported (only 2)")
        op = "MaxPool" if type(layer) is self.keras.layers.MaxPooling2D else "AveragePool"
        src = inputs[0]
        out = self._emit(op, [src.name], self._node_name(layer, node), kernel_shape=list(pool), strides=list(pool))
        return _Value(out, (src.scale[0] / pool[0], src.scale[1] / pool[1]), src.exact)

    def _upsample(self, layer, node, inputs):
        self._check_channels_last(layer)
        sh, sw = (int(s) for s in layer.size)
        if sh < 1 or sw < 1:
            raise self._error(layer, f"size {(sh, sw)} is not supported")
        if layer.interpolation == "nearest":
            # Keras repeats each pixel (ops.repeat): source index floor(out / s)
            attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        elif layer.interpolation == "bilinear":
            # Keras calls tf.image.resize, which samples at half-pixel centres
            attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
        else:
            raise self._error(layer, f"interpolation {layer.interpolation!r} is not supported "
                                     "(only nearest and bilinear)")
        base = self._node_name(layer, node)
        scales = self._const(f"{base}/scales", np.array([1, 1, sh, sw], np.float32))
        src = inputs[0]
        out = self._emit("Resize", [src.name, "", scales], base, **attrs)
        return _Value(out, (src.scale[0] * sh, src.scale[1] * sw), src.exact)

    def _concatenate(self, layer, node, inputs):
        if layer.axis not in (-1, 3):
            raise self._error(layer, f"axis={layer.axis} is not supported (only the channel axis -1)")
        out = self._emit("Concat", [v.name for v in inputs], self._node_name(layer, node), axis=1)
        return _Value(out, inputs[0].scale, all(v.exact for v in inputs))

    def _elementwise(self, layer, node, inputs):
        """Add / Multiply of two or more tensors; NCHW broadcasting covers a 1-channel operand."""
        op = "Add" if type(layer) is self.keras.layers.Add else "Mul"
        base = self._node_name(layer, node)
        acc = inputs[0].name
        for i, value in enumerate(inputs[1:], start=1):
            acc = self._emit(op, [acc, value.name], base if i == len(inputs) - 1 else f"{base}/{i}")
        return _Value(acc, inputs[0].scale, all(v.exact for v in inputs))

    def _cast(self, op, node, inputs):
        """A float cast that Keras adds between mixed-precision layers: a no-op in a float32 export."""
        if op.dtype not in FLOAT_DTYPES:
            raise self._error(op, f"a cast to {op.dtype} is not supported (only between float types)")
        return inputs[0]

    def _identity(self, layer, node, inputs):
        """Dropout is the identity at inference: reuse the input value, emit nothing."""
        return inputs[0]


__all__ = ["export_onnx", "keras_to_onnx", "INPUT_NAME", "OUTPUT_NAME"]
