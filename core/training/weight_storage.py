"""Half-size checkpoints: the weights stored as float16, the network still run in float32.

The two bundled checkpoints made the plugin ZIP 33 MB, over the 25 MB that the QGIS plugin
repository accepts; float weights hardly compress. Stored as float16 (11 significant bits)
they take half the room. Nothing is computed in float16: Keras casts the stored values into
its float32 variables when it loads the archive, and the ONNX graph casts each float16
initializer to float32 once, which ONNX Runtime folds into a constant when the session
starts, so mapping is as fast as before. What the rounding changes in the probabilities is
measured on a probe and recorded in ``checkpoint.json`` (``float16_max_abs_diff``); fine-tuning
from a compact checkpoint trains float32 weights as usual and writes a float32 child.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .checkpoint import CARD_NAME, KERAS_NAME, ONNX_NAME, load_checkpoint, metadata_from_info, model_card, seal
from ..errors import ModelError
from ..mapping.model import METADATA_KEY
from ..jobs.run_folder import RunFolder

STORAGE = "float16"
WEIGHTS_ENTRY = "model.weights.h5"       # the weights inside a Keras 3 archive
MAX_PROB_DIFF = 0.02
"""Largest change of any probability on the probe (random normal inputs, harsher than
imagery: the bundled checkpoints moved by 0.005-0.011) that a compact copy may bring."""


def halve_keras(src: Path, dst: Path) -> None:
    """Copy the Keras archive ``src`` to ``dst`` with its float32 weights stored as float16."""
    import h5py

    with zipfile.ZipFile(src) as zin:
        entries = {info.filename: zin.read(info) for info in zin.infolist()}
    if WEIGHTS_ENTRY not in entries:
        raise ModelError(f"{src} is not a Keras 3 archive: it has no {WEIGHTS_ENTRY}.")
    out = io.BytesIO()
    with h5py.File(io.BytesIO(entries[WEIGHTS_ENTRY]), "r") as fin, h5py.File(out, "w") as fout:
        fout.attrs.update(dict(fin.attrs))

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if getattr(data, "dtype", None) == np.float32:
                    data = data.astype(np.float16)
                fout.create_dataset(name, data=data).attrs.update(dict(obj.attrs))
            else:
                fout.require_group(name).attrs.update(dict(obj.attrs))

        fin.visititems(copy)
    entries[WEIGHTS_ENTRY] = out.getvalue()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in entries.items():
            zout.writestr(name, data)


def halve_onnx(src: Path, dst: Path, metadata: dict[str, str] | None = None) -> None:
    """Copy the ONNX model ``src`` to ``dst`` with each float32 initializer stored as float16
    and cast back to float32 by a ``Cast`` node, so the graph still computes in float32;
    ``metadata`` entries replace the model's own."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}__float16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{init.name}__to_float32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    if metadata:
        helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **metadata})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))


def _probe_probs(onnx_path: Path, n_channels: int, size: int) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(2, n_channels, size, size)).astype(np.float32)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def compact_checkpoint(src, output_dir, name: str | None = None, description: str | None = None) -> Path:
    """Write a copy of checkpoint ``src`` with float16 weight storage into ``output_dir``
    (named ``name`` or as the source); returns the new folder. The copy keeps the source's id,
    lineage, description (unless ``description`` is given) and model card (what was added
    to the card by hand included)."""
    ckpt = load_checkpoint(src)
    if ckpt.info.get("weight_storage") == STORAGE:
        raise ModelError(f"Checkpoint {ckpt.folder} already stores its weights as {STORAGE}.")
    old_card = (ckpt.folder / CARD_NAME).read_text(encoding="utf-8") if (ckpt.folder / CARD_NAME).exists() else ""
    generated = model_card(ckpt.info)
    added = old_card[len(generated):] if old_card.startswith(generated) else ""
    with RunFolder(output_dir, name or ckpt.folder.name) as folder:
        info = {**ckpt.info, "name": folder.free_name().name, "weight_storage": STORAGE}
        if description is not None:
            info["description"] = description
        halve_keras(ckpt.keras_path, folder.path(KERAS_NAME))
        meta = metadata_from_info(info)
        halve_onnx(ckpt.onnx_path, folder.path(ONNX_NAME), {METADATA_KEY: meta.to_json()})
        size = meta.size_multiple * 4
        diff = float(np.max(np.abs(_probe_probs(folder.path(ONNX_NAME), len(ckpt.channels), size)
                                   - _probe_probs(ckpt.onnx_path, len(ckpt.channels), size))))
        if not diff <= MAX_PROB_DIFF:
            raise ModelError(f"Storing {ckpt.folder.name} as {STORAGE} would change its probabilities by up to "
                             f"{diff:.3g} (more than {MAX_PROB_DIFF}); keep the float32 checkpoint.")
        info["float16_max_abs_diff"] = diff
        seal(folder, info, added)
        return folder.commit()


__all__ = ["compact_checkpoint", "halve_keras", "halve_onnx", "STORAGE"]
