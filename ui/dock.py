"""The Landslide Mapper dock: gathers a job from the form and emits it.

The layout lives in ``dock.ui`` (Qt Designer). This module fills the tables, checks the
inputs (the reason is shown in the row or under the field it concerns) and turns the
form into the same job specs the command line and Processing use; it never runs them
itself: ``jobRequested(job, title)`` goes to the controller, which owns the tasks.
Nothing heavy is imported here: inference and training run in the worker process.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Union

from qgis.core import QgsProject, QgsRasterLayer, QgsSettings
from qgis.gui import QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt import uic
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (QApplication, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QHeaderView,
                                 QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton, QSpinBox, QTableWidget,
                                 QTableWidgetItem, QWidget)

from .. import qgis_compat
from ..core.bands import PRESET_LABELS
from ..core.bands import DEFAULT_CHANNELS
from ..core.bundled import AUTO, auto_model
from ..core.checkpoint import INFO_NAME
from ..core.cluster import default_local_workers, parse_cluster
from ..core.errors import InputError
from ..core.jobs import (LARGE_JOB_PIXELS, AnalyseJob, AssessJob, InferenceJob, bad_folder_characters,
                         InventoryLayer, SubtractJob, TrainingSource, TrainJob, YearInput, pixels_text)
from ..tasks import worker_env
from ..tasks.worker_process import default_worker_python
from ..qgis_io import inputs
from .area_picker import AreaPicker
from .training_curve import TrainingCurve
from ..qgis_io.inputs import ERROR, Problem, blocking
from .worker_banner import WorkerBanner
from .worker_setup import WorkerSetupController
from ..qgis_io.model_catalog import (CHECKPOINT_DIR_KEY, ModelEntry, catalog, default_checkpoint_dir,
                            user_checkpoint_dir)

PLUGIN_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = PLUGIN_DIR / "models"
SETTINGS = "landslide_mapper"
MAP_SCOPE = ("years", "checkpoint", "output", "mapArea")      # the Map tab's fields with problems

FORM_CLASS, _ = uic.loadUiType(str(Path(__file__).resolve().parent / "dock.ui"))

ROW_OK = "OK"
COLOURS = {ERROR: QColor("#c0392b"), inputs.WARNING: QColor("#b9770e")}


def default_output_dir() -> Path:
    return Path.home() / "Landslide Mapper"


class LandslideMapperDock(QgsDockWidget, FORM_CLASS):
    """Map, Fine-tune, Analyse and Worker tabs; emits jobs, runs none."""

    jobRequested = pyqtSignal(object, str)
    cancelQueuedRequested = pyqtSignal()
    cancelRunningRequested = pyqtSignal()

    def __init__(self, models_dir: Union[str, Path, None] = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setupUi(self)
        # the mapping defaults are the job spec's (core/jobs.py), not the form's
        self.overlapSpin.setValue(InferenceJob.overlap)
        self.batchSpin.setValue(InferenceJob.batch_size)
        self.minAreaSpin.setValue(InferenceJob.min_area_m2)
        self.analyseCheck.setChecked(InferenceJob.analyse)
        self.confirmChangesCheck.setChecked(InferenceJob.confirm_changes)
        self.analyseCheck.toggled.connect(self.confirmChangesCheck.setEnabled)    # it checks the subtraction
        self.uncertaintyCheck.setChecked(InferenceJob.uncertainty)
        self.ttaCheck.setChecked(InferenceJob.tta)
        self.setObjectName("LandslideMapperDock")
        self._models_dir = Path(models_dir) if models_dir is not None else DEFAULT_MODELS_DIR
        self._entries: list[ModelEntry] = []
        self._problems: list[Problem] = []
        self._picker_problems: list[Problem] = []      # a model path the picker could not use
        settings = QgsSettings()
        self._extra_models: list[str] = [p for p in settings.value(f"{SETTINGS}/extra_models", [], list) if p]

        self.outputFolderWidget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.outputFolderWidget.setFilePath(settings.value(f"{SETTINGS}/output_dir", str(default_output_dir())))
        self.outputFolderWidget.fileChanged.connect(lambda p: QgsSettings().setValue(f"{SETTINGS}/output_dir", p))
        self.checkpointFolderWidget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.checkpointFolderWidget.setFilePath(str(user_checkpoint_dir()))
        self.checkpointFolderWidget.fileChanged.connect(self._checkpoint_dir_changed)
        self.workerPythonWidget.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        for combo in (self.extentLayerCombo, self.areaLayerCombo):
            combo.setFilters(qgis_compat.LAYER_FILTER_POLYGON)
            combo.setAllowEmptyLayer(True)
            combo.setLayer(None)

        # layer columns take the room; year, bands and check columns fit their content
        for table in (self.yearsTable, self.inventoryTable, self.referenceTable):
            header = table.horizontalHeader()
            header.setStretchLastSection(False)
            for col in range(table.columnCount()):
                mode = QHeaderView.ResizeMode.Stretch if col == 1 else QHeaderView.ResizeMode.ResizeToContents
                header.setSectionResizeMode(col, mode)
        # the layers take the room; region/year/bands and the check fit their content
        header = self.trainingTable.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        title = self.trainingTable.horizontalHeaderItem(1).text()
        header.resizeSection(1, max(120, header.fontMetrics().horizontalAdvance(title) + 16))   # its title in full
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.addYearButton.clicked.connect(lambda: self.add_year_row())
        self.addAllRastersButton.clicked.connect(self.add_image_layers)
        self.removeYearButton.clicked.connect(lambda: self._remove_row(self.yearsTable))
        self.addSourceButton.clicked.connect(lambda: self.add_training_row())
        self.removeSourceButton.clicked.connect(lambda: self._remove_row(self.trainingTable))
        self.addInventoryButton.clicked.connect(lambda: self.add_inventory_row())
        self.addAllInventoriesButton.clicked.connect(self.add_inventory_layers)
        self.removeInventoryButton.clicked.connect(lambda: self._remove_row(self.inventoryTable))
        self.addReferenceButton.clicked.connect(lambda: self.add_reference_row())
        self.removeReferenceButton.clicked.connect(lambda: self._remove_row(self.referenceTable))
        self.refreshButton.clicked.connect(self.refresh_models)
        self.browseCheckpointButton.clicked.connect(self._browse_model)
        self.checkpointCombo.currentIndexChanged.connect(self._show_model_card)
        self.runMapButton.clicked.connect(self.run_map)
        self.runTrainButton.clicked.connect(self.run_train)
        self.runSubtractButton.clicked.connect(self.run_subtract)
        self.runFadButton.clicked.connect(self.run_fad)
        self.runAssessButton.clicked.connect(self.run_assess)
        self.cancelQueuedButton.clicked.connect(self.cancelQueuedRequested)
        self.cancelQueuedButton.setEnabled(False)
        self.epochTable.setRowCount(0)
        # the worker environment's tasks belong to their controller; the dock shows what it reports
        self.worker_setup = WorkerSetupController(self)
        self.worker_setup.probed.connect(self.show_probe)
        self.worker_setup.probeFailed.connect(
            lambda python, why: self._status(self.workerStatusLabel, f"{python}: {why}", True))
        self.worker_setup.setupProgress.connect(lambda value: self.envProgressBar.setValue(int(value)))
        self.worker_setup.setupFinished.connect(self._environment_done)
        self.workerPythonWidget.setFilePath(worker_env.configured_python() or "")
        self.workerPythonWidget.fileChanged.connect(self._worker_python_changed)
        self.checkWorkerButton.clicked.connect(lambda: self.check_worker())
        self.createEnvButton.clicked.connect(lambda: self.create_environment())
        self.gpuBuildCheck.setChecked(worker_env.nvidia_gpu_present())
        # the one place that says the worker is not ready, and sets it up (above the tabs)
        self.workerBanner = WorkerBanner(lambda: self.create_environment(), self.worker_setup.cancel_setup, self)
        self.worker_setup.setupProgress.connect(self.workerBanner.set_progress)
        self.mainLayout.insertWidget(0, self.workerBanner)
        self._run_tooltips = {b: b.toolTip() for b in (self.runMapButton, self.runTrainButton)}
        self.diagnosticsButton = QPushButton(self.tr("Copy diagnostics"))
        self.diagnosticsButton.setObjectName("diagnosticsButton")
        self.diagnosticsButton.setToolTip(self.tr("Copy a report for bug reports to the clipboard: QGIS, Python "
                                                  "and OS versions, the worker Python and its packages, ONNX "
                                                  "Runtime's providers, the GPU seen"))
        self.diagnosticsButton.clicked.connect(lambda: self.copy_diagnostics())
        self.workerButtonsLayout.addWidget(self.diagnosticsButton)
        self.last_probe = None
        self.nodataEdit = QLineEdit()
        self.nodataEdit.setObjectName("nodataEdit")
        self.nodataEdit.setPlaceholderText(self.tr("from the image"))
        self.nodataEdit.setToolTip(self.tr("Pixel value that means 'no data' in images that declare none (e.g. 0 "
                                           "for a black collar); such pixels are not mapped"))
        self.mapOptionsForm.addRow(self.tr("Nodata value"), self.nodataEdit)
        # where tiles are predicted: this process, worker processes here, or a Dask cluster
        self.clusterCombo = QComboBox()
        self.clusterCombo.setObjectName("clusterCombo")
        self.clusterCombo.setEditable(True)
        self.clusterCombo.addItems([InferenceJob.cluster] + sorted({f"local:{n}" for n in (2, default_local_workers())
                                                                    if n > 1}, key=lambda t: int(t[6:])))
        self.clusterCombo.setToolTip(self.tr("Where tiles are predicted: local (this process), local:N (N worker "
                                             "processes on this machine), or a Dask scheduler address such as "
                                             "tcp://host:8786 whose workers see the same image, model and output "
                                             "paths (a shared file system)"))
        self.mapOptionsForm.addRow(self.tr("Run on"), self.clusterCombo)
        # where to map: whole images, the map view's extent, or inside polygons (under the years)
        self.map_canvas = None              # the plugin sets QGIS' map canvas
        self.areaPicker = AreaPicker(lambda: self.map_canvas, self)
        self.mapAreaProblemLabel = self.areaPicker.problemLabel
        self.mapLayout.insertWidget(self.mapLayout.indexOf(self.yearsProblemLabel) + 1, self.areaPicker)
        self._add_job_progress()
        self.trainingCurve = TrainingCurve(self)
        self.trainLayout.insertWidget(self.trainLayout.indexOf(self.epochTable), self.trainingCurve)
        self.refresh_models()

    # ------------------------------------------------------------------ models
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

    # ------------------------------------------------------------------ rows
    def _layer_combo(self, filters, allow_empty: bool = False, layer=None) -> QgsMapLayerComboBox:
        combo = QgsMapLayerComboBox()
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(6)
        combo.setFilters(filters)
        combo.setAllowEmptyLayer(allow_empty)
        combo.setLayer(layer)
        combo.layerChanged.connect(self._revalidate)
        return combo

    def _year_spin(self, year: Optional[int]) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(0, 2100)
        spin.setSpecialValueText("—")
        spin.setValue(year or 0)
        spin.valueChanged.connect(self._revalidate)
        return spin

    def _bands_combo(self, bands: str = "auto") -> QComboBox:
        combo = QComboBox()
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(5)
        combo.setEditable(True)
        combo.setToolTip(self.tr("Which band holds which colour: auto (from band names, colour "
                                 "interpretation or band count), a preset, or type e.g. B=3,G=2,R=1,NIR=4"))
        combo.addItem("auto", "auto")
        for key, text in PRESET_LABELS.items():
            combo.addItem(text, key)
        index = combo.findData(bands)
        if index >= 0:
            combo.setCurrentIndex(index)
        else:
            combo.setEditText(bands)
        combo.currentTextChanged.connect(self._revalidate)
        return combo

    @staticmethod
    def _bands_value(combo: QComboBox) -> str:
        text = combo.currentText().strip()
        index = combo.findText(text)
        return combo.itemData(index) if index >= 0 else (text or "auto")

    def _append(self, table: QTableWidget, widgets: list) -> int:
        row = table.rowCount()
        table.insertRow(row)
        for col, widget in enumerate(widgets):
            table.setCellWidget(row, col, widget)
        check = QTableWidgetItem("")
        check.setFlags(Qt.ItemFlag.ItemIsEnabled)
        table.setItem(row, table.columnCount() - 1, check)
        return row

    def _remove_row(self, table: QTableWidget) -> None:
        row = table.currentRow()
        table.removeRow(row if row >= 0 else table.rowCount() - 1)
        self._revalidate()

    def add_year_row(self, year: Optional[int] = None, layer: Optional[QgsRasterLayer] = None,
                     bands: str = "auto") -> int:
        if year is None and layer is not None:
            year = inputs.year_from_name(layer.name(), layer.source())
        combo = self._layer_combo(qgis_compat.LAYER_FILTER_RASTER, layer=layer)
        row = self._append(self.yearsTable, [self._year_spin(year), combo, self._bands_combo(bands)])
        if self.model_is_automatic():           # the images decide the model: show which
            self._show_model_card()
        return row

    def add_image_layers(self) -> int:
        """A row for every raster of the project not yet listed; returns how many were added."""
        listed = {layer.id() for _y, layer, _b in self.year_rows() if layer is not None}
        rasters = sorted((lay for lay in self.project.mapLayers().values()
                          if isinstance(lay, QgsRasterLayer) and lay.id() not in listed
                          and not lay.name().startswith("probability")),
                         key=lambda lay: (inputs.year_from_name(lay.name(), lay.source()) or 0, lay.name()))
        for layer in rasters:
            self.add_year_row(layer=layer)
        return len(rasters)

    def year_rows(self) -> list[tuple[int, Optional[QgsRasterLayer], str]]:
        t = self.yearsTable
        return [(t.cellWidget(r, 0).value(), t.cellWidget(r, 1).currentLayer(), self._bands_value(t.cellWidget(r, 2)))
                for r in range(t.rowCount())]

    def add_training_row(self, raster=None, labels=None, reviewed=None, region: str = "",
                         year: Optional[int] = None, bands: str = "auto") -> int:
        region_edit = QLineEdit(region)
        region_edit.setPlaceholderText(self.tr("region"))
        if year is None and raster is not None:
            year = inputs.year_from_name(raster.name(), raster.source())
        # a dock is narrow: the three layers stacked in one cell, region, year and bands in the next
        layers = _Stack({"raster": (self.tr("Image"), self._layer_combo(qgis_compat.LAYER_FILTER_RASTER,
                                                                         layer=raster)),
                         "labels": (self.tr("Landslides"), self._layer_combo(qgis_compat.LAYER_FILTER_POLYGON,
                                                                              layer=labels)),
                         "reviewed": (self.tr("Reviewed"), self._layer_combo(
                             qgis_compat.LAYER_FILTER_POLYGON, allow_empty=True, layer=reviewed))})
        layers.widgets["reviewed"].setToolTip(self.tr("Reviewed-area polygons (optional): inside them, everything "
                                                      "that is not a landslide is a known negative"))
        details = _Stack({"region": ("", region_edit), "year": ("", self._year_spin(year)),
                          "bands": ("", self._bands_combo(bands))})
        details.widgets["year"].setToolTip(self.tr("Year of the image (0: none)"))
        row = self._append(self.trainingTable, [layers, details])
        self.trainingTable.setRowHeight(row, max(layers.sizeHint().height(), details.sizeHint().height()) + 4)
        return row

    def training_rows(self) -> list[dict]:
        t = self.trainingTable
        rows = []
        for r in range(t.rowCount()):
            layers, details = t.cellWidget(r, 0).widgets, t.cellWidget(r, 1).widgets
            rows.append({"raster": layers["raster"].currentLayer(), "labels": layers["labels"].currentLayer(),
                         "reviewed": layers["reviewed"].currentLayer(), "region": details["region"].text().strip(),
                         "year": details["year"].value() or None, "bands": self._bands_value(details["bands"])})
        return rows

    def add_inventory_row(self, year: Optional[int] = None, layer=None) -> int:
        if year is None and layer is not None:
            year = inputs.year_from_name(layer.name(), layer.source())
        return self._append(self.inventoryTable, [self._year_spin(year),
                                                  self._layer_combo(qgis_compat.LAYER_FILTER_POLYGON, layer=layer)])

    def add_inventory_layers(self) -> int:
        """One row per year not yet listed, from the polygon layers with a year in their name;
        a year's full inventory (``landslides <year>``) wins over its change layer."""
        listed = {year for year, _layer in self.inventory_rows()}
        found = {}
        candidates = [(inputs.year_from_name(lay.name()), lay) for lay in self.project.mapLayers().values()
                      if inputs.is_polygon_layer(lay)]
        # layer names as run_layers gives them: full inventories first, change layers last
        order = ("landslides", "", "new", "unconfirmed")
        rank = lambda name: (max(i for i, p in enumerate(order) if name.startswith(p)), name)  # noqa: E731
        for year, layer in sorted((c for c in candidates if c[0]), key=lambda c: (c[0], rank(c[1].name()))):
            if year not in listed and year not in found:
                found[year] = layer
        for year, layer in found.items():
            self.add_inventory_row(year, layer)
        return len(found)

    def inventory_rows(self) -> list[tuple[int, object]]:
        t = self.inventoryTable
        return [(t.cellWidget(r, 0).value(), t.cellWidget(r, 1).currentLayer()) for r in range(t.rowCount())]

    def add_reference_row(self, year: Optional[int] = None, layer=None) -> int:
        if year is None and layer is not None:
            year = inputs.year_from_name(layer.name(), layer.source())
        return self._append(self.referenceTable, [self._year_spin(year),
                                                  self._layer_combo(qgis_compat.LAYER_FILTER_POLYGON, layer=layer)])

    def reference_rows(self) -> list[tuple[int, object]]:
        t = self.referenceTable
        return [(t.cellWidget(r, 0).value(), t.cellWidget(r, 1).currentLayer()) for r in range(t.rowCount())]

    @property
    def project(self) -> QgsProject:
        """The layer pickers follow the current project (QGIS 3.22's combo boxes know no other)."""
        return QgsProject.instance()

    # ------------------------------------------------------------------ checks
    def _output_problems(self) -> list[Problem]:
        folder = self.outputFolderWidget.filePath().strip()
        if not folder:
            return [Problem("output", "Choose an output folder.")]
        path = Path(folder)
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is None or not existing.is_dir():
            return [Problem("output", f"Output folder {folder} cannot be created: {existing} is not a folder.")]
        if not os.access(existing, os.W_OK):
            return [Problem("output", f"Output folder {folder} is not writable.")]
        return []

    def check_map(self) -> list[Problem]:
        rows = self.year_rows()
        problems = inputs.check_years([(y, lay) for y, lay, _b in rows])
        entry = self.selected_model()
        channels = entry.channels if entry else DEFAULT_CHANNELS
        for i, (_year, layer, bands) in enumerate(rows):
            problems += inputs.check_raster(layer, bands, channels, f"Row {i + 1}", f"years[{i}].layer")
        if entry is None:
            problems.append(Problem("checkpoint", "Choose a checkpoint (or use … to pick one)."))
        elif entry.card_problem and entry.is_checkpoint:
            problems.append(Problem("checkpoint", f"{entry.path}: {entry.card_problem}"))
        return problems + self.areaPicker.problems() + self._output_problems()

    def check_train(self) -> list[Problem]:
        problems = []
        base = self._entry(self.baseCheckpointCombo.currentData())
        if base is None or not base.is_checkpoint:
            problems.append(Problem("base", "Choose the cascade checkpoint to fine-tune (a plain ONNX model "
                                            "cannot be trained)."))
        channels = base.channels if base else DEFAULT_CHANNELS
        rows = self.training_rows()
        if not rows:
            problems.append(Problem("sources", "Add at least one row of training data."))
        for i, row in enumerate(rows):
            f = f"sources[{i}]"
            problems += inputs.check_raster(row["raster"], row["bands"], channels, f"Row {i + 1} image",
                                            f"{f}.raster", geographic=ERROR)
            problems += inputs.check_polygons(row["labels"], f"Row {i + 1} landslides", f"{f}.labels")
            problems += inputs.check_polygons(row["reviewed"], f"Row {i + 1} reviewed area", f"{f}.reviewed",
                                              required=False)
        name = self.newNameEdit.text().strip()
        if not name:
            problems.append(Problem("name", "Give the new checkpoint a name."))
        elif bad_folder_characters(name):
            problems.append(Problem("name", f"The name {name!r} contains {', '.join(bad_folder_characters(name))}, "
                                            "not allowed in a folder name."))
        elif (self.checkpoint_dir / name).exists():
            problems.append(Problem("name", f"{name} exists in {self.checkpoint_dir}: the new checkpoint will "
                                            "get a numbered suffix.", inputs.WARNING))
        return problems

    def _check_inventories(self, rows, field: str, minimum: int) -> list[Problem]:
        problems = inputs.check_years(rows, field)
        if rows and len(rows) < minimum:
            problems.append(Problem(field, f"Temporal subtraction needs at least {minimum} years."))
        for i, (_year, layer) in enumerate(rows):
            problems += inputs.check_polygons(layer, f"Row {i + 1}", f"{field}[{i}].layer")
        return problems

    def check_analysis(self, kind: str) -> list[Problem]:
        problems = self._check_inventories(self.inventory_rows(), "inventories", 2 if kind == "subtract" else 1)
        if kind == "assess":
            refs = self.reference_rows()
            problems += self._check_inventories(refs, "references", 1)
            common = {y for y, _ in self.inventory_rows()} & {y for y, _ in refs}
            if refs and not common - {0}:
                problems.append(Problem("references", "No year has both an inventory above and a reference "
                                                      "layer here."))
        if kind == "fad" and self.extentLayerCombo.currentLayer() is not None:
            problems += inputs.check_polygons(self.extentLayerCombo.currentLayer(), "Extent layer", "extent")
        if kind == "assess" and self.areaLayerCombo.currentLayer() is not None:
            problems += inputs.check_polygons(self.areaLayerCombo.currentLayer(), "Assessment area", "area")
        return problems + self._output_problems()

    def problems(self) -> list[Problem]:
        """What the last check found (errors and warnings)."""
        return list(self._problems)

    # ------------------------------------------------------------------ showing problems
    _TABLES = {"years": "yearsTable", "sources": "trainingTable", "inventories": "inventoryTable",
               "references": "referenceTable"}
    _LABELS = {"years": "yearsProblemLabel", "checkpoint": "checkpointProblemLabel", "output": "outputProblemLabel",
               "base": "baseProblemLabel", "sources": "sourcesProblemLabel", "name": "newNameProblemLabel",
               "inventories": "inventoryProblemLabel", "references": "referenceProblemLabel",
               "extent": "analyseStatusLabel", "area": "referenceProblemLabel", "mapArea": "mapAreaProblemLabel"}

    def show_problems(self, problems: list[Problem], scope: tuple[str, ...]) -> None:
        """Each problem next to its field: in its row's Check cell and under its table or field."""
        self._problems = problems
        for key in scope:
            table = getattr(self, self._TABLES[key], None) if key in self._TABLES else None
            if table is not None:
                for r in range(table.rowCount()):
                    row_problems = [p for p in problems if p.field.startswith(f"{key}[{r}]")]
                    self._set_check(table, r, row_problems)
            label = getattr(self, self._LABELS[key])
            picker = self._picker_problems if key == "checkpoint" else []
            self._set_label(label, [p for p in problems if p.field.split("[")[0] == key] + picker)

    def row_check(self, table: QTableWidget, row: int) -> str:
        """``OK``, or the reasons the row cannot be used (what its Check cell's tooltip says)."""
        item = table.item(row, table.columnCount() - 1)
        if item is None:
            return ""
        return item.data(Qt.ItemDataRole.UserRole) or item.text()

    def _set_check(self, table: QTableWidget, row: int, problems: list[Problem]) -> None:
        item = table.item(row, table.columnCount() - 1)
        if item is None:
            return
        worst = next((p for p in problems if p.severity == ERROR), problems[0] if problems else None)
        item.setText(ROW_OK if worst is None else ("✖ fix" if worst.severity == ERROR else "⚠ note"))
        item.setData(Qt.ItemDataRole.UserRole, "\n".join(p.message for p in problems) or None)
        item.setToolTip("\n".join(p.message for p in problems) or self.tr("Ready"))
        item.setForeground(COLOURS.get(worst.severity) if worst else QColor("#1e8449"))

    def _set_label(self, label: QLabel, problems: list[Problem]) -> None:
        """All the reasons under the table or field, errors first (row reasons name their row)."""
        shown = sorted(problems, key=lambda p: p.severity != ERROR)
        label.setVisible(bool(shown))
        label.setText("<br>".join(
            f'<span style="color:{COLOURS[p.severity].name()}">{_html(p.message)}</span>' for p in shown))

    def _status(self, label: QLabel, text: str, problem: bool = False) -> None:
        label.setVisible(bool(text))
        label.setText(f'<span style="color:{COLOURS[ERROR].name()}">{_html(text)}</span>' if problem else _html(text))

    def _revalidate(self, *_args) -> None:
        """Refresh the Check cells once the user has tried to run (or edits a listed row)."""
        if not self._problems:
            return
        tab = self.tabs.currentWidget()
        if tab is self.mapTab:
            self.show_problems(self.check_map(), MAP_SCOPE)
        elif tab is self.trainTab:
            self.show_problems(self.check_train(), ("base", "sources", "name"))

    # ------------------------------------------------------------------ jobs
    def _ready(self, problems: list[Problem], scope: tuple[str, ...], status: QLabel) -> bool:
        """Show ``problems`` next to their fields; True when none of them blocks the run."""
        self.show_problems(problems, scope)
        stop = bool(blocking(problems))
        self._status(status, self.tr("Not started: fix the marked inputs.") if stop else "", stop)
        return not stop

    def nodata_value(self) -> Optional[float]:
        """The Options' nodata value; None when empty. Raises ValueError for other text."""
        text = self.nodataEdit.text().strip().replace(",", ".")
        return float(text) if text else None

    def pixels_to_map(self) -> float:
        """About how many pixels the mapping job reads, all years together, within the Area."""
        total = 0.0
        for _year, layer, _bands in self.year_rows():
            if layer is None:
                continue
            share, area = 1.0, self.areaPicker.extent_in(layer.crs())
            if area is not None and not layer.extent().isEmpty():
                overlap = area.intersect(layer.extent())
                share = 0.0 if overlap.isEmpty() else overlap.area() / layer.extent().area()
            total += share * layer.width() * layer.height()
        return total

    def confirm_large_job(self, pixels: float) -> bool:
        """Ask before a job of more than LARGE_JOB_PIXELS pixels starts."""
        answer = QMessageBox.question(
            self, self.tr("A very large mapping job"),
            self.tr("These images hold about {} (the limit without asking is {}): mapping them can take many "
                    "hours. Map them all? (No: choose an Area to map part of them.)"
                    ).format(pixels_text(pixels), pixels_text(LARGE_JOB_PIXELS)),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def map_job(self) -> Optional[InferenceJob]:
        """The mapping job of the form, or None when an input is wrong (shown in the form)."""
        if not self._ready(self.check_map(), MAP_SCOPE, self.mapStatusLabel):
            return None
        try:
            nodata = self.nodata_value()
        except ValueError:
            self._status(self.mapStatusLabel, self.tr("Not started: the nodata value (Options) {!r} is not a "
                                                      "number; clear it to use the images' own.").format(
                                                          self.nodataEdit.text()), True)
            return None
        cluster = self.clusterCombo.currentText().strip() or InferenceJob.cluster
        try:
            parse_cluster(cluster)
        except InputError as exc:
            self._status(self.mapStatusLabel, self.tr("Not started: Run on (Options): {}").format(exc), True)
            return None
        years = [YearInput(year, inputs.raster_path(layer), bands, nodata=nodata)
                 for year, layer, bands in self.year_rows()]
        pixels = self.pixels_to_map()
        confirmed = pixels > LARGE_JOB_PIXELS and self.confirm_large_job(pixels)
        if pixels > LARGE_JOB_PIXELS and not confirmed:
            self._status(self.mapStatusLabel, self.tr("Not started: {} is a very large job; choose an Area to "
                                                      "map part of the images.").format(pixels_text(pixels)), True)
            return None
        return InferenceJob(max_pixels=None if confirmed else LARGE_JOB_PIXELS,
            years=years, model=AUTO if self.model_is_automatic() else str(self.selected_model().path),
            output_dir=self.outputFolderWidget.filePath(),
            run_name=self.runNameEdit.text().strip() or None, tile_size=self.tileSizeSpin.value() or None,
            overlap=self.overlapSpin.value(), batch_size=self.batchSpin.value(),
            threshold=self.thresholdSpin.value() or None, min_area_m2=self.minAreaSpin.value(),
            device=self.deviceCombo.currentText().lower(), analyse=self.analyseCheck.isChecked(),
            confirm_changes=self.confirmChangesCheck.isChecked(),
            uncertainty=self.uncertaintyCheck.isChecked(), tta=self.ttaCheck.isChecked(),
            resample="auto" if self.resampleCheck.isChecked() else "off", cluster=cluster,
            **self.areaPicker.job_fields())

    def train_job(self) -> Optional[TrainJob]:
        if not self._ready(self.check_train(), ("base", "sources", "name"), self.trainStatusLabel):
            return None
        sources = []
        for row in self.training_rows():
            labels, labels_layer = inputs.vector_source(row["labels"])
            reviewed = reviewed_layer = None
            if row["reviewed"] is not None:
                reviewed, reviewed_layer = inputs.vector_source(row["reviewed"])
            sources.append(TrainingSource(
                raster=inputs.raster_path(row["raster"]), labels=labels, labels_layer=labels_layer,
                reviewed=reviewed, reviewed_layer=reviewed_layer, bands=row["bands"],
                region=row["region"] or row["raster"].name(), year=row["year"]))
        loss = self.lossCombo.currentText()
        self.epochTable.setRowCount(0)
        self.trainingCurve.clear()
        return TrainJob(
            sources=sources, output_dir=str(self.checkpoint_dir), name=self.newNameEdit.text().strip(),
            base_checkpoint=self.baseCheckpointCombo.currentData(), patch_size=int(self.patchSizeCombo.currentText()),
            epochs=self.epochsSpin.value(), batch_size=self.trainBatchSpin.value(),
            learning_rate=self.learningRateSpin.value(), loss=None if loss == "default" else loss,
            freeze=self.freezeCombo.currentText(), patience=self.patienceSpin.value(),
            augment=self.augmentCheck.isChecked(), device=self.trainDeviceCombo.currentText().lower(),
            trigger=self.triggerEdit.text().strip())

    def _inventory_layers(self, rows) -> list[InventoryLayer]:
        out = []
        for year, layer in rows:
            path, name = inputs.vector_source(layer)
            out.append(InventoryLayer(year, path, name))
        return out

    def analysis_job(self, kind: str):
        """A SubtractJob, AnalyseJob or AssessJob (``kind`` subtract / fad / assess), or None."""
        scope = ("inventories", "output") + (("references",) if kind == "assess" else ())
        if not self._ready(self.check_analysis(kind), scope, self.analyseStatusLabel):
            return None
        years = self._inventory_layers(self.inventory_rows())
        out = self.outputFolderWidget.filePath()
        if kind == "subtract":
            return SubtractJob(years=years, output_dir=out, pixel_size_m=self.pixelSizeSpin.value(),
                               sliver_px=self.sliverSpin.value(), min_remnant_px=self.minRemnantSpin.value())
        if kind == "fad":
            extent = self.extentLayerCombo.currentLayer()
            extent_spec = None
            if extent is not None:
                path, name = inputs.vector_source(extent)
                extent_spec = f"{path}|layername={name}" if name else path
            return AnalyseJob(years=years, output_dir=out, min_area_m2=self.fadMinAreaSpin.value(),
                              mapped_area_km2=self.mappedAreaSpin.value() or None, extent=extent_spec,
                              bootstrap=self.bootstrapSpin.value())
        area = self.areaLayerCombo.currentLayer()
        area_spec = None
        if area is not None:
            path, name = inputs.vector_source(area)
            area_spec = f"{path}|layername={name}" if name else path
        return AssessJob(predicted=years, reference=self._inventory_layers(self.reference_rows()), output_dir=out,
                         area=area_spec, pixel_size_m=self.pixelSizeSpin.value())

    def _emit(self, job_fn: Callable[[], object]) -> None:
        from .controller import run_title

        try:
            job = job_fn()
        except Exception as exc:  # e.g. a layer that cannot be copied for the worker
            self._status(self.outputProblemLabel, str(exc), True)
            return
        if job is not None:
            self.jobRequested.emit(job, run_title(job))

    def run_map(self) -> None:
        self._emit(self.map_job)

    def run_train(self) -> None:
        self._emit(self.train_job)

    def run_subtract(self) -> None:
        self._emit(lambda: self.analysis_job("subtract"))

    def run_fad(self) -> None:
        self._emit(lambda: self.analysis_job("fad"))

    def run_assess(self) -> None:
        self._emit(lambda: self.analysis_job("assess"))

    # ------------------------------------------------------------------ worker environment
    def worker_python(self) -> Optional[str]:
        """The interpreter jobs run in: the one set in the Worker tab, else the best guess."""
        return self.workerPythonWidget.filePath().strip() or default_worker_python()

    def _worker_python_changed(self, path: str) -> None:
        worker_env.set_configured_python(path.strip() or None)
        self._status(self.workerStatusLabel, "")

    def check_worker(self):
        """Have the worker interpreter probed in the background; the verdict goes to the
        Worker tab (:meth:`show_probe`), and to the banner and the run buttons when it cannot
        run jobs."""
        python = self.worker_python()
        self._status(self.workerStatusLabel, self.tr("Checking {}…").format(python))
        return self.worker_setup.probe(python, self.gpuBuildCheck.isChecked())

    def show_probe(self, probe, download_mb: Optional[int] = None) -> None:
        """Show what the worker can do: in the Worker tab always; when it cannot map, in the
        banner with the set-up button, and the run buttons disabled with the reason."""
        self.last_probe = probe
        if probe.ok:
            versions = ", ".join(f"{k} {v}" for k, v in probe.versions.items()
                                 if k in ("onnxruntime", "tensorflow", "numpy"))
            gpu = "CUDAExecutionProvider" in (probe.providers or [])
            text = self.tr("Ready: {} ({}; ONNX Runtime on {}).").format(probe.python, versions,
                                                                         "GPU" if gpu else "CPU")
            if not probe.can_train:
                text += " " + probe.message()
            self._status(self.workerStatusLabel, text)
            self.workerBanner.setVisible(False)
        else:
            self._status(self.workerStatusLabel, probe.message(), True)
            size = (self.tr("about {} MB download").format(download_mb) if download_mb
                    else self.tr("downloads several hundred MB"))
            self.workerBanner.show_needed(probe.message(), size)
        train_reason = None if probe.can_train else (
            probe.training_refusal or self.tr("The worker Python cannot train: {}").format(probe.message()))
        self._gate(self.runMapButton, None if probe.ok else self.tr(
            "The worker Python is not set up yet: use 'Set up the worker' at the top of this panel."))
        self._gate(self.runTrainButton, None if probe.ok and probe.can_train else (
            train_reason if probe.ok else self.tr("The worker Python is not set up yet: use 'Set up the worker' "
                                                  "at the top of this panel.")))

    def _gate(self, button, reason: Optional[str]) -> None:
        """Enable ``button``, or disable it with ``reason`` as its tooltip."""
        button.setEnabled(reason is None)
        button.setToolTip(reason or self._run_tooltips.get(button, ""))

    def copy_diagnostics(self, probe=None) -> str:
        """Copy the diagnostics report (with ``probe``, else the last check's) to the clipboard."""
        from qgis.core import Qgis
        from qgis.PyQt.QtCore import QT_VERSION_STR

        report = worker_env.diagnostics_report(probe or self.last_probe, Qgis.QGIS_VERSION, QT_VERSION_STR)
        QApplication.clipboard().setText(report)
        self._status(self.workerStatusLabel, self.tr("Diagnostics copied to the clipboard."))
        return report

    def create_environment(self, env_dir: Union[str, Path, None] = None, **task_args):
        """Create the worker venv in a background task with progress; use it when it works."""
        env_dir = Path(env_dir) if env_dir else worker_env.default_env_dir()
        try:
            task = self.worker_setup.create_environment(env_dir, self.gpuBuildCheck.isChecked(), **task_args)
        except ValueError as exc:
            self._status(self.workerStatusLabel, str(exc), True)
            self.workerBanner.show_failed(str(exc), "")
            return None
        self.envProgressBar.setValue(0)
        self.envProgressBar.setVisible(True)
        self.createEnvButton.setEnabled(False)
        self.workerBanner.show_running(str(env_dir))
        self._status(self.workerStatusLabel, self.tr("Creating {} (this downloads TensorFlow and ONNX "
                                                     "Runtime; it takes a few minutes)…").format(env_dir))
        return task

    def _environment_done(self, task) -> None:
        self.createEnvButton.setEnabled(True)
        self.envProgressBar.setVisible(False)
        if task.python and not task.error and not task.isCanceled():
            self.workerPythonWidget.setFilePath(task.python)
            if task.probe is not None:
                self.show_probe(task.probe)
        else:
            reason = task.error_message or self.tr("Cancelled.")
            self._status(self.workerStatusLabel, reason, True)
            self.workerBanner.show_failed(self.tr("The worker set-up did not finish: {}").format(
                reason.splitlines()[0]), task.details)

    # ------------------------------------------------------------------ feedback from the controller
    def _add_job_progress(self) -> None:
        """The running job's progress and its Cancel button, above the queue line (the task
        manager shows the same; this is where the user looks)."""
        self.jobProgressBar = QProgressBar()
        self.jobProgressBar.setObjectName("jobProgressBar")
        self.jobProgressBar.setRange(0, 100)
        self.jobProgressBar.setTextVisible(True)
        self.cancelRunningButton = QPushButton(self.tr("Cancel"))
        self.cancelRunningButton.setObjectName("cancelRunningButton")
        self.cancelRunningButton.setToolTip(self.tr("Stop the running job; its partial outputs are removed"))
        self.cancelRunningButton.clicked.connect(self.cancelRunningRequested)
        row = QHBoxLayout()
        row.addWidget(self.jobProgressBar, 1)
        row.addWidget(self.cancelRunningButton)
        self.jobProgressRow = QWidget()
        self.jobProgressRow.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        self.bottomLayout.insertWidget(self.bottomLayout.indexOf(self.queueLayout), self.jobProgressRow)
        self.jobProgressRow.setVisible(False)
        self.cancelQueuedButton.setToolTip(self.tr("Remove the jobs that have not started yet"))

    def set_running(self, title: str) -> None:
        """A job started (its title) or none runs (empty)."""
        self.jobProgressRow.setVisible(bool(title))
        self.cancelRunningButton.setEnabled(bool(title))
        self.jobProgressBar.setValue(0)
        self.jobProgressBar.setFormat(f"{title.replace('Landslide Mapper: ', '')}: %p%" if title else "")

    def set_progress(self, fraction: float, message: str) -> None:
        """The running job's progress; a negative fraction means it is stopping."""
        if fraction < 0:
            self.cancelRunningButton.setEnabled(False)
            self.jobProgressBar.setFormat(message or self.tr("Cancelling…"))
            return
        self.jobProgressBar.setValue(int(round(100 * fraction)))
        self.jobProgressBar.setToolTip(message)

    def set_queue_text(self, text: str) -> None:
        self.queueLabel.setText(text)
        self.cancelQueuedButton.setEnabled("Waiting:" in text)

    def on_train_event(self, event: dict) -> None:
        """A worker event of a training job (queued to the main thread by the controller)."""
        if event.get("event") == "progress":
            self._status(self.trainStatusLabel, event.get("message") or "")
        if event.get("event") != "epoch":
            return
        row = self.epochTable.rowCount()
        self.epochTable.insertRow(row)
        for col, key in enumerate(("epoch", "loss", "val_loss", "val_f1", "val_iou")):
            value = event.get(key)
            text = "–" if value is None else (str(value) if key == "epoch" else f"{value:.4f}")
            self.epochTable.setItem(row, col, QTableWidgetItem(text))
        self.epochTable.scrollToBottom()
        self.trainingCurve.add_round(event)
        f1 = event.get("val_f1")
        self._status(self.trainStatusLabel, self.tr("Round {}: loss {:.4f}, validation F1 {}").format(
            event.get("epoch"), event.get("loss") or float("nan"), "–" if f1 is None else f"{f1:.3f}"))

    def on_checkpoint(self, path: str, chosen: bool = True) -> None:
        """A new checkpoint was written: list it, and select it in both pickers when it is
        ``chosen`` (better than its base)."""
        self.refresh_models(select=path if chosen else None)


class _Stack(QWidget):
    """Widgets stacked in one table cell, each with an optional label before it; ``widgets``
    holds them by key."""

    def __init__(self, items: dict, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.widgets = {key: widget for key, (_label, widget) in items.items()}
        form = QFormLayout(self)
        form.setContentsMargins(2, 1, 2, 1)
        form.setVerticalSpacing(1)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for label, widget in items.values():
            widget.setMinimumWidth(60)
            if label:
                form.addRow(label, widget)
            else:
                form.addRow(widget)


def _improved(entry: Optional[ModelEntry]) -> bool:
    """False for a checkpoint whose last stage was not better than its base (never preselected)."""
    stages = entry.stages if entry is not None else []
    return not stages or stages[-1].get("improved") is not False


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
