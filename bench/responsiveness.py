"""Does QGIS stay responsive while a job runs? Main-thread event-loop latency, idle vs during
a mapping run in the worker (WorkerTask), in the same process and run.

A 10 ms QTimer on the main thread records when it fires; the gaps beyond 10 ms are the time
the GUI could not react. Reported: median, 99th percentile and worst gap, idle (no job)
and while the bundled checkpoint maps a demo scene through QGIS' task manager, plus the
ratio of the two, the run's wall time and the peak RSS of the QGIS process and of the worker.

    .venv/bin/python bench/responsiveness.py [--size 1024] [--years 2]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402
from qgis.core import QgsApplication  # noqa: E402
from qgis.PyQt.QtCore import QTimer  # noqa: E402

from landslide_mapper.core.mapping.bundled import CASCADE_CHECKPOINT  # noqa: E402
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput  # noqa: E402
from landslide_mapper.tasks.worker_task import WorkerTask  # noqa: E402


def gaps_while(app, running, limit_s: float) -> np.ndarray:
    """Timer gaps (ms) on the main thread for as long as ``running()`` is true."""
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    deadline = time.monotonic() + limit_s
    while running() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    return np.diff(np.array(ticks)) * 1000.0


def describe(g: np.ndarray) -> str:
    return f"median {np.median(g):.1f} ms, p99 {np.percentile(g, 99):.1f} ms, worst {g.max():.1f} ms ({len(g)} ticks)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--years", type=int, default=2)
    args = ap.parse_args()
    app = QgsApplication([], False)
    app.initQgis()
    with tempfile.TemporaryDirectory() as tmp:
        years = list(range(2016, 2016 + args.years))
        scene = Path(tmp) / "scene"    # made by another process: the RSS below is QGIS' own
        subprocess.run([sys.executable, "-m", "landslide_mapper", "scene", "--size", str(args.size), "--years",
                        ",".join(map(str, years)), "--output", str(scene)], check=True, capture_output=True)
        job = InferenceJob(years=[YearInput(y, str(scene / f"scene_{y}.tif")) for y in years],
                           model=str(CASCADE_CHECKPOINT), output_dir=str(Path(tmp) / "runs"))
        idle_until = time.monotonic() + 5.0
        idle = gaps_while(app, lambda: time.monotonic() < idle_until, 6.0)
        done: list = []
        task = WorkerTask("bench", job, python=sys.executable, on_finished=done.append)
        start = time.monotonic()
        QgsApplication.taskManager().addTask(task)
        busy = gaps_while(app, lambda: not done, 1800.0)
        wall = time.monotonic() - start
        if task.result is None:
            raise SystemExit(f"the run failed: {task.error_message}\n{task.details}")
    worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024   # the largest child
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"mapping {args.years} year(s) of {args.size}² px with the bundled checkpoint: {wall:.1f} s")
    print(f"main-thread timer gaps, idle:       {describe(idle)}")
    print(f"main-thread timer gaps, during run: {describe(busy)}")
    print(f"p99 ratio during/idle: {np.percentile(busy, 99) / np.percentile(idle, 99):.2f}; "
          f"worst gap during the run: {busy.max():.0f} ms")
    print(f"peak RSS: QGIS process {own_rss:.0f} MB, worker {worker_rss:.0f} MB")
    app.exitQgis()


if __name__ == "__main__":
    main()
