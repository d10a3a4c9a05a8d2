"""The dock's QgsTask: one job in a worker process (see worker_process.py).

``run()`` touches no GUI: it follows the worker and stores what it learns; the
``on_finished`` callback runs in ``finished()``, on the main thread.
"""
from __future__ import annotations

from typing import Callable, Optional

from qgis.core import QgsTask

from .worker_process import WorkerRun


class WorkerTask(QgsTask):
    """Runs ``job`` (a job spec from core.jobs.specs) in a worker process."""

    def __init__(self, description: str, job, python: Optional[str] = None,
                 on_finished: Optional[Callable[["WorkerTask"], None]] = None,
                 on_event: Optional[Callable[[dict], None]] = None):
        super().__init__(description, QgsTask.Flag.CanCancel)
        # on_event is called from the task thread: queue it to the GUI yourself
        self.worker = WorkerRun(job, python, on_progress=lambda f, _m: self.setProgress(100.0 * f),
                                on_event=on_event)
        self.on_finished = on_finished

    # -- in the task thread ---------------------------------------------------------
    def run(self) -> bool:
        return self.worker.run(self.isCanceled) and not self.isCanceled()

    # -- on the main thread ---------------------------------------------------------
    def finished(self, ok: bool) -> None:  # noqa: D401 (QGIS API)
        if self.on_finished is not None:
            self.on_finished(self)

    # what the worker learnt, for the controller and the tests
    job = property(lambda self: self.worker.job)
    python = property(lambda self: self.worker.python)
    result = property(lambda self: self.worker.result)
    error = property(lambda self: self.worker.error)
    log_lines = property(lambda self: self.worker.log_lines)
    returncode = property(lambda self: self.worker.returncode)
    details = property(lambda self: self.worker.details)
    failure_reason = property(lambda self: self.worker.failure_reason)

    @property
    def error_message(self) -> str:
        if self.isCanceled():
            return "Cancelled; no partial outputs were kept."
        return self.worker.error_message
