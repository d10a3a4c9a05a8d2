"""A QgsTask that runs one job in a worker process (DESIGN.md §3).

The job spec goes to ``python -m landslide_mapper run-job -`` on stdin; JSON-lines events
come back on stdout and become task progress, log lines and the result. TensorFlow,
ONNX Runtime and CUDA live only in the worker, so a crash or a library conflict there
can never take QGIS down. Cancelling sends SIGTERM (the worker stops at its next batch
and removes its partial run folder), then kills the process if it does not exit.

``run()`` touches no GUI: it only reads the pipe and stores what it learns; the
``on_finished`` callback runs in ``finished()``, on the main thread.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

from qgis.core import QgsTask

from ..core.events import parse_event
from ..core.jobs import job_to_json
from .child_process import follow, terminate

TERMINATE_GRACE_S = 15.0


def default_worker_python() -> str:
    """The interpreter for the worker: the best of worker_env's candidates (the configured
    one, the plugin-made venv, the checkout's .venv, ``python3``); inside QGIS
    ``sys.executable`` is QGIS itself, never a candidate."""
    from .worker_env import candidate_pythons

    return next(iter(candidate_pythons()), "python3")


def worker_environment() -> dict[str, str]:
    """Environment in which ``import landslide_mapper`` finds this very plugin, whatever the
    interpreter: the folder holding the package (a QGIS profile's plugins folder, or the
    development link) goes first on PYTHONPATH."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    package = sys.modules[__name__.split(".")[0]]
    holder = str(Path(package.__file__).absolute().parent.parent)   # not resolved: keeps the link
    env["PYTHONPATH"] = os.pathsep.join(p for p in (holder, env.get("PYTHONPATH")) if p)
    return env


class WorkerTask(QgsTask):
    """Runs ``job`` (a job spec from core.jobs) in a worker process."""

    def __init__(self, description: str, job, python: Optional[str] = None,
                 on_finished: Optional[Callable[["WorkerTask"], None]] = None,
                 on_event: Optional[Callable[[dict], None]] = None):
        super().__init__(description, QgsTask.CanCancel)
        self.job = job
        self.python = python or default_worker_python()
        self.on_finished = on_finished
        self.on_event = on_event        # called from the task thread: queue to the GUI yourself
        self.result: Optional[dict] = None
        self.error: Optional[dict] = None    # the worker's error event, or our own
        self.log_lines: list[str] = []
        self.stderr_tail = ""
        self.returncode: Optional[int] = None
        self.exception: Optional[BaseException] = None

    # -- in the task thread ---------------------------------------------------------
    def run(self) -> bool:
        try:
            return self._run()
        except Exception as exc:  # stored, shown by finished() on the main thread
            self.exception = exc
            self.error = {"type": type(exc).__name__, "message": str(exc), "user_error": False}
            return False

    def _run(self) -> bool:
        stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "landslide_mapper", "run-job", "-"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, text=True, encoding="utf-8", errors="replace",
                env=worker_environment(), start_new_session=True)
        except OSError as exc:
            raise RuntimeError(f"The worker Python {self.python} cannot be started: {exc.strerror or exc}. "
                               "Choose the worker Python in the dock's Worker tab.") from None

        def send_job():
            try:
                proc.stdin.write(job_to_json(self.job))
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the worker died at start-up: its stderr says why

        self.returncode = follow(proc, self._handle, self.isCanceled,
                                 lambda p: terminate(p, TERMINATE_GRACE_S, whole_group=False), send_job)
        stderr.seek(0)
        self.stderr_tail = stderr.read()[-4000:]
        stderr.close()
        if self.isCanceled():
            return False
        if self.result is None and self.error is None:
            self.error = {"type": "WorkerCrash", "user_error": False,
                          "message": f"The worker stopped (exit code {self.returncode}) without a result."
                                     + (f" Its last words: {self.stderr_tail.strip()[-500:]}"
                                        if self.stderr_tail.strip() else "")}
        return self.result is not None

    def _handle(self, line: str) -> None:
        event = parse_event(line)
        if event is None:
            self.log_lines.append(line.rstrip())
            return
        kind = event["event"]
        if kind == "progress":
            self.setProgress(100.0 * float(event.get("fraction", 0.0)))
        elif kind == "log":
            self.log_lines.append(str(event.get("message", "")))
        elif kind == "result":
            self.result = event.get("result")
        elif kind == "error":
            self.error = event
        if self.on_event is not None:
            self.on_event(event)

    # -- on the main thread ---------------------------------------------------------
    def finished(self, ok: bool) -> None:  # noqa: D401 (QGIS API)
        if self.on_finished is not None:
            self.on_finished(self)

    @property
    def error_message(self) -> str:
        if self.isCanceled():
            return "Cancelled; no partial outputs were kept."
        return (self.error or {}).get("message", "")

    @property
    def details(self) -> str:
        """Everything a *Details* dialog should show: log, error, the worker's stderr."""
        parts = ["\n".join(self.log_lines)]
        if self.error:
            parts.append(f"{self.error.get('type', 'Error')}: {self.error.get('message', '')}")
        if self.stderr_tail.strip():
            parts.append("Worker stderr:\n" + self.stderr_tail.strip())
        return "\n\n".join(p for p in parts if p)
