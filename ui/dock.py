"""The Landslide Mapper dock: gathers a job from the form and emits it.

The layout lives in ``dock.ui`` (Qt Designer). The dock is put together from one part per
concern: its model pickers (``dock_models.py``), its input tables (``dock_rows.py``), the
checks of the form (``dock_checks.py``) and the jobs made from it (``dock_jobs.py``, the
same job specs the command line and Processing use); this module sets the form up and
shows the worker's state and the running job. It never runs a job itself:
``jobRequested(job, title)`` goes to the controller, which owns the tasks. Nothing heavy
is imported here: inference and training run in the worker process.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from qgis.core import QgsSettings
from qgis.gui import QgsDockWidget, QgsFileWidget
from qgis.PyQt import uic
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (QApplication, QComboBox, QHBoxLayout, QHeaderView, QLineEdit, QProgressBar,
                                 QPushButton, QTableWidgetItem, QWidget)

from .. import qgis_compat
from ..core.mapping.cluster import default_local_workers
from ..core.jobs.specs import InferenceJob
from ..tasks import worker_env
from ..tasks.worker_process import default_worker_python
from .area_picker import AreaPicker
from .dock_checks import FormChecks
from .dock_jobs import JobForms
from .dock_models import SETTINGS, ModelPickers
from .dock_rows import InputRows
from .training_curve import TrainingCurve
from .worker_banner import WorkerBanner
from .worker_setup import WorkerSetupController
from ..qgis_io.inputs import Problem
from ..qgis_io.model_catalog import ModelEntry, user_checkpoint_dir

PLUGIN_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = PLUGIN_DIR / "models"

FORM_CLASS, _ = uic.loadUiType(str(Path(__file__).resolve().parent / "dock.ui"))


def default_output_dir() -> Path:
    return Path.home() / "Landslide Mapper"


class LandslideMapperDock(ModelPickers, InputRows, FormChecks, JobForms, QgsDockWidget, FORM_CLASS):
    """Map, Fine-tune, Analyse and Worker tabs; emits jobs, runs none."""

    jobRequested = pyqtSignal(object, str)
    cancelQueuedRequested = pyqtSignal()
    cancelRunningRequested = pyqtSignal()

    def __init__(self, models_dir: Union[str, Path, None] = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setupUi(self)
        # the mapping defaults are the job spec's (core/jobs/specs.py), not the form's
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
