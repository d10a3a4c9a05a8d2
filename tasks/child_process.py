"""Following a child process line by line from a QgsTask thread (stopping it is
worker_platform.stop_tree's job, which knows each platform's way).

Shared by the worker task (JSON-lines events) and the environment set-up (pip's
output): a reader thread drains stdout into a queue, so the task can check for
cancellation every ``POLL_S`` even while the child prints nothing.
"""
from __future__ import annotations

import queue
import subprocess
import threading
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
