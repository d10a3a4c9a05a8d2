"""The checkpoints and models a user can pick: what is in each folder, read without loading it.

Only JSON sidecars are read (``checkpoint.json`` of a cascade checkpoint, ``<name>.json``
of a plain ONNX model): listing models must never import ONNX Runtime or TensorFlow
into QGIS.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Union

from ..core.geodata.bands import DEFAULT_CHANNELS
from ..core.training.checkpoint import CARD_NAME, INFO_NAME

CHECKPOINT_DIR_KEY = "landslide_mapper/checkpoint_dir"


def default_checkpoint_dir() -> Path:
    """Where new checkpoints go unless the user chose otherwise: the QGIS profile folder."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "landslide_mapper" / "checkpoints"


def user_checkpoint_dir() -> Path:
    """The checkpoints folder chosen in the dock (shared with the Processing algorithms)."""
    from qgis.core import QgsSettings

    return Path(QgsSettings().value(CHECKPOINT_DIR_KEY, "", type=str) or default_checkpoint_dir())


@dataclass(frozen=True)
class ModelEntry:
    """A cascade checkpoint folder or an ``*.onnx`` file, described by its sidecar."""

    path: Path
    name: str
    description: str
    card_problem: Optional[str] = None
    """Why the sidecar could not be used (missing, unreadable, ...), or None."""
    is_checkpoint: bool = False
    channels: list[str] = field(default_factory=lambda: list(DEFAULT_CHANNELS))
    info: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def stages(self) -> list[dict]:
        return list(self.info.get("lineage", []))

    def card_markdown(self) -> str:
        """The model card shown in the dock: the checkpoint's MODEL_CARD.md when present."""
        card = self.path / CARD_NAME if self.is_checkpoint else None
        if card is not None and card.is_file():
            try:
                text = card.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                pass
            else:   # a dock is narrow: headings three levels down
                return "\n".join("###" + line if line.startswith("#") else line for line in text.splitlines())
        lines = [f"# {self.name}", "", self.description or "", "",
                 f"Input channels: {', '.join(self.channels)}", "", f"File: `{self.path}`"]
        if self.card_problem:
            lines += ["", f"**{self.card_problem}**"]
        return "\n".join(lines)


def _text(card: dict, key: str) -> str:
    value = card.get(key)
    return "" if value is None else str(value).strip()


def _channels(card: dict) -> list[str]:
    chans = card.get("channels")
    if isinstance(chans, list) and chans and all(isinstance(c, str) for c in chans):
        return list(chans)
    return list(DEFAULT_CHANNELS)


def read_model_entry(onnx_path: Path) -> ModelEntry:
    """Describe one model file from its ``<name>.json`` model card, if there is one."""
    card_path = onnx_path.with_suffix(".json")
    if not card_path.is_file():
        return ModelEntry(onnx_path, onnx_path.stem, "", f"No model card ({card_path.name}).")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ModelEntry(onnx_path, onnx_path.stem, "", f"Model card {card_path.name} cannot be read: {exc}")
    if not isinstance(card, dict):
        return ModelEntry(onnx_path, onnx_path.stem, "", f"Model card {card_path.name} is not a JSON object.")
    return ModelEntry(onnx_path, _text(card, "name") or onnx_path.stem, _text(card, "description"),
                      channels=_channels(card), info=card)


def read_checkpoint_entry(folder: Path) -> ModelEntry:
    """Describe a cascade checkpoint folder from its ``checkpoint.json``."""
    try:
        info = json.loads((folder / INFO_NAME).read_text(encoding="utf-8"))
        stages = info.get("lineage", [])
        name = str(info.get("name") or folder.name)
        arch = info.get("architecture", {}).get("name", "")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        return ModelEntry(folder, folder.name, "", f"checkpoint.json cannot be read: {exc}", True)
    summary = f"Cascade checkpoint, {arch}, {len(stages)} stage(s)"
    if stages:
        last = stages[-1]
        f1 = (last.get("validation") or {}).get("f1")
        summary += f"; last stage: {last.get('region', '')}" + (f", validation F1 {f1:.2f}" if f1 else "")
    description = str(info.get("description", "")).strip()
    return ModelEntry(folder, name, f"{summary}. {description}".strip(), None, True, _channels(info), info)


def find_models(models_dir: Union[str, Path]) -> list[ModelEntry]:
    """Cascade checkpoint folders and ``*.onnx`` files directly in ``models_dir``, by name.

    A missing or unreadable folder gives an empty list; hidden folders (a checkpoint
    still being written) are skipped.
    """
    folder = Path(models_dir)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found = []
    for p in sorted(entries, key=lambda p: p.name.lower()):
        if p.name.startswith("."):
            continue
        if p.is_dir() and (p / INFO_NAME).is_file():
            found.append(read_checkpoint_entry(p))
        elif p.suffix.lower() == ".onnx" and p.is_file():
            found.append(read_model_entry(p))
    return found


def read_entry(path: Union[str, Path]) -> Optional[ModelEntry]:
    """One model the user browsed to: a checkpoint folder (or a file in it) or an ONNX file."""
    p = Path(path)
    if p.is_file() and p.parent.joinpath(INFO_NAME).is_file():
        p = p.parent
    if p.is_dir() and (p / INFO_NAME).is_file():
        return read_checkpoint_entry(p)
    if p.is_file() and p.suffix.lower() == ".onnx":
        return read_model_entry(p)
    return None


def catalog(folders: Iterable[Union[str, Path]], extra: Iterable[Union[str, Path]] = ()) -> list[ModelEntry]:
    """Every model of ``folders`` then ``extra`` paths, each path once."""
    seen, out = set(), []
    entries = [e for f in folders for e in find_models(f)]
    entries += [e for e in (read_entry(x) for x in extra) if e is not None]
    for entry in entries:
        key = entry.path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out
