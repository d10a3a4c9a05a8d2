"""The dock's model pickers: the bundled and the user's checkpoints, the automatic choice,
the model card, checkpoints added from elsewhere."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from qgis.core import QgsSettings
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox, QFileDialog

from ..core.mapping.bundled import AUTO, auto_model
from ..core.training.checkpoint import INFO_NAME
from ..qgis_io import inputs
from ..qgis_io.inputs import Problem
from ..qgis_io.model_catalog import CHECKPOINT_DIR_KEY, ModelEntry, catalog, default_checkpoint_dir

SETTINGS = "landslide_mapper"          # the plugin's settings group



class ModelPickers:
    """Part of the dock (ui/dock.py): the Map tab's checkpoint and the Fine-tune tab's base."""

    @property
    def models_dir(self) -> Path:
        return self._models_dir

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpointFolderWidget.filePath() or default_checkpoint_dir())

    def model_entries(self) -> list[ModelEntry]:
        """The models offered in the checkpoint picker, in display order."""
        return list(self._entries)

    def refresh_models(self, select: Union[str, Path, None] = None) -> None:
        """Read the bundled and the user's checkpoint folders again; keep or set the choice."""
        keep = Path(select) if select else self.selected_model_path()
        keep_base = Path(select) if select else self._combo_path(self.baseCheckpointCombo)
        self._entries = catalog([self._models_dir, self.checkpoint_dir], self._extra_models)
        for combo, only_checkpoints, wanted in ((self.checkpointCombo, False, keep),
                                                (self.baseCheckpointCombo, True, keep_base)):
            combo.blockSignals(True)
            combo.clear()
            if not only_checkpoints and self._entry(str(auto_model([True]))) is not None:   # the bundled ones
                combo.addItem(self.tr("Automatic: the bundled cascade, or the RGB checkpoint for images "
                                      "without near infrared"), AUTO)
            for entry in self._entries:
                if only_checkpoints and not entry.is_checkpoint:
                    continue
                stages = f", {len(entry.stages)} stage(s)" if entry.is_checkpoint else ", ONNX model"
                combo.addItem(f"{entry.name}{stages}", str(entry.path))
                combo.setItemData(combo.count() - 1, entry.description or str(entry.path), Qt.ItemDataRole.ToolTipRole)
            index = combo.findData(str(wanted)) if wanted else -1
            if index < 0 and combo.count() and not only_checkpoints:
                index = 0                                      # automatic
            elif index < 0 and combo.count():
                # prefer the newest stage that was better than its base (the bundled ones always
                # count), of a 4-band model: colour-only imagery is the exception, chosen by hand
                def rank(i):
                    entry = self._entry(combo.itemData(i))
                    bundled = entry.path.parent == self._models_dir
                    return (bundled or _improved(entry), "NIR" in entry.channels, len(entry.stages), -i)
                index = max(range(combo.count()), key=rank)
            combo.setCurrentIndex(index)
            combo.blockSignals(False)
        self._show_model_card()

    def _entry(self, path: Optional[str]) -> Optional[ModelEntry]:
        for entry in self._entries:
            if path is not None and str(entry.path) == str(path):
                return entry
        return None

    @staticmethod
    def _combo_path(combo: QComboBox) -> Optional[Path]:
        data = combo.currentData()
        return Path(data) if data and data != AUTO else None

    def selected_model_path(self) -> Optional[Path]:
        return self._combo_path(self.checkpointCombo)

    def model_is_automatic(self) -> bool:
        return self.checkpointCombo.currentData() == AUTO

    def selected_model(self) -> Optional[ModelEntry]:
        """The chosen model; for Automatic, the bundled one the years' images will get."""
        if self.model_is_automatic():
            return self._entry(str(auto_model([inputs.layer_has_nir(layer, bands)
                                               for _y, layer, bands in self.year_rows()])))
        return self._entry(self.checkpointCombo.currentData())

    def _show_model_card(self, *_args) -> None:
        entry = self.selected_model()
        if entry is None:
            self.modelCardView.setPlainText(self.tr(
                "No checkpoint found in {} or {}. Use … to pick a checkpoint folder or an ONNX model.").format(
                self._models_dir, self.checkpoint_dir))
            return
        note = ""
        if self.model_is_automatic():
            note = self.tr("Automatic: for the images listed now this is **{}**; images without a near-infrared "
                           "band get the RGB checkpoint.\n\n").format(entry.name)
        self.modelCardView.setMarkdown(note + entry.card_markdown())

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, self.tr("Checkpoint or ONNX model"), str(self.checkpoint_dir),
            self.tr("Checkpoints and ONNX models (checkpoint.json *.onnx);;All files (*)"))
        if path:
            self.add_model(path)

    def add_model(self, path: Union[str, Path]) -> bool:
        """Offer a checkpoint (its folder or its checkpoint.json) or an ONNX file from
        elsewhere (remembered in the settings). A path that is neither stays marked under
        the picker until a model is added or chosen."""
        if Path(path).name == INFO_NAME:
            path = Path(path).parent
        before = {str(e.path) for e in self._entries}
        if str(path) not in self._extra_models:
            self._extra_models.append(str(path))
        self._entries = catalog([self._models_dir, self.checkpoint_dir], self._extra_models)
        added = [e for e in self._entries if str(e.path) not in before]
        if not added and self._entry(str(path)) is None:
            self._extra_models.remove(str(path))
            self._picker_problems = [Problem("checkpoint", f"{path} is neither a cascade checkpoint folder "
                                                           "nor an .onnx model.")]
            self._set_label(self.checkpointProblemLabel, self._picker_problems)
            return False
        self._picker_problems = []
        self._set_label(self.checkpointProblemLabel, [])      # a model is chosen now
        QgsSettings().setValue(f"{SETTINGS}/extra_models", self._extra_models)
        self.refresh_models(select=(added[0].path if added else path))
        return True

    def _checkpoint_dir_changed(self, path: str) -> None:
        QgsSettings().setValue(CHECKPOINT_DIR_KEY, path)
        self.refresh_models()


def _improved(entry: Optional[ModelEntry]) -> bool:
    """False for a checkpoint whose last stage was not better than its base (never preselected)."""
    stages = entry.stages if entry is not None else []
    return not stages or stages[-1].get("improved") is not False
