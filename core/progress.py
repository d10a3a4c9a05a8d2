"""Progress, log and cancellation shared by the CLI, the worker and the QGIS tasks.

Long loops call :meth:`Reporter.progress`, which is also where cancellation is checked,
so a cancel request is honoured within one batch of work.
"""
from __future__ import annotations

import threading
from typing import Callable

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]
LogFn = Callable[[str], None]
EventFn = Callable[..., None]
WARNING_PREFIX = "Warning: "        # log lines that are warnings (code that has only a log callable uses it)


class Reporter:
    """Sends progress in [0, 1] and log lines to callbacks; raises Cancelled when asked."""

    def __init__(self, on_progress: ProgressFn | None = None, on_log: LogFn | None = None,
                 cancel_event: threading.Event | None = None, on_event: EventFn | None = None):
        self._on_progress = on_progress
        self._on_log = on_log
        self._on_event = on_event
        self.cancel_event = cancel_event or threading.Event()
        self._start, self._span = 0.0, 1.0

    def sub(self, start: float, stop: float) -> "Reporter":
        """A reporter whose [0, 1] maps onto [start, stop] of this one."""
        child = Reporter(self._on_progress, self._on_log, self.cancel_event, self._on_event)
        child._start = self._start + start * self._span
        child._span = (stop - start) * self._span
        return child

    def quiet(self) -> "Reporter":
        """The same log, events and cancellation without progress (a helper thread's)."""
        return Reporter(None, self._on_log, self.cancel_event, self._on_event)

    def progress(self, fraction: float, message: str = "") -> None:
        self.check_cancelled()
        if self._on_progress is not None:
            f = min(1.0, max(0.0, fraction))
            self._on_progress(self._start + f * self._span, message)

    def log(self, message: str) -> None:
        """A log line; one that starts with WARNING_PREFIX is also a ``warning`` event, which
        the dock and Processing show apart from the log."""
        if self._on_log is not None:
            self._on_log(message)
        if message.startswith(WARNING_PREFIX):
            self.event("warning", message=message[len(WARNING_PREFIX):])

    def warn(self, message: str) -> None:
        """Suspicious but valid input: logged, and sent as a ``warning`` event."""
        self.log(WARNING_PREFIX + message)

    def event(self, name: str, **payload) -> None:
        """A structured event (e.g. per-epoch training metrics) for displays that plot it."""
        if self._on_event is not None:
            self._on_event(name, **payload)

    def cancel(self) -> None:
        self.cancel_event.set()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()
