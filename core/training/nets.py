"""Keras 3 segmentation models: ADSMS U-Net (Bhuyan et al. 2023, after Abraham & Khan 2019)
and the U-Net, ResU-Net and Attention U-Net the papers compare it with.

Two constraints shape the code:

* The layer vocabulary is small and fixed (plain Conv2D 1×1/3×3, BatchNormalization,
  Activation, pooling, UpSampling2D, Concatenate, Add, Multiply, Dropout) because the ONNX
  exporter is hand-written for exactly these layers; no Lambda or custom layer, so a ``.keras``
  file also loads without ``custom_objects``.
* Every layer is named ``<block>_<what>``, so fine-tuning can freeze by block and a test can
  say exactly what is frozen (the papers' code froze everything by looking up a missing name).

Blocks, for ``depth`` D (levels k = 1..D, level k at 1/2**(k-1) resolution):
``enc<k>`` encoder level k (its max-pool, the pyramid concatenation, the conv block);
``pyr<2**(k-1)>`` the input pyramid level injected into ``enc<k>`` (k ≥ 2, ADSMS only);
``bridge`` the bottom (1/2**D); ``att<k>`` the attention gate on skip k; ``dec<k>`` decoder
level k (its up-sampling, concatenation and conv block); ``head`` the 1×1 convs and sigmoids.

Forward order (:func:`block_order`): enc1, pyr2, enc2, pyr4, enc3, pyr8, enc4, bridge,
att4, dec4, att3, dec3, att2, dec2, att1, dec1, head. Each pyramid level sits just before the
encoder level that consumes it, so "freeze up to enc2" freezes what feeds enc1..enc2 and
nothing that only feeds deeper levels.
"""
from __future__ import annotations

import re

from ..errors import InputError, ModelError

ARCHITECTURES = ("adsms_unet", "unet", "resunet", "attention_unet")
INPUT_NAME = "image"
FINAL_OUTPUT = "prob"
FREEZE_HELP = "'none', 'encoder' or 'upto:<block>'"

_BLOCK_RE = re.compile(r"^(enc|dec|att|pyr)(\d+)$")


def size_multiple(depth: int = 4) -> int:
    """Input height and width must be multiples of this (one max-pool per level)."""
    return 2 ** int(depth)


def _layers():
    import keras

    return keras.layers


def _bn(L, name: str):
    """Batch normalisation whose moving statistics follow the batches within a few dozen
    steps (momentum 0.9, not Keras' 0.99): small training sets give only tens of steps per
    epoch, and with 0.99 the per-epoch validation (inference mode) judges stale statistics."""
    return L.BatchNormalization(momentum=0.9, name=name)


def _conv(x, filters, kernel, name):
    return _layers().Conv2D(filters, kernel, strides=1, padding="same", name=name)(x)


def _conv_bn_relu(x, filters, block, i):
    L = _layers()
    x = _conv(x, filters, 3, f"{block}_conv{i}")
    x = _bn(L, name=f"{block}_bn{i}")(x)
    return L.Activation("relu", name=f"{block}_relu{i}")(x)


def _double_conv(x, filters, block):
    x = _conv_bn_relu(x, filters, block, 1)
    return _conv_bn_relu(x, filters, block, 2)


def _residual(x, filters, block):
    """conv-BN-ReLU-conv-BN plus a 1×1-conv shortcut (channel counts differ at every level)."""
    L = _layers()
    shortcut = _conv(x, filters, 1, f"{block}_shortcut")
    shortcut = _bn(L, name=f"{block}_shortcutbn")(shortcut)
    y = _conv_bn_relu(x, filters, block, 1)
    y = _conv(y, filters, 3, f"{block}_conv2")
    y = _bn(L, name=f"{block}_bn2")(y)
    y = L.Add(name=f"{block}_add")([y, shortcut])
    return L.Activation("relu", name=f"{block}_relu2")(y)


