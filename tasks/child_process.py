"""Following a child process line by line from a QgsTask thread, and stopping it.

Shared by the worker task (JSON-lines events) and the environment set-up (pip's
output): a reader thread drains stdout into a queue, so the task can check for
cancellation every ``POLL_S`` even while the child prints nothing.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from typing import Callable

POLL_S = 0.1


def follow(proc: subprocess.Popen, handle: Callable[[str], None], cancelled: Callable[[], bool],
           stop: Callable[[subprocess.Popen], None], before: Callable[[], None] | None = None) -> int:
    """Give each stdout line to ``handle`` until the child closes stdout (or ``stop`` it once
    ``cancelled()``); then the lines written just before exit; returns the exit code.
    ``before`` runs once the reader is started (e.g. to write the child's stdin)."""
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    if before is not None:
        before()
    while True:
        if cancelled():
            stop(proc)
            break
        try:
            line = lines.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if line is None:            # stdout closed: the child has finished
            break
        handle(line)
    code = proc.wait()
    reader.join(timeout=5)
    while not lines.empty():
        line = lines.get_nowait()
        if line is not None:
            handle(line)
    return code


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def terminate(proc: subprocess.Popen, grace_s: float, whole_group: bool) -> None:
    """SIGTERM (to the leader, which may clean up, or to the whole group), then SIGKILL to
    the group if it has not exited after ``grace_s``. The child must have been started
    with ``start_new_session=True``."""
    if proc.poll() is not None:
        return
    try:
        if whole_group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
