"""The worker environment's background tasks, run for the dock: checking the worker Python
and creating its virtual environment.

Like jobs (``controller.JobController``), these tasks belong to a controller, not to a
widget: the dock asks (``probe``, ``create_environment``, ``cancel_setup``) and shows what
the signals report. Results reach the signals on the main thread (QgsTask's finished
callbacks); nothing here touches a widget.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..tasks import worker_env
from ..tasks.environment_setup import EnvironmentSetupTask


class WorkerSetupController(QObject):
    """Owns the probe and set-up tasks of the worker Python."""

    probed = pyqtSignal(object, object)        # (worker_env.Probe, estimated download MB or None)
    probeFailed = pyqtSignal(str, str)         # (python, why the check itself failed)
    setupProgress = pyqtSignal(float)          # 0-100
    setupFinished = pyqtSignal(object)         # the finished EnvironmentSetupTask

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.probe_task: Optional[QgsTask] = None
        self.setup_task: Optional[EnvironmentSetupTask] = None

    def probe(self, python: str, gpu: bool) -> QgsTask:
        """Check ``python`` in the background; with a broken worker, also estimate what
        setting one up would download (``gpu``: the GPU build)."""
        def work(_task):
            result = worker_env.probe(python)
            estimate = None
            if not result.ok:
                try:
                    estimate = worker_env.setup_estimate(gpu=gpu)[0]
                except Exception:       # no base Python to ask: the probe's message says so anyway
                    estimate = None
            return result, estimate

        def done(exception, result=None):
            if sip.isdeleted(self):
                return
            if exception is not None or result is None:
                self.probeFailed.emit(python, str(exception))
            else:
                self.probed.emit(*result)

        self.probe_task = QgsTask.fromFunction(f"Landslide Mapper: checking {python}", work, on_finished=done)
        QgsApplication.taskManager().addTask(self.probe_task)
        return self.probe_task

    @property
    def setup_running(self) -> bool:
        return self.setup_task is not None

    def create_environment(self, env_dir: Path, gpu: bool, **task_args) -> EnvironmentSetupTask:
        """Start creating the worker venv in ``env_dir``; raises ValueError (with the reason)
        when it cannot be made there."""
        task = EnvironmentSetupTask(env_dir, gpu=gpu, on_finished=self._setup_done, **task_args)
        task.progressChanged.connect(self.setupProgress)
        self.setup_task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel_setup(self) -> None:
        if self.setup_task is not None and not sip.isdeleted(self.setup_task):
            self.setup_task.cancel()

    def _setup_done(self, task) -> None:
        self.setup_task = None
        if not sip.isdeleted(self):
            self.setupFinished.emit(task)
