"""One job in a worker process, followed from the calling thread (ARCHITECTURE.md: how a job travels).

The job spec goes to ``python -m landslide_mapper run-job -`` on stdin; JSON-lines events
come back on stdout and become progress, log lines and the result. TensorFlow, ONNX
Runtime and CUDA live only in the worker, so a crash or a library conflict there can
never take QGIS down. The worker runs with ``--control``: stopping writes a ``cancel``
line and closes its stdin (core/jobs/events.py), on every platform; the worker stops at its
next progress point and removes its partial run folder. Only a worker that has not exited
after ``TERMINATE_GRACE_S`` is killed, with its children (worker_platform.stop_tree).

Both ways QGIS runs a job use this: the dock's :class:`~.worker_task.WorkerTask` (a
QgsTask) and the Processing algorithms (in Processing's own thread, or in qgis_process).
Nothing here touches a widget.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

from ..core.jobs.events import CANCEL_LINE, parse_event
from ..core.jobs.specs import job_to_json
from . import worker_platform
from .child_process import follow

TERMINATE_GRACE_S = 15.0
MISSING_PACKAGE_SIGNS = ("ModuleNotFoundError", "ImportError", "No module named")


def default_worker_python() -> str:
    """The interpreter for the worker: the best of worker_env's candidates (the environment
    variable, the configured one, the plugin-made venv, the checkout's .venv, ``python3``);
    inside QGIS ``sys.executable`` is QGIS itself, never a candidate."""
    from .worker_env import candidate_pythons

    return next(iter(candidate_pythons()), worker_platform.default_base_python())


def worker_environment() -> dict[str, str]:
    """Environment in which ``import landslide_mapper`` finds this very plugin, whatever the
    interpreter: the folder holding the package (a QGIS profile's plugins folder, or the
    development link) goes first on PYTHONPATH."""
    from .worker_env import child_environment

    env = child_environment()
    package = sys.modules[__name__.split(".")[0]]
    holder = str(Path(package.__file__).absolute().parent.parent)   # not resolved: keeps the link
    env["PYTHONPATH"] = os.pathsep.join(p for p in (holder, env.get("PYTHONPATH")) if p)
    return env


def stop_worker(proc: subprocess.Popen) -> None:
    """Ask the worker to stop through its control protocol (a cancel line, then the end of
    its stdin); kill it and its children only if it has not exited after the grace period."""
    try:
        proc.stdin.write(CANCEL_LINE + "\n")
        proc.stdin.flush()
    except (OSError, ValueError):
        pass                    # already closed, or the worker has gone
    _close(proc.stdin)
    worker_platform.stop_tree(proc, TERMINATE_GRACE_S, polite=False)


def _close(stream) -> None:
    try:
        stream.close()
    except (OSError, ValueError):
        pass


class WorkerRun:
    """Runs ``job`` (a job spec from core.jobs.specs) in a worker process when :meth:`run` is called.

    ``on_progress(fraction, message)`` and ``on_event(event)`` are called from the thread
    that calls :meth:`run`; whoever shows them on a GUI must queue them there itself.
    """

    def __init__(self, job, python: Optional[str] = None,
                 on_progress: Optional[Callable[[float, str], None]] = None,
                 on_event: Optional[Callable[[dict], None]] = None,
                 on_log: Optional[Callable[[str], None]] = None):
        self.job = job
        self.python = python or default_worker_python()
        self.on_progress = on_progress
        self.on_event = on_event
        self.on_log = on_log
        self.result: Optional[dict] = None
        self.error: Optional[dict] = None    # the worker's error event, or our own
        self.log_lines: list[str] = []
        self.warnings: list[str] = []         # suspicious but valid input, to show apart from the log
        self.stderr_tail = ""
        self.returncode: Optional[int] = None
        self.cancelled = False

    def run(self, is_cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Start the worker, follow it to its end (stopping it once ``is_cancelled()``) and
        return whether it produced a result. Never raises for the job's own failures:
        they are in :attr:`error`."""
        try:
            return self._run(is_cancelled)
        except Exception as exc:
            self.error = {"type": type(exc).__name__, "message": str(exc), "user_error": False}
            return False

    def _run(self, is_cancelled: Callable[[], bool]) -> bool:
        stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        try:
            proc = subprocess.Popen(
                [self.python, "-m", "landslide_mapper", "run-job", "--control", "-"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, text=True, encoding="utf-8", errors="replace",
                env=worker_environment(), **worker_platform.popen_options(worker_platform.current()))
        except OSError as exc:
            stderr.close()
            raise RuntimeError(f"The worker Python {self.python} cannot be started: {exc.strerror or exc}. "
                               "Choose the worker Python in the dock's Worker tab.") from None

        def send_job():       # stdin stays open: closing it would cancel the job
            try:
                proc.stdin.write(job_to_json(self.job, indent=None) + "\n")
                proc.stdin.flush()
            except OSError:
                pass  # the worker died at start-up: its stderr says why

        def cancelled() -> bool:
            self.cancelled = self.cancelled or bool(is_cancelled())
            return self.cancelled

        self.returncode = follow(proc, self._handle, cancelled, stop_worker, send_job)
        _close(proc.stdin)
        proc.stdout.close()
        stderr.seek(0)
        self.stderr_tail = stderr.read()[-4000:]
        stderr.close()
        if self.cancelled:
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
            self._log(line.rstrip())
            return
        kind = event["event"]
        if kind == "progress":
            if self.on_progress is not None:
                self.on_progress(float(event.get("fraction", 0.0)), str(event.get("message") or ""))
        elif kind == "log":
            self._log(str(event.get("message", "")))
        elif kind == "warning":
            self.warnings.append(str(event.get("message", "")))
        elif kind == "result":
            self.result = event.get("result")
        elif kind == "error":
            self.error = event
        if self.on_event is not None:
            self.on_event(event)

    def _log(self, line: str) -> None:
        self.log_lines.append(line)
        if self.on_log is not None:
            self.on_log(line)

    @property
    def error_message(self) -> str:
        if self.cancelled:
            return "Cancelled; no partial outputs were kept."
        return (self.error or {}).get("message", "")

    @property
    def failure_reason(self) -> str:
        """The error for a person: the worker's reason, and the fix when its Python lacks packages."""
        reason = self.error_message or "The worker failed without saying why."
        if any(k in self.details for k in MISSING_PACKAGE_SIGNS):
            reason += (f" The worker Python ({self.python}) lacks packages: check it, choose another or "
                       "create the environment in the Landslide Mapper dock's Worker tab (or set "
                       "LANDSLIDE_MAPPER_PYTHON to an interpreter that has them).")
        return reason

    @property
    def details(self) -> str:
        """Everything a *Details* dialog should show: log, error, the worker's stderr."""
        parts = ["\n".join(self.log_lines)]
        if self.error:
            parts.append(f"{self.error.get('type', 'Error')}: {self.error.get('message', '')}")
        if self.stderr_tail.strip():
            parts.append("Worker stderr:\n" + self.stderr_tail.strip())
        return "\n\n".join(p for p in parts if p)
