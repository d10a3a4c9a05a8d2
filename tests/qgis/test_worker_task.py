"""The QgsTask that drives the worker process, run by QGIS' real task manager."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from qgis.core import QgsTask

from conftest import ROOT, forest_with_scars, run_task, write_raster
from landslide_mapper.core.jobs.events import parse_event
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput, job_to_json
from landslide_mapper.tasks.worker_process import worker_environment
from landslide_mapper.tasks.worker_task import WorkerTask

BASELINE = str(ROOT / "models" / "spectral_baseline.onnx")


def test_mapping_job_runs_in_the_worker_and_reports_progress(qgis_app, tmp_path):
    a = write_raster(tmp_path / "a.tif", forest_with_scars(120, 150, scars=[(10, 50, 10, 60)]))
    b = write_raster(tmp_path / "b.tif", forest_with_scars(120, 150, scars=[(10, 50, 10, 60), (80, 110, 90, 140)]))
    job = InferenceJob(years=[YearInput(2017, str(a)), YearInput(2018, str(b))], model=BASELINE,
                       output_dir=str(tmp_path / "out"), tile_size=64, run_name="from_task")
    events: list[dict] = []
    task = WorkerTask("Map landslides", job, python=sys.executable, on_event=events.append)
    run_task(task)
    assert task.status() == QgsTask.Complete and task.error is None
    assert task.progress() == 100.0
    assert task.result["run_dir"].endswith("from_task")
    assert [y["polygons"] for y in task.result["years"]] == [1, 2]
    assert Path(task.result["geopackage"]).exists()
    assert any("CPUExecutionProvider" in line for line in task.log_lines)
    assert [e["event"] for e in events][-1] == "result"


def test_failure_carries_the_workers_reason(qgis_app, tmp_path):
    job = InferenceJob(years=[YearInput(2017, str(tmp_path / "missing.tif"))], model=BASELINE,
                       output_dir=str(tmp_path / "out"))
    task = WorkerTask("Map landslides", job, python=sys.executable)
    run_task(task)
    assert task.status() == QgsTask.Terminated and task.result is None
    assert "missing.tif does not exist" in task.error_message
    assert task.error["user_error"] is True
    assert "missing.tif does not exist" in task.details


def test_cancel_stops_the_worker_and_leaves_nothing(qgis_app, tmp_path):
    big = write_raster(tmp_path / "big.tif", forest_with_scars(1500, 1500))
    out = tmp_path / "out"
    job = InferenceJob(years=[YearInput(2017, str(big))], model=BASELINE, output_dir=str(out),
                       tile_size=32, overlap=8, batch_size=1)
    task = WorkerTask("Map landslides", job, python=sys.executable)
    cancelled_at: list[float] = []

    def cancel_once_running(t):
        if not cancelled_at and t.progress() > 0:
            cancelled_at.append(time.monotonic())
            t.cancel()

    run_task(task, while_running=cancel_once_running)
    assert cancelled_at, "the worker never reported progress"
    assert time.monotonic() - cancelled_at[0] < 30          # prompt
    assert task.status() == QgsTask.Terminated
    assert task.error_message.startswith("Cancelled")
    assert task.returncode == 130        # stopped by its control protocol, not killed
    assert list(out.iterdir()) == []     # no run folder, no staging folder


def test_a_worker_whose_driver_goes_away_stops_and_cleans_up(tmp_path):
    """The end of stdin (QGIS closed it, or died) cancels like a cancel line: no signal."""
    big = write_raster(tmp_path / "big.tif", forest_with_scars(1500, 1500))
    out = tmp_path / "out"
    job = InferenceJob(years=[YearInput(2017, str(big))], model=BASELINE, output_dir=str(out),
                       tile_size=32, overlap=8, batch_size=1)
    proc = subprocess.Popen([sys.executable, "-m", "landslide_mapper", "run-job", "--control", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=worker_environment())
    proc.stdin.write(job_to_json(job, indent=None) + "\n")
    proc.stdin.flush()
    for line in proc.stdout:                     # wait for real work, then go away
        if (parse_event(line) or {}).get("event") == "progress" and any(out.glob(".*")):
            break
    proc.stdin.close()
    events = [parse_event(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 130
    assert any(e and e["event"] == "error" and e.get("cancelled") for e in events)
    assert list(out.iterdir()) == []


def test_an_interpreter_that_cannot_start_is_reported(qgis_app, tmp_path):
    job = InferenceJob(years=[YearInput(2017, "a.tif")], model=BASELINE, output_dir=str(tmp_path))
    task = WorkerTask("Map landslides", job, python=str(tmp_path / "no-python"))
    run_task(task)
    assert task.status() == QgsTask.Terminated
    assert "cannot be started" in task.error_message and "no-python" in task.error_message


def test_a_worker_without_tensorflow_maps_but_refuses_training_clearly(tmp_path):
    """Python 3.14 has no TensorFlow: simulated by hiding it from a real worker process."""
    from landslide_mapper.core.jobs.specs import TrainingSource, TrainJob

    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n")
    env = worker_environment()
    env["PYTHONPATH"] = str(hide) + os.pathsep + env["PYTHONPATH"]
    image = write_raster(tmp_path / "img.tif", forest_with_scars(64, 64))
    job = TrainJob(sources=[TrainingSource(raster=str(image), labels=str(image))], output_dir=str(tmp_path / "o"),
                   name="n")
    proc = subprocess.run([sys.executable, "-m", "landslide_mapper", "run-job", "-"], input=job_to_json(job),
                          capture_output=True, text=True, env=env, timeout=300)
    error = next(e for e in map(parse_event, proc.stdout.splitlines()) if e and e["event"] == "error")
    assert proc.returncode == 2 and error["user_error"] is True
    assert "Training and fine-tuning need tensorflow, keras" in error["message"]
    assert "Mapping works without them" in error["message"]
    assert not (tmp_path / "o").exists()
    mapping = InferenceJob(years=[YearInput(2017, str(image))], model=BASELINE, output_dir=str(tmp_path / "m"))
    proc = subprocess.run([sys.executable, "-m", "landslide_mapper", "run-job", "-"], input=job_to_json(mapping),
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
