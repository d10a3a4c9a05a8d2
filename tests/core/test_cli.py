"""The command line as a user and as the QGIS task (JSON lines) see it, in real subprocesses."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, forest_with_scars, write_raster
from landslide_mapper.core.jobs.events import parse_event
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput, job_to_json


def cli(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "landslide_mapper", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300, **kw)


def events(stdout):
    return [e for e in map(parse_event, stdout.splitlines()) if e is not None]


@pytest.fixture
def two_rasters(tmp_path):
    a = write_raster(tmp_path / "a.tif", forest_with_scars(120, 150, scars=[(10, 50, 10, 60)]))
    b = write_raster(tmp_path / "b.tif", forest_with_scars(120, 150, scars=[(10, 50, 10, 60), (80, 110, 90, 140)]))
    return a, b


def test_infer_for_people_prints_a_summary(tmp_path, two_rasters):
    a, b = two_rasters
    r = cli("infer", f"2017={a}", f"2018={b}", "--output", tmp_path / "out", "--tile", 64, "--min-area", 100)
    assert r.returncode == 0, r.stderr
    assert "Run folder:" in r.stdout and "landslides.gpkg" in r.stdout
    rows = [line.split() for line in r.stdout.splitlines() if line.strip().startswith(("2017", "2018"))]
    assert [row[:2] for row in rows] == [["2017", "1"], ["2018", "2"]]


def test_infer_can_keep_changes_the_images_do_not_confirm(tmp_path, two_rasters):
    a, b = two_rasters
    r = cli("infer", f"2017={a}", f"2018={b}", "--output", tmp_path / "out", "--tile", 64, "--keep-unconfirmed",
            "--run-name", "kept")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "out" / "kept" / "job.json").read_text())["confirm_changes"] is False


def test_infer_maps_only_inside_the_bounds(tmp_path, two_rasters):
    a, b = two_rasters          # 2018's second scar lies in rows 80-110: outside the top 60 rows
    r = cli("infer", f"2017={a}", f"2018={b}", "--output", tmp_path / "out", "--tile", 64, "--min-area", 100,
            "--bounds", 300000, 3100000 - 60 * 3, 300000 + 150 * 3, 3100000, "--bounds-crs", "EPSG:32645")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.strip().startswith(("2017", "2018"))]
    assert [row[:2] for row in rows] == [["2017", "1"], ["2018", "1"]]
    r = cli("infer", f"2017={a}", "--output", tmp_path / "out", "--bounds", 0, 0, 1, 1)
    assert r.returncode != 0 and "does not overlap the area of interest" in r.stderr
    assert "Traceback" not in r.stderr


def test_infer_jsonl_emits_progress_and_a_result(tmp_path, two_rasters):
    a, b = two_rasters
    r = cli("infer", f"2017={a}", f"2018={b}", "-o", tmp_path / "out", "--tile", 64, "--jsonl")
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    assert len(ev) == len(r.stdout.splitlines())  # nothing but events on stdout
    kinds = [e["event"] for e in ev]
    assert kinds[-1] == "result" and "progress" in kinds and "log" in kinds
    fractions = [e["fraction"] for e in ev if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    result = ev[-1]["result"]
    assert [y["polygons"] for y in result["years"]] == [1, 2]
    assert Path(result["geopackage"]).exists()
    assert any("CPUExecutionProvider" in e["message"] for e in ev if e["event"] == "log")


def test_errors_are_reported_with_the_file_name(tmp_path):
    r = cli("infer", f"2017={tmp_path / 'missing.tif'}", "-o", tmp_path / "out", "--jsonl")
    assert r.returncode == 2
    err = events(r.stdout)[-1]
    assert err["event"] == "error" and err["type"] == "InputError" and "missing.tif does not exist" in err["message"]
    r = cli("infer", "twenty=a.tif", "-o", tmp_path / "out")
    assert r.returncode == 2 and "Expected YEAR=PATH" in r.stderr


def test_run_job_reads_a_spec_on_stdin(tmp_path, two_rasters):
    a, _ = two_rasters
    job = InferenceJob(years=[YearInput(2017, str(a), "planetscope4")], model=str(ROOT / "models/spectral_baseline.onnx"),
                       output_dir=str(tmp_path / "out"), tile_size=64, run_name="from_qgis")
    r = cli("run-job", input=job_to_json(job))
    assert r.returncode == 0, r.stderr
    assert events(r.stdout)[-1]["result"]["run_dir"].endswith("from_qgis")


def test_sigterm_cancels_promptly_and_leaves_nothing(tmp_path):
    big = write_raster(tmp_path / "big.tif", forest_with_scars(1500, 1500))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "landslide_mapper", "infer", f"2017={big}", "-o", str(out),
                             "--tile", "32", "--overlap", "8", "--batch", "1", "--jsonl"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        event = parse_event(line)
        if event and event["event"] == "progress" and event["fraction"] > 0:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130
    last = events(rest)[-1]
    assert last["event"] == "error" and last["cancelled"] is True
    assert list(out.iterdir()) == []  # no run folder, no staging folder, no partial files


@pytest.mark.parametrize("pixel_size,bands", [(3, "B=band 1, G=band 2, R=band 3, NIR=band 4"),
                                              (5, "B=band 1, G=band 2, R=band 3, RE=band 4, NIR=band 5")])
def test_demo_main_job_end_to_end(tmp_path, pixel_size, bands):
    r = cli("demo", "--size", 256, "--pixel-size", pixel_size, "--seed", 3,
            "--data-dir", tmp_path / "data", "--output", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert bands in r.stderr  # the band mapping that was used is logged
    table = [line.split() for line in r.stdout.splitlines() if line.strip()[:4].isdigit()]
    accuracy_rows, exponent_rows = table[:4], table[4:]
    assert [row[0] for row in accuracy_rows] == ["2016", "2017", "2018", "2019"]
    assert all(len(row) == 7 for row in accuracy_rows)  # year, polygons, area, mapped km², P, R, F1
    # the subtraction and FAD table, next to the scene's true exponent
    assert "drawn with exponent α = 2.30" in r.stdout
    assert [row[0] for row in exponent_rows] == ["2016", "2017", "2018", "2019"]
    assert exponent_rows[0][2] == "-" and exponent_rows[1][2].isdigit()   # no T-1 for the first year
    run = Path(r.stdout.split("Run folder:")[1].split()[0])
    accuracy = json.loads((run / "accuracy.json").read_text())
    assert set(accuracy) == {"2016", "2017", "2018", "2019"} and accuracy["2017"]["recall"] > 0.5
    # a second demo reuses the scene and writes a second run folder next to the first
    again = cli("demo", "--size", 256, "--pixel-size", pixel_size, "--seed", 3, "--quiet",
                "--data-dir", tmp_path / "data", "--output", tmp_path / "out")
    assert again.returncode == 0 and len(list((tmp_path / "out").iterdir())) == 2


def test_run_job_with_a_missing_spec_reports_an_error_event(tmp_path):
    r = cli("run-job", tmp_path / "missing.json")
    assert r.returncode == 2
    ev = events(r.stdout)
    assert ev[0]["event"] == "start" and ev[-1]["event"] == "error" and "missing.json" in ev[-1]["message"]
