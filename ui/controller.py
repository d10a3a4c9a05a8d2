"""Runs the dock's jobs: one worker task at a time, results onto the map, reasons into the bar.

The dock only builds job specs and emits them (``jobRequested``); this object owns the
tasks. Jobs queue behind the running one (two TensorFlow jobs would fight over the GPU
and the cores), results are handled in ``finished()`` on the main thread, and training
events reach the dock through a queued Qt signal, never by touching widgets from the
task thread.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Optional

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import QObject, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QMessageBox, QPushButton

from ..core.training.checkpoint import improvement_text, model_name, unreviewed_text
from ..core.jobs.specs import AnalyseJob, AssessJob, InferenceJob, SubtractJob, TrainJob
from ..core.inventory.report import run_report
from ..tasks.worker_task import WorkerTask
from ..qgis_io.run_layers import add_assessment_to_project, add_changes_to_project, add_run_to_project


class _EventRelay(QObject):
    """Carries (task, worker event) from the task thread to the main thread (queued connection)."""

    event = pyqtSignal(object, object)


class JobController(QObject):
    """Queue of worker tasks for the dock, and what happens when each one ends."""

    queueChanged = pyqtSignal(str)
    jobFinished = pyqtSignal(object)       # the WorkerTask, after its results were handled
    progressChanged = pyqtSignal(float, str)   # the running job: fraction done (-1: unknown), what it does
    runningChanged = pyqtSignal(str)           # the running job's title; empty when none runs

    def __init__(self, message_bar: QgsMessageBar, worker_python: Callable[[], Optional[str]],
                 project: Optional[QgsProject] = None, chart_panel: Callable[[], object] | None = None,
                 on_checkpoint: Callable[[str, bool], None] | None = None,
                 on_train_event: Callable[[dict], None] | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.message_bar = message_bar
        self.worker_python = worker_python
        self.project = project
        self.chart_panel = chart_panel
        self.on_checkpoint = on_checkpoint
        self.on_train_event = on_train_event
        self._relay = _EventRelay()
        self._relay.event.connect(self._event)
        self.pending: deque[WorkerTask] = deque()
        self.running: Optional[WorkerTask] = None
        self.done: list[WorkerTask] = []

    # -- queue ----------------------------------------------------------------------
    def submit(self, job, title: str) -> Optional[WorkerTask]:
        """Queue ``job``; returns its task, or None when no worker Python is available."""
        python = self.worker_python()
        if not python:
            self._push("Landslide Mapper", "No worker Python with TensorFlow and ONNX Runtime was found: "
                       "choose one or create the environment in the dock's Worker tab.", Qgis.MessageLevel.Critical)
            return None
        task = WorkerTask(title, job, python=python, on_finished=self._finished)
        task.worker.on_event = lambda event, t=task: self._relay.event.emit(t, event)   # task thread
        self.pending.append(task)
        self._start_next()
        return task

    def cancel_running(self) -> bool:
        """Ask the running job to stop (the worker removes its partial outputs); False when
        none runs."""
        if self.running is None:
            return False
        self.running.cancel()
        self.progressChanged.emit(-1.0, "Cancelling…")
        return True

    def _event(self, task: WorkerTask, event: dict) -> None:
        """A worker event, now on the main thread: the running job's progress for the dock,
        and a training job's events for its curve."""
        if task is not self.running:
            return
        if event.get("event") == "progress" and not task.isCanceled():
            self.progressChanged.emit(float(event.get("fraction", 0.0)), str(event.get("message") or ""))
        if isinstance(task.job, TrainJob) and self.on_train_event is not None:
            self.on_train_event(event)

    def cancel_pending(self) -> int:
        """Drop the jobs that have not started; returns how many."""
        n = len(self.pending)
        self.pending.clear()
        self._announce()
        return n

    def _start_next(self) -> None:
        if self.running is None and self.pending:
            self.running = self.pending.popleft()
            self.progressChanged.emit(0.0, "Starting the worker…")
            QgsApplication.taskManager().addTask(self.running)
        self._announce()

    def _announce(self) -> None:
        self.runningChanged.emit("" if self.running is None else self.running.description())
        if self.running is None:
            text = "No job running."
        else:
            text = f"Running: {self.running.description()}."
            if self.pending:
                text += f" Waiting: {', '.join(t.description() for t in self.pending)}."
        self.queueChanged.emit(text)

    # -- results, on the main thread ------------------------------------------------
    def _finished(self, task: WorkerTask) -> None:
        try:
            if task.result is not None and not task.isCanceled():
                self._show_result(task)
            elif task.isCanceled():
                self._push(task.description(), task.error_message, Qgis.MessageLevel.Info)
            else:
                self._push_failure(task)
        except Exception as exc:  # a result that cannot be shown must not stop the queue
            self._push(task.description(), f"Finished, but the results could not be added: {exc}",
                       Qgis.MessageLevel.Warning)
        finally:
            self.done.append(task)
            if self.running is task:
                self.running = None
            self.jobFinished.emit(task)
            self._start_next()

    def _show_result(self, task: WorkerTask) -> None:
        job, result = task.job, task.result
        project = self.project or QgsProject.instance()
        run_dir = result.get("run_dir")
        report_kind = None
        if isinstance(job, InferenceJob):
            report_kind = "mapping"
            add_run_to_project(result, project)
            years = ", ".join(str(y["year"]) for y in result.get("years", []))
            text = f"Mapped {years} with {model_name(result.get('model', ''))} into {run_dir}."
        elif isinstance(job, TrainJob):
            f1 = (result.get("validation") or {}).get("f1")
            text = (f"New checkpoint {result['name']} (stage {result['stage']}"
                    + (f", validation F1 {f1:.2f}" if isinstance(f1, (int, float)) else "")
                    + f") in {result['checkpoint']}.")
            better = result.get("improved") is not False
            if self.on_checkpoint is not None:            # one that is not better is listed, not chosen
                self.on_checkpoint(result["checkpoint"], better)
            if not better:
                self._push(task.description(), f"{text} {improvement_text(result)} {unreviewed_text(result)}".rstrip(),
                           Qgis.MessageLevel.Warning)
                return
            text += f" {improvement_text(result)}".rstrip()
            text += f" {unreviewed_text(result)}".rstrip()
        elif isinstance(job, SubtractJob):
            report_kind = "subtract"
            add_changes_to_project(result, project)
            text = f"New and enlarged landslides written to {result.get('geopackage')}."
        elif isinstance(job, AssessJob):
            report_kind = "accuracy"
            add_assessment_to_project(result, project)
            scores = "; ".join(f"{r['year']}: F1 {r['f1']}" for r in result.get("rows", []))
            text = f"Accuracy {scores} (details in {run_dir})."
        elif isinstance(job, AnalyseJob):
            report_kind = "statistics"
            text = f"Statistics and FAD written to {run_dir}."
        else:
            text = f"Done: {run_dir}."
        if run_dir and result.get("charts") and self.chart_panel is not None:
            panel = self.chart_panel()
            panel.show_run(run_dir)
            panel.show()
        report = run_report(result, report_kind) if report_kind and run_dir else None
        self._push_success(task.description(), text, run_dir, report)
        if task.worker.warnings:               # suspicious input: said apart from the log, and kept
            self._push(task.description(), "Warning: " + " ".join(task.worker.warnings), Qgis.MessageLevel.Warning)

    def _push_success(self, title: str, text: str, run_dir: Optional[str], report) -> None:
        """The success message, with buttons that open the run folder and its HTML report
        (the same report.html a Processing run writes)."""
        item = self.message_bar.createMessage(title, text)
        targets = ([(self.tr("Open folder"), run_dir)] if run_dir else []) + (
            [(self.tr("Open report"), str(report))] if report else [])
        for label, path in targets:
            button = QPushButton(label)
            button.setObjectName(label.lower().replace(" ", "_"))
            button.clicked.connect(lambda _checked=False, p=path: QDesktopServices.openUrl(QUrl.fromLocalFile(p)))
            item.layout().addWidget(button)
        self.message_bar.pushWidget(item, Qgis.MessageLevel.Success, 15)

    def _push_failure(self, task: WorkerTask) -> None:
        # everything the button shows is read now: QGIS deletes the task once it has finished
        title, reason, text = task.description(), task.failure_reason, task.details
        bar = self.message_bar
        item = bar.createMessage(title, reason)
        details = QPushButton(self.tr("Details"))

        def show_details():
            box = QMessageBox(QMessageBox.Icon.Critical, title, reason, QMessageBox.StandardButton.Close,
                              bar.window())
            box.setDetailedText(text)
            box.exec()

        details.clicked.connect(show_details)
        item.layout().addWidget(details)
        bar.pushWidget(item, Qgis.MessageLevel.Critical, 0)

    def _push(self, title: str, text: str, level) -> None:
        self.message_bar.pushMessage(title, text, level, 0 if level == Qgis.MessageLevel.Critical else 10)


def run_title(job) -> str:
    """The task manager's name for a job."""
    if isinstance(job, InferenceJob):
        years = sorted(y.year for y in job.years)
        span = f"{years[0]}–{years[-1]}" if len(years) > 1 else str(years[0])
        return f"Landslide Mapper: mapping {span}"
    if isinstance(job, TrainJob):
        return f"Landslide Mapper: fine-tuning {job.name}" if job.base_checkpoint else \
            f"Landslide Mapper: training {job.name}"
    names = {SubtractJob: "temporal subtraction", AnalyseJob: "statistics and FAD",
             AssessJob: "accuracy assessment"}
    return f"Landslide Mapper: {names.get(type(job), type(job).__name__)}"
