"""The JSON-lines event protocol between a worker process and whoever drives it.

One JSON object per line on stdout: ``{"event": "start" | "progress" | "log" | "result" |
"error", ...}``. The QGIS task turns these into progress, messages and results.

The other direction (``run-job --control``): the job spec as one JSON line on stdin, then
stdin stays open; a ``cancel`` line, or stdin's end (the driver closed it or died), asks
the job to stop at its next progress point and remove its partial outputs. This works the
same on Windows, macOS and Linux: no signal is needed to stop a worker cleanly.
"""
from __future__ import annotations

import json
import sys
import threading
from typing import IO, Any, Callable

from ..errors import Cancelled, LandslideMapperError

CANCEL_LINE = "cancel"


class JsonlEmitter:
    """Writes events to a stream; thread-safe, flushed line by line."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._last = -1.0

    def emit(self, event: str, **payload: Any) -> None:
        line = json.dumps({"event": event, **payload}, default=str)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def progress(self, fraction: float, message: str = "") -> None:
        if fraction - self._last >= 0.001 or fraction >= 1.0:  # at most ~1000 lines a job
            self._last = fraction
            self.emit("progress", fraction=round(fraction, 4), message=message)

    def log(self, message: str) -> None:
        self.emit("log", message=message)

    def error(self, exc: BaseException) -> None:
        self.emit("error", type=type(exc).__name__, message=str(exc),
                  cancelled=isinstance(exc, Cancelled),
                  user_error=isinstance(exc, LandslideMapperError))


def parse_event(line: str) -> dict[str, Any] | None:
    """One event from a line of worker output; None for anything that is not an event."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def watch_control(stream: IO[str], cancel: Callable[[], None]) -> threading.Thread:
    """Follow the driver's control lines on ``stream`` in a daemon thread: a ``cancel``
    line or the end of the stream calls ``cancel()`` (once) and ends the watch."""
    def watch():
        try:
            for line in stream:
                if line.strip() == CANCEL_LINE:
                    break
        except (OSError, ValueError):      # the stream was closed under us
            pass
        cancel()

    thread = threading.Thread(target=watch, name="landslide-mapper-control", daemon=True)
    thread.start()
    return thread
