"""The Landslide Mapper dock widget.

The layout lives in ``dock.ui`` (Qt Designer). This module only fills it: for now it lists
the ONNX models found in the plugin's ``models/`` folder with the name and description from
their model card. It deliberately imports nothing heavy (no onnxruntime, no rasterio):
inference runs in a separate worker process, never inside QGIS.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from qgis.gui import QgsDockWidget
from qgis.PyQt import uic
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QListWidgetItem, QWidget

PLUGIN_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = PLUGIN_DIR / "models"

FORM_CLASS, _ = uic.loadUiType(str(Path(__file__).resolve().parent / "dock.ui"))


@dataclass(frozen=True)
class ModelEntry:
    """One ``*.onnx`` file of the models folder, described by its sidecar model card."""

    path: Path
    name: str
    description: str
    card_problem: Optional[str] = None
    """Why the model card could not be used (missing, unreadable, ...), or None."""


def _card_text(card: dict, key: str) -> str:
    value = card.get(key)
    if value is None:
        return ""
    return str(value).strip()


def read_model_entry(onnx_path: Path) -> ModelEntry:
    """Describe one model file from its ``<name>.json`` model card, if there is one."""
    card_path = onnx_path.with_suffix(".json")
    if not card_path.is_file():
        return ModelEntry(onnx_path, onnx_path.stem, "", f"No model card ({card_path.name}).")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ModelEntry(
            onnx_path, onnx_path.stem, "", f"Model card {card_path.name} cannot be read: {exc}"
        )
    if not isinstance(card, dict):
        return ModelEntry(
            onnx_path, onnx_path.stem, "", f"Model card {card_path.name} is not a JSON object."
        )
    return ModelEntry(
        onnx_path,
        _card_text(card, "name") or onnx_path.stem,
        _card_text(card, "description"),
    )


def read_checkpoint_entry(folder: Path) -> ModelEntry:
    """Describe a cascade checkpoint folder from its ``checkpoint.json``."""
    try:
        info = json.loads((folder / "checkpoint.json").read_text(encoding="utf-8"))
        stages = info.get("lineage", [])
        name = str(info.get("name") or folder.name)
        arch = info.get("architecture", {}).get("name", "")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        return ModelEntry(folder, folder.name, "", f"checkpoint.json cannot be read: {exc}")
    summary = f"Cascade checkpoint, {arch}, {len(stages)} stage(s)"
    if stages:
        last = stages[-1]
        f1 = (last.get("validation") or {}).get("f1")
        summary += f"; last stage: {last.get('region', '')}" + (f", validation F1 {f1:.2f}" if f1 else "")
    description = str(info.get("description", "")).strip()
    return ModelEntry(folder, name, f"{summary}. {description}".strip())


def find_models(models_dir: Union[str, Path]) -> list[ModelEntry]:
    """Cascade checkpoint folders and ``*.onnx`` files directly in ``models_dir``, by name.

    A missing or unreadable folder gives an empty list.
    """
    folder = Path(models_dir)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found = []
    for p in sorted(entries, key=lambda p: p.name.lower()):
        if p.is_dir() and (p / "checkpoint.json").is_file():
            found.append(read_checkpoint_entry(p))
        elif p.suffix.lower() == ".onnx" and p.is_file():
            found.append(read_model_entry(p))
    return found


class LandslideMapperDock(QgsDockWidget, FORM_CLASS):
    """Dock showing what the plugin does and which models are installed."""

    def __init__(
        self,
        models_dir: Union[str, Path, None] = None,
        parent: Optional[QWidget] = None,
    ):
        super().__init__(parent)
        self.setupUi(self)
        self._models_dir = Path(models_dir) if models_dir is not None else DEFAULT_MODELS_DIR
        self._entries: list[ModelEntry] = []
        self.refreshButton.clicked.connect(self.refresh_models)
        self.refresh_models()

    @property
    def models_dir(self) -> Path:
        return self._models_dir

    def model_entries(self) -> list[ModelEntry]:
        """The models shown in the list, in display order."""
        return list(self._entries)

    def refresh_models(self) -> None:
        """Read the models folder again and update the list."""
        self._entries = find_models(self._models_dir)
        self.modelsFolderLabel.setText(self.tr("Folder: {}").format(self._models_dir))
        self.modelList.clear()
        for entry in self._entries:
            title = entry.name
            if title not in (entry.path.stem, entry.path.name):
                title += f" ({entry.path.name})"
            lines = [title]
            if entry.description:
                lines.append(entry.description)
            if entry.card_problem:
                lines.append(entry.card_problem)
            item = QListWidgetItem("\n".join(lines))
            item.setToolTip(str(entry.path))
            item.setData(Qt.ItemDataRole.UserRole, str(entry.path))
            # Read-only: items can be selected but never edited.
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            self.modelList.addItem(item)
        self.modelList.setHidden(not self._entries)
        self.noModelsLabel.setHidden(bool(self._entries))