def _attention_gate(skip, gating, channels, block):
    """Additive soft attention (Oktay et al. 2018): the coarser decoder feature decides which
    skip pixels pass. The gating signal is up-sampled first so that every conv is stride 1."""
    L = _layers()
    inter = max(channels // 2, 1)
    g = L.UpSampling2D(2, interpolation="nearest", name=f"{block}_up")(gating)
    theta = _conv(skip, inter, 1, f"{block}_theta")
    phi = _conv(g, inter, 1, f"{block}_phi")
    a = L.Add(name=f"{block}_add")([theta, phi])
    a = L.Activation("relu", name=f"{block}_relu")(a)
    a = _conv(a, 1, 1, f"{block}_psi")
    alpha = L.Activation("sigmoid", name=f"{block}_alpha")(a)
    # (N,H,W,C) × (N,H,W,1): Keras 3 Multiply broadcasts the single coefficient channel.
    gated = L.Multiply(name=f"{block}_gate")([skip, alpha])
    gated = _conv(gated, channels, 1, f"{block}_out")
    return _bn(L, name=f"{block}_bn")(gated)


def _head(x, conv_name, output_name):
    """1×1 conv, then a float32 sigmoid as its own layer so outputs stay float32 under
    mixed_float16 and the exporter sees a plain Conv2D."""
    y = _conv(x, 1, 1, conv_name)
    return _layers().Activation("sigmoid", dtype="float32", name=output_name)(y)


def build_model(architecture: str = "adsms_unet", channels: int = 5, base_filters: int = 32,
                depth: int = 4):
    """A fully convolutional model on already-normalised (N, H, W, channels) input, H and W
    multiples of ``size_multiple(depth)``. ADSMS returns [prob, ds_1_2, ds_1_4, ...]; the other
    architectures return prob alone. All outputs are float32 sigmoid probabilities."""
    import keras

    if architecture not in ARCHITECTURES:
        raise InputError(f"Unknown architecture {architecture!r}; choose one of: "
                         f"{', '.join(ARCHITECTURES)}.")
    for label, value, low in (("channels", channels, 1), ("base_filters", base_filters, 1),
                              ("depth", depth, 2)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InputError(f"Model parameter {label} must be an integer ≥ {low}; got {value!r}.")
    L = keras.layers
    pyramid = architecture == "adsms_unet"
    attention = architecture in ("adsms_unet", "attention_unet")
    supervise = architecture == "adsms_unet"
    block = _residual if architecture == "resunet" else _double_conv

    image = keras.Input(shape=(None, None, channels), name=INPUT_NAME)
    skips = []
    x = image
    for k in range(1, depth + 1):
        f = base_filters * 2 ** (k - 1)
        name = f"enc{k}"
        if k > 1:
            x = L.MaxPooling2D(pool_size=2, name=f"{name}_pool")(x)
            if pyramid:
                scale = 2 ** (k - 1)
                p = L.AveragePooling2D(pool_size=scale, strides=scale, padding="valid",
                                       name=f"pyr{scale}_pool")(image)
                p = _conv_bn_relu(p, f, f"pyr{scale}", 1)
                x = L.Concatenate(axis=-1, name=f"{name}_concat")([x, p])
        x = block(x, f, name)
        skips.append(x)

    x = L.MaxPooling2D(pool_size=2, name="bridge_pool")(x)
    x = block(x, base_filters * 2 ** depth, "bridge")

    decoded = {}
    for k in range(depth, 0, -1):
        f = base_filters * 2 ** (k - 1)
        skip = skips[k - 1]
        if attention:
            skip = _attention_gate(skip, x, f, f"att{k}")
        up = L.UpSampling2D(2, interpolation="nearest", name=f"dec{k}_up")(x)
        x = L.Concatenate(axis=-1, name=f"dec{k}_concat")([up, skip])
        x = block(x, f, f"dec{k}")
        decoded[k] = x

    outputs = [_head(decoded[1], "head_conv", FINAL_OUTPUT)]
    if supervise:
        for k in range(2, depth + 1):
            name = f"ds_1_{2 ** (k - 1)}"
            outputs.append(_head(decoded[k], f"head_{name}_conv", name))
    return keras.Model(image, outputs if len(outputs) > 1 else outputs[0], name=architecture)


def block_of(layer_name: str) -> str | None:
    """The block a layer belongs to; None for the input layer."""
    if layer_name == INPUT_NAME:
        return None
    if layer_name == FINAL_OUTPUT or layer_name.startswith("ds_"):
        return "head"
    return layer_name.split("_", 1)[0]


def _rank(block: str) -> tuple:
    """Sort key giving the forward order documented in the module docstring."""
    if block == "bridge":
        return (1, 0, 0)
    if block == "head":
        return (3, 0, 0)
    m = _BLOCK_RE.match(block)
    if m:
        kind, n = m.group(1), int(m.group(2))
        if kind == "enc":
            return (0, n, 1)
        if kind == "pyr" and n >= 2 and n & (n - 1) == 0:
            return (0, n.bit_length(), 0)   # pyr<2**(k-1)> just before enc<k>
        if kind == "att":
            return (2, -n, 0)
        if kind == "dec":
            return (2, -n, 1)
    raise ModelError(f"Layer block {block!r} is not one of this plugin's model blocks; "
                     "the model was not built by landslide_mapper.core.training.nets.")


def block_order(model) -> list[str]:
    """The model's blocks in forward order (see the module docstring)."""
    blocks = {block_of(layer.name) for layer in model.layers} - {None}
    return sorted(blocks, key=_rank)


def apply_freeze(model, freeze: str) -> list[str]:
    """Set ``trainable`` per layer and return the frozen layer names in ``model.layers`` order.

    Call before ``compile``. Frozen BatchNormalization layers run in inference mode (Keras 3),
    so their moving statistics stay as trained, which is what fine-tuning on few samples needs.
    """
    order = block_order(model)
    spec = (freeze or "").strip()
    if spec == "none":
        frozen_blocks = set()
    elif spec == "encoder":
        frozen_blocks = {b for b in order if b == "bridge" or b.startswith(("enc", "pyr"))}
    elif spec.startswith("upto:"):
        target = spec[len("upto:"):].strip()
        if target not in order:
            raise InputError(f"Cannot freeze up to block {target!r}: this model's blocks are, "
                             f"in forward order: {', '.join(order)}.")
        frozen_blocks = set(order[:order.index(target) + 1])
    else:
        raise InputError(f"Unknown freeze setting {freeze!r}; use {FREEZE_HELP}, where <block> "
                         f"is one of: {', '.join(order)}.")
    frozen = []
    for layer in model.layers:
        block = block_of(layer.name)
        if block is None:
            continue
        layer.trainable = block not in frozen_blocks
        if not layer.trainable:
            frozen.append(layer.name)
    return frozen


def transfer_weights(src, dst, keep: list[int]) -> list[str]:
    """Copy ``src``'s weights into ``dst``, an identical network taking a subset of its input
    channels (``keep``: their indexes in ``src``'s input order, e.g. R, G, B of B, G, R, NIR,
    NDVI). Layers reading the image directly get the matching slices of their kernels; every
    other layer is copied as it is. Returns the names of the sliced layers."""
    sliced = []
    for layer in dst.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            source = src.get_layer(layer.name).get_weights()
        except ValueError:
            raise ModelError(f"Layer {layer.name} of the new network has no counterpart in the base "
                             "network; the architectures differ.") from None
        if [w.shape for w in source] == [w.shape for w in weights]:
            layer.set_weights(source)
            continue
        kernel = source[0]
        if kernel.ndim == 4 and kernel.shape[2] > max(keep) and kernel.shape[:2] + kernel.shape[3:] == \
                weights[0].shape[:2] + weights[0].shape[3:] and weights[0].shape[2] == len(keep):
            layer.set_weights([kernel[:, :, keep, :]] + source[1:])
            sliced.append(layer.name)
            continue
        raise ModelError(f"Layer {layer.name}: weights of shape {[w.shape for w in source]} do not fit "
                         f"{[w.shape for w in weights]}.")
    return sliced
