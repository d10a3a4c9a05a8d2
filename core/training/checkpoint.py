"""The cascade checkpoint: one folder a user picks, grows by fine-tuning, and maps with.

A checkpoint folder holds

* ``model.keras``: the trainable network (all outputs, deep supervision included);
* ``model.onnx``: the inference network (full-resolution head only, NCHW, dynamic batch and
  size) with the model metadata embedded, so the folder or that file alone can be mapped with;
* ``checkpoint.json``: identity, architecture, channels, normalisation, lineage, and the
  SHA-256 of both model files, written last, so a partial or corrupted copy is detected;
* ``MODEL_CARD.md``: the same facts for people.

Checkpoints are written into a hidden staging folder and renamed into place when complete;
a taken name gets a suffix, so a base checkpoint is never replaced by its fine-tuned child.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelError
from ..mapping.model_metadata import METADATA_KEY, ModelMetadata
from ..jobs.run_folder import RunFolder

FORMAT = "landslide_mapper.checkpoint"
VERSION = 1
INFO_NAME = "checkpoint.json"
KERAS_NAME = "model.keras"
ONNX_NAME = "model.onnx"
CARD_NAME = "MODEL_CARD.md"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def today() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Checkpoint:
    folder: Path
    info: dict[str, Any]

    @property
    def id(self) -> str:
        return self.info["id"]

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def channels(self) -> list[str]:
        return list(self.info["channels"])

    @property
    def lineage(self) -> list[dict]:
        return list(self.info.get("lineage", []))

    @property
    def onnx_path(self) -> Path:
        return self.folder / ONNX_NAME

    @property
    def keras_path(self) -> Path:
        return self.folder / KERAS_NAME

    def load_keras(self):
        """The trainable Keras model (heavy: imports TensorFlow)."""
        import keras

        from . import losses  # noqa: F401  (registers the serialisable losses)

        try:
            model = keras.saving.load_model(str(self.keras_path), compile=False)
        except Exception as exc:  # Keras raises many types for a damaged archive
            raise ModelError(f"Checkpoint {self.folder}: {KERAS_NAME} cannot be loaded "
                             f"({type(exc).__name__}: {str(exc).strip()[:300]}).") from None
        n_in = model.inputs[0].shape[-1]
        if n_in != len(self.channels):
            raise ModelError(f"Checkpoint {self.folder}: the network takes {n_in} channels but "
                             f"{INFO_NAME} lists {len(self.channels)} ({', '.join(self.channels)}).")
        return model


def metadata_from_info(info: dict[str, Any]) -> ModelMetadata:
    arch = info["architecture"]
    return ModelMetadata(
        name=info["name"], channels=list(info["channels"]), mean=list(info["mean"]),
        std=list(info["std"]), tile_size=int(info.get("tile_size", 256)),
        threshold=float(info.get("threshold", 0.5)), layout="NCHW",
        size_multiple=int(info.get("size_multiple", 16)), kind="cascade",
        description=info.get("description", ""),
        architecture=f"{arch['name']} (base filters {arch['base_filters']}, depth {arch['depth']})",
        lineage=list(info.get("lineage", [])), pixel_size=list(info.get("pixel_size_m", [])))


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """The checkpoint folder for a path to the folder or to any file inside it."""
    p = Path(path)
    if p.is_file() and p.name in (INFO_NAME, KERAS_NAME, ONNX_NAME, CARD_NAME):
        return p.parent
    return p


def model_name(path: str | os.PathLike) -> str:
    """What to call a model in messages: its checkpoint folder's name, or the ONNX file's."""
    p = Path(path)
    return p.parent.name if p.name in (INFO_NAME, KERAS_NAME, ONNX_NAME, CARD_NAME) else p.stem or str(p)


def load_checkpoint(path: str | os.PathLike, verify: bool = True) -> Checkpoint:
    """Open a checkpoint, checking it is complete and its files are the ones it was saved with."""
    folder = checkpoint_folder(path)
    if not folder.exists():
        raise ModelError(f"Checkpoint {path} does not exist.")
    if not folder.is_dir():
        raise ModelError(f"{path} is not a cascade checkpoint: expected a checkpoint folder (with "
                         f"{INFO_NAME}, {KERAS_NAME} and {ONNX_NAME}) or a file inside one.")
    info_path = folder / INFO_NAME
    if not info_path.exists():
        raise ModelError(f"{folder} is not a complete cascade checkpoint: {INFO_NAME} is missing "
                         "(a plain ONNX model can be used for mapping, but not for fine-tuning).")
    try:
        info = json.loads(info_path.read_text())
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise ValueError("it does not declare the Landslide Mapper checkpoint format")
        for key in ("id", "name", "architecture", "channels", "mean", "std", "files"):
            if key not in info:
                raise ValueError(f"'{key}' is missing")
        if not isinstance(info["files"], dict) or not {KERAS_NAME, ONNX_NAME} <= set(info["files"]):
            raise ValueError(f"'files' must list {KERAS_NAME} and {ONNX_NAME}")
        version = int(info.get("version", 0))
        metadata_from_info(info).validate(str(info_path))
    except ModelError as exc:
        raise ModelError(f"Checkpoint {folder}: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        raise ModelError(f"Checkpoint {folder}: {INFO_NAME} is unreadable or not a Landslide Mapper "
                         f"checkpoint ({exc}).") from None
    if version > VERSION:
        raise ModelError(f"Checkpoint {folder} was written by a newer Landslide Mapper (format "
                         f"version {info['version']}); update the plugin to use it.")
    for name, digest in info["files"].items():
        f = folder / name
        if not f.exists():
            raise ModelError(f"Checkpoint {folder} is incomplete: {name} is missing.")
        if verify and _sha256(f) != digest:
            raise ModelError(f"Checkpoint {folder} is corrupt: {name} differs from the file it was "
                             "saved with (truncated copy or edited file). Copy the checkpoint again.")
    return Checkpoint(folder, info)


def model_card(info: dict[str, Any]) -> str:
    arch = info["architecture"]
    lines = [f"# {info['name']}", "",
             info.get("description") or "A Landslide Mapper cascade checkpoint.", "",
             "| | |", "|---|---|",
             f"| id | `{info['id']}` |",
             f"| created | {info.get('created', '')} |",
             f"| architecture | {arch['name']}, base filters {arch['base_filters']}, depth {arch['depth']}, "
             f"{arch.get('parameters', '?'):,} parameters |" if isinstance(arch.get("parameters"), int)
             else f"| architecture | {arch['name']}, base filters {arch['base_filters']}, depth {arch['depth']} |",
             f"| input channels (in order) | {', '.join(info['channels'])} |",
             "| normalisation | (x − mean) / std per channel, x in reflectance units (0–1), NDVI in −1…1 |",
             f"| mean | {', '.join(f'{v:.4f}' for v in info['mean'])} |",
             f"| std | {', '.join(f'{v:.4f}' for v in info['std'])} |",
             f"| tile size / threshold | {info.get('tile_size')} px / {info.get('threshold')} |",
             f"| pixel size trained on | {_pixel_text(info.get('pixel_size_m'))} |",
             f"| files | {', '.join(info['files'])} |"]
    if info.get("weight_storage"):
        lines.append(f"| weights stored as | {info['weight_storage']}, computed in float32 (on a random probe "
                     f"the probabilities moved by at most {info.get('float16_max_abs_diff', 0):.1e}) |")
    lines += ["",
              "## Lineage (the cascade, oldest stage first)", ""]
    stages = info.get("lineage", [])
    if not stages:
        lines.append("No training stage recorded.")
    else:
        lines += ["| stage | mode | region | years | trigger | patches (train/val) | epochs | "
                  "val precision | val recall | val F1 | val IoU | date | base id |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in stages:
            m = s.get("validation", {})
            p = s.get("patches", {})
            lines.append(
                f"| {s.get('stage')} | {s.get('mode', '')} | {s.get('region', '')} | "
                f"{', '.join(str(y) for y in s.get('years', []))} | {s.get('trigger', '')} | "
                f"{p.get('train', '?')}/{p.get('validation', '?')} | {s.get('epochs', '')} | "
                + " | ".join(f"{m[k]:.3f}" if isinstance(m.get(k), (int, float)) else "–"
                             for k in ("precision", "recall", "f1", "iou"))
                + f" | {s.get('date', '')} | {s.get('base_id') or '–'} |")
        for s in stages:
            if improvement_text(s):
                lines += ["", f"Stage {s['stage']}: " + improvement_text(s).replace("NOT better", "**not better**")]
            if unreviewed_text(s):
                lines += ["", f"Stage {s['stage']}: " + unreviewed_text(s)]
        notes = [s for s in stages if s.get("notes")]
        for s in notes:
            lines += ["", f"Stage {s['stage']}: {s['notes']}"]
    lines += ["", "Validation metrics are pixel scores at the threshold on the stage's own "
              "validation patches (spatially blocked split unless stated), not on unseen regions.", ""]
    return "\n".join(lines)


def _num(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "–"


def improvement_text(stage: dict) -> str:
    """What a fine-tuning stage (or its result) gained over its base on the same validation
    patches, for the log, the dock and Processing; empty when there was no base to compare."""
    base = stage.get("base_validation")
    if base is None or stage.get("improved") is None:
        return ""
    new_f1 = (stage.get("validation") or {}).get("f1")
    if stage["improved"]:
        return (f"The new checkpoint is better than its base on the same validation patches: F1 "
                f"{_num(new_f1)} against {_num(base.get('f1'))}.")
    return (f"The new checkpoint is NOT better than its base on the same validation patches (F1 {_num(new_f1)} "
            f"against {_num(base.get('f1'))}): keep mapping with the base, or add corrections and train again.")


def unreviewed_text(stage: dict) -> str:
    """What a fine-tuning stage (or its result) maps on unreviewed ground of its images against
    its base (``stage["unreviewed"]``, core/training/anchors.py); empty when not measured."""
    d = stage.get("unreviewed")
    if not d:
        return ""
    ratio = f" ({d['area_ratio']:g} times)" if d.get("area_ratio") is not None else ""
    return (f"On {d['patches']} patches of unreviewed ground the new checkpoint maps "
            f"{100 * d['new_share']:.2f} % of the pixels as landslide, its base {100 * d['base_share']:.2f} %"
            f"{ratio}; the two maps agree with F1 {d['agreement_f1']:.2f}. Nobody has checked that ground: "
            "where the base missed landslides the difference is the gain, where it was right it is new "
            "error, so look at a quiet year there before trusting the new stage.")


def _pixel_text(px) -> str:
    if not px:
        return "not recorded"
    lo, hi = px
    return f"{lo:g} m" if lo == hi else f"{lo:g}–{hi:g} m"


def seal(folder: RunFolder, info: dict[str, Any], card_extra: str = "") -> None:
    """Finish a checkpoint folder whose model files are written: record their SHA-256 in
    ``info``, then write the model card (with ``card_extra`` appended) and, last,
    ``checkpoint.json``."""
    info["files"] = {n: _sha256(folder.path(n)) for n in (KERAS_NAME, ONNX_NAME)}
    folder.path(CARD_NAME).write_text(model_card(info) + card_extra, encoding="utf-8")
    folder.path(INFO_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def write_checkpoint(output_dir: str | os.PathLike, name: str, keras_model, info: dict[str, Any],
                     export: Callable[[Any, Path, dict[str, str]], None] | None = None,
                     check_onnx: Callable[[Path], dict[str, Any]] | None = None,
                     before_commit: Callable[[], None] | None = None) -> Path:
    """Save ``keras_model`` with ``info`` as a new checkpoint folder; returns its final path.

    ``info`` holds everything but ``files`` (filled here); ``export(model, path, metadata)``
    writes the ONNX file (default: :func:`onnx_export.export_onnx` of the ``prob`` head);
    ``check_onnx(path)`` may compare it with Keras before anything is committed, and what it
    returns is recorded in ``checkpoint.json``; ``before_commit`` may raise (e.g. on cancel)
    to discard everything at the last moment.
    """
    if export is None:
        from .onnx_export import export_onnx

        def export(model, path, metadata):
            export_onnx(model, path, output="prob", metadata=metadata)

    with RunFolder(output_dir, name) as folder:
        # the folder's final name goes into the files (a taken name gets a suffix)
        info = {"format": FORMAT, "version": VERSION, **info, "name": folder.free_name().name}
        keras_model.save(str(folder.path(KERAS_NAME)))
        meta = metadata_from_info(info)
        export(keras_model, folder.path(ONNX_NAME), {METADATA_KEY: meta.to_json()})
        if check_onnx is not None:
            info.update(check_onnx(folder.path(ONNX_NAME)))
        seal(folder, info)
        if before_commit is not None:
            before_commit()
        return folder.commit()
