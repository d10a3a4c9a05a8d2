"""Running one job as a process: the worker's entry point (``run-job``), and the output,
signal handling and exit codes every command-line job shares. The QGIS side starts
``python -m landslide_mapper run-job --control`` (tasks/worker_process.py) and reads the
JSON-lines events this prints (core/jobs/events.py); ARCHITECTURE.md shows the whole path."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from . import faults
from ..errors import Cancelled, InputError, LandslideMapperError
from .events import JsonlEmitter, watch_control
from .specs import job_from_json
from ..progress import Reporter

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_CANCELLED = 0, 1, 2, 130


class HumanOutput:
    """A tqdm progress bar on stderr, log lines above it."""

    def __init__(self, quiet: bool = False):
        from tqdm import tqdm

        self.quiet = quiet
        self.bar = None if quiet else tqdm(total=1000, unit="‰", file=sys.stderr,
                                           bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def progress(self, fraction: float, message: str = "") -> None:
        if self.bar is not None:
            self.bar.n = int(fraction * 1000)
            self.bar.set_postfix_str(message, refresh=False)
            self.bar.refresh()

    def log(self, message: str) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def install_cancel_handlers(reporter: Reporter) -> None:
    """SIGTERM/SIGINT ask the job to stop at its next progress point (and clean up).

    A repeated SIGTERM changes nothing (a driver may send it twice); a second Ctrl-C
    (SIGINT) stops at once, for a person who does not want to wait."""
    def handler(signum, _frame):
        reporter.cancel()
        if signum == signal.SIGINT:
            signal.signal(signum, signal.SIG_DFL)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def execute(job_fn, jsonl: bool, quiet: bool = False, output=None):
    """Run ``job_fn(reporter)`` with the chosen output; returns (exit code, result).

    ``output``: the output folder (or a callable giving it once known), where a crash
    report is written and whose disk is checked when writing fails."""
    out = JsonlEmitter() if jsonl else HumanOutput(quiet)
    reporter = Reporter(out.progress, out.log, on_event=out.emit if jsonl else None)
    install_cancel_handlers(reporter)
    if jsonl:
        out.emit("start", pid=os.getpid())
    try:
        result = job_fn(reporter)
    except LandslideMapperError as exc:
        if jsonl:
            out.error(exc)
        else:
            out.close()
            print(f"error: {exc}", file=sys.stderr)
        return (EXIT_CANCELLED if isinstance(exc, Cancelled) else EXIT_USER_ERROR), None
    except Exception as exc:  # noqa: BLE001 — a known cause (a full disk), else a bug: never a traceback
        message, known, report = faults.failure(exc, output() if callable(output) else output)
        code = EXIT_USER_ERROR if known else EXIT_FAILED
        if jsonl:
            out.emit("error", type=type(exc).__name__, message=message, cancelled=False,
                     user_error=known, crash_report=str(report) if report else None)
        else:
            out.close()
            print(f"error: {message}", file=sys.stderr)
        return code, None
    if jsonl:
        out.emit("result", result=result.to_dict() if hasattr(result, "to_dict") else result)
    else:
        out.close()
    return EXIT_OK, result



def run_job_command(spec_path: str, control: bool) -> int:
    """``python -m landslide_mapper run-job``: the job spec from a file or stdin (``-``);
    with ``control`` the job is the first stdin line and later lines may cancel it
    (core/jobs/events.py). Prints JSON-lines events; returns the exit code."""
    from .runner import run_job

    spec = {}

    def job_fn(reporter):
        try:
            if control:                 # the job on one line, then stdin carries control lines
                text = sys.stdin.readline()
            else:
                text = sys.stdin.read() if spec_path == "-" else Path(spec_path).read_text()
        except OSError as exc:
            raise InputError(f"Cannot read the job specification {spec_path}: {exc.strerror or exc}.") from None
        job = job_from_json(text)
        spec["output"] = getattr(job, "output_dir", None)
        if control:
            watch_control(sys.stdin, reporter.cancel)
        return run_job(job, reporter)

    return execute(job_fn, jsonl=True, output=lambda: spec.get("output"))[0]
