"""A hostile corpus: every command fed broken files, wrong numbers, disjoint years and bad
job JSON. Each case must end with its exit code (2: bad input, 0: accepted, with a warning
where the input is suspicious), a message naming the culprit, no traceback, and nothing new
in its output folder; the disk filling up mid-run and a killed run are faults of their own.

The commands run in-process through ``cli.main`` (the real command line, without an
interpreter start per case); the disk-full and kill cases run the real process.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from osgeo import ogr, osr
from rasterio.transform import from_origin

from conftest import ROOT, forest_with_scars, needs_training, write_raster
from landslide_mapper.core.jobs import cli
from landslide_mapper.core.mapping.bundled import CASCADE_CHECKPOINT
from landslide_mapper.core.errors import InputError
from landslide_mapper.core.jobs.events import parse_event
from landslide_mapper.core.jobs.specs import JOB_TYPES, job_from_json
from landslide_mapper.core.geodata.vector_io import VectorLayer, write_geopackage

BASELINE = ROOT / "models" / "spectral_baseline.onnx"
CASCADE = CASCADE_CHECKPOINT / "checkpoint.json"
UTM = rasterio.crs.CRS.from_epsg(32645).to_wkt()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    img = forest_with_scars(96, 96, [(20, 40, 20, 44), (60, 80, 50, 70)])
    for name in ("a_2017.tif", "a_2018.tif"):
        write_raster(d / name, img)
    write_raster(d / "rgb_2017.tif", img[:3])
    write_raster(d / "far_2018.tif", img, transform=from_origin(1_300_000.0, 3_100_000.0, 3.0, 3.0))
    write_raster(d / "bright_2017.tif", (img.astype(np.uint32) * 15).clip(0, 65535).astype(np.uint16))
    collar = img.copy()
    collar[:, :, :40] = 0
    write_raster(d / "collar_2017.tif", collar, nodata=None)
    write_raster(d / "geo_2017.tif", img, crs="EPSG:4326", transform=from_origin(85.0, 28.0, 0.00003, 0.00003))
    with rasterio.open(d / "nocrs_2017.tif", "w", driver="GTiff", width=96, height=96, count=4, dtype="uint16",
                       transform=from_origin(300000.0, 3100000.0, 3.0, 3.0)) as ds:
        ds.write(img)
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(d / "photo.png")
    shutil.copy(d / "photo.png", d / "photo_2017.tif")
    (d / "empty_2017.tif").write_bytes(b"")
    (d / "text_2017.tif").write_text("this is not an image\n")
    good = (d / "a_2017.tif").read_bytes()
    (d / "trunc_2017.tif").write_bytes(good[: len(good) // 3])
    (d / "folder_2017.tif").mkdir()
    (d / "notzip.zip").write_bytes(os.urandom(2048))
    (d / "not_a_model.onnx").write_bytes(b"onnx? no")
    boxes = [shapely.box(300000 + i * 30, 3099700, 300000 + i * 30 + 20, 3099720) for i in range(12)]
    write_geopackage(d / "inv.gpkg", {f"ls_{y}": VectorLayer(np.array(boxes, dtype=object), {}, UTM)
                                      for y in (2017, 2018)})
    far = [shapely.box(900000 + i * 30, 3099700, 900000 + i * 30 + 20, 3099720) for i in range(12)]
    write_geopackage(d / "far_inv.gpkg", {"ls_2018": VectorLayer(np.array(far, dtype=object), {}, UTM)})
    write_geopackage(d / "points.gpkg", {"p": VectorLayer(np.array([shapely.Point(300000, 3099900)], dtype=object),
                                                          {}, UTM)})
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(d / "eng.gpkg"))
    srs = osr.SpatialReference()
    srs.SetLocalCS("site grid")
    lyr = ds.CreateLayer("ls", srs, ogr.wkbPolygon)
    for i in range(15):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({i*50} 0,{i*50+20} 0,{i*50+20} 20,{i*50} 20,{i*50} 0))"))
        lyr.CreateFeature(f)
    ds = None
    (d / "garbage.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
            [[1e10, 5e9], [1e10 + 1, 5e9], [1e10 + 1, 5e9 + 1], [1e10, 5e9]]]}}]}))
    return d


def run_cli(args: list[str], cwd: Path) -> tuple[int, str]:
    """``python -m landslide_mapper ARGS`` in-process from ``cwd``: (exit code, stderr + stdout)."""
    err, out = io.StringIO(), io.StringIO()
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    before = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exc:           # argparse's own refusals
                code = exc.code
    finally:
        os.chdir(before)
        for s, h in saved.items():
            signal.signal(s, h)
    return code, err.getvalue() + out.getvalue()


# (id, arguments with OUT for the output folder, exit code, text the message must hold)
M = ["--model", BASELINE]
CASES = [
    # -- infer: files ------------------------------------------------------------------
    ("missing raster", ["infer", "2017=nothere_2017.tif", *M], 2, "nothere_2017.tif does not exist"),
    ("empty file", ["infer", "2017=empty_2017.tif", *M], 2, "empty_2017.tif is not a raster GDAL can read"),
    ("text as tif", ["infer", "2017=text_2017.tif", *M], 2, "text_2017.tif is not a raster GDAL can read"),
    ("truncated tif", ["infer", "2017=trunc_2017.tif", *M], 2, "trunc_2017.tif"),
    ("folder as raster", ["infer", "2017=folder_2017.tif", *M], 2, "folder_2017.tif is a folder"),
    ("png renamed", ["infer", "2017=photo_2017.tif", *M], 2, "PNG image without any georeferencing"),
    ("no crs", ["infer", "2017=nocrs_2017.tif", *M], 2, "nocrs_2017.tif has no coordinate reference system"),
    ("rgb for a nir model", ["infer", "2017=rgb_2017.tif", "--model", CASCADE], 2, "near-infrared"),
    ("years far apart", ["infer", "2017=a_2017.tif", "2018=far_2018.tif", *M], 2, "does not overlap year 2017"),
    ("duplicate year", ["infer", "2017=a_2017.tif", "2017=a_2018.tif", *M], 2, "Year 2017 is given twice"),
    ("pair without =", ["infer", "a_2017.tif", *M], 2, "Expected YEAR=PATH"),
    ("model missing", ["infer", "2017=a_2017.tif", "--model", "nothere.onnx"], 2, "nothere.onnx"),
    ("model not onnx", ["infer", "2017=a_2017.tif", "--model", "not_a_model.onnx"], 2, "not_a_model.onnx"),
    ("model is an image", ["infer", "2017=a_2017.tif", "--model", "a_2017.tif"], 2, "a_2017.tif"),
    ("output is a file", ["infer", "2017=a_2017.tif", *M, "--output", "a_2018.tif"], 2, "a_2018.tif is a file"),
    ("area file missing", ["infer", "2017=a_2017.tif", *M, "--area", "nothere.gpkg"], 2, "area of interest"),
    ("area of points", ["infer", "2017=a_2017.tif", *M, "--area", "points.gpkg"], 2, "has no polygons"),
    ("bounds off the image", ["infer", "2017=a_2017.tif", *M, "--bounds", 0, 0, 1, 1], 2, "does not overlap"),
    ("bounds reversed", ["infer", "2017=a_2017.tif", *M, "--bounds", 5, 5, 1, 1], 2, "is empty"),
    ("bounds crs unknown", ["infer", "2017=a_2017.tif", *M, "--bounds", 0, 0, 1, 1, "--bounds-crs", "EPSG:999999"],
     2, "not a coordinate reference system"),
    # -- infer: numbers ----------------------------------------------------------------
    ("min area inf", ["infer", "2017=a_2017.tif", *M, "--min-area", "inf"], 2, "min_area_m2 must be a finite"),
    ("min area nan", ["infer", "2017=a_2017.tif", *M, "--min-area", "nan"], 2, "min_area_m2 must be a finite"),
    ("min area huge", ["infer", "2017=a_2017.tif", *M, "--min-area", "1e300"], 2, "min_area_m2 is"),
    ("min area negative", ["infer", "2017=a_2017.tif", *M, "--min-area", "-1"], 2, "must not be negative"),
    ("threshold 2", ["infer", "2017=a_2017.tif", *M, "--threshold", 2], 2, "Threshold must lie strictly"),
    ("threshold nan", ["infer", "2017=a_2017.tif", *M, "--threshold", "nan"], 2, "threshold must be a finite"),
    ("overlap negative", ["infer", "2017=a_2017.tif", *M, "--overlap", -5], 2, "Overlap must not be negative"),
    ("tile tiny", ["infer", "2017=a_2017.tif", *M, "--tile", 8], 2, "Tile size must be at least 16"),
    ("tile absurd", ["infer", "2017=a_2017.tif", *M, "--tile", 10**7], 2, "tile_size is"),
    ("batch zero", ["infer", "2017=a_2017.tif", *M, "--batch", 0], 2, "Batch size must be at least 1"),
    ("scale zero", ["infer", "2017=a_2017.tif", *M, "--reflectance-scale", 0], 2, "reflectance scale must be positive"),
    ("scale negative", ["infer", "2017=a_2017.tif", *M, "--reflectance-scale", -1], 2, "must be positive"),
    ("scale inf", ["infer", "2017=a_2017.tif", *M, "--reflectance-scale", "inf"], 2, "must be a finite"),
    ("nodata text", ["infer", "2017=a_2017.tif", *M, "--nodata", "abc"], 2, "--nodata expects a number"),
    ("nodata inf", ["infer", "2017=a_2017.tif", *M, "--nodata", "inf"], 2, "nodata must be a finite"),
    ("review areas negative", ["infer", "2017=a_2017.tif", *M, "--review-areas", -1], 2, "must not be negative"),
    ("max pixels", ["infer", "2017=a_2017.tif", *M, "--max-pixels", 100], 2, "9,216 pixels in 1 tile(s), more than the 100 pixels allowed"),
    ("device tpu", ["infer", "2017=a_2017.tif", *M, "--device", "tpu"], 2, "invalid choice: 'tpu'"),
    ("run name with /", ["infer", "2017=a_2017.tif", *M, "--run-name", "a/b"], 2, "a run name is one folder name"),
    ("run name absolute", ["infer", "2017=a_2017.tif", *M, "--run-name", "/abs/x"], 2, "not a path"),
    ("run name ..", ["infer", "2017=a_2017.tif", *M, "--run-name", ".."], 2, "The run name '..' is empty"),
    ("run name long", ["infer", "2017=a_2017.tif", *M, "--run-name", "x" * 300], 2, "use at most 120"),
    # -- infer: accepted, with what was changed or suspected ---------------------------
    ("tile larger than image", ["infer", "2017=a_2017.tif", *M, "--tile", 4096], 0, "larger than the largest image"),
    ("batch beyond tiles", ["infer", "2017=a_2017.tif", *M, "--batch", 5000], 0, "more than the 1 tile(s)"),
    ("batch absurd", ["infer", "2017=a_2017.tif", *M, "--batch", 10**9], 2, "batch_size is 1e+09"),
    ("values beyond scale", ["infer", "2017=bright_2017.tif", *M], 0, "is the reflectance scale right"),
    ("zero padding", ["infer", "2017=collar_2017.tif", *M], 0, "probably padding"),
    ("geographic image", ["infer", "2017=geo_2017.tif", *M], 0, "so that areas in m² are right"),
    # -- subtract / fad / assess -------------------------------------------------------
    ("subtract one year", ["subtract", "2017=inv.gpkg|ls_2017"], 2, "at least 2 year(s)"),
    ("subtract missing", ["subtract", "2017=nothere.gpkg", "2018=inv.gpkg|ls_2018"], 2, "nothere.gpkg"),
    ("subtract points", ["subtract", "2017=points.gpkg", "2018=inv.gpkg|ls_2018"], 2, "points.gpkg"),
    ("subtract zip garbage", ["subtract", "2017=notzip.zip", "2018=inv.gpkg|ls_2018"], 2, "notzip.zip"),
    ("subtract bad layer", ["subtract", "2017=inv.gpkg|nope", "2018=inv.gpkg|ls_2018"], 2, "has no layer 'nope'"),
    ("subtract years far apart", ["subtract", "2017=inv.gpkg|ls_2017", "2018=far_inv.gpkg|ls_2018"], 2,
     "lie 600 km from those of 2017"),
    ("subtract pixel 0", ["subtract", "2017=inv.gpkg|ls_2017", "2018=inv.gpkg|ls_2018", "--pixel-size", 0], 2,
     "Pixel size must be positive"),
    ("subtract pixel inf", ["subtract", "2017=inv.gpkg|ls_2017", "2018=inv.gpkg|ls_2018", "--pixel-size", "inf"], 2,
     "must be a finite"),
    ("subtract run name", ["subtract", "2017=inv.gpkg|ls_2017", "2018=inv.gpkg|ls_2018", "--run-name", "x\\y"], 2,
     "run name"),
    ("fad garbage coordinates", ["fad", "2017=garbage.geojson"], 2, "outside the area of use"),
    ("fad min area negative", ["fad", "2017=inv.gpkg|ls_2017", "--min-area", -1], 2, "must not be negative"),
    ("fad mapped area 0", ["fad", "2017=inv.gpkg|ls_2017", "--mapped-area-km2", 0], 2, "must be positive"),
    ("fad mapped area nan", ["fad", "2017=inv.gpkg|ls_2017", "--mapped-area-km2", "nan"], 2, "must be a finite"),
    ("fad bootstrap negative", ["fad", "2017=inv.gpkg|ls_2017", "--bootstrap", -3], 2, "must not be negative"),
    ("fad extent missing", ["fad", "2017=inv.gpkg|ls_2017", "--extent", "nothere.gpkg"], 2, "mapped-extent layer"),
    ("fad extent points", ["fad", "2017=inv.gpkg|ls_2017", "--extent", "points.gpkg"], 2, "has no polygons"),
    ("fad local crs", ["fad", "2017=eng.gpkg|ls"], 0, "2017"),
    ("assess grid far", ["assess", "--predicted", "2017=inv.gpkg|ls_2017", "--reference", "2017=inv.gpkg|ls_2018",
                         "--grid", "2017=far_2018.tif"], 2, "does not overlap the year's inventories"),
    ("assess no common year", ["assess", "--predicted", "2017=inv.gpkg|ls_2017", "--reference",
                               "2018=inv.gpkg|ls_2018"], 2, "No year has both"),
    ("assess pixel 0", ["assess", "--predicted", "2017=inv.gpkg|ls_2017", "--reference", "2017=inv.gpkg|ls_2018",
                        "--pixel-size", 0], 2, "Pixel size must be positive"),
    ("assess area points", ["assess", "--predicted", "2017=inv.gpkg|ls_2017", "--reference", "2017=inv.gpkg|ls_2018",
                            "--area", "points.gpkg"], 2, "has no polygons"),
    # -- training ----------------------------------------------------------------------
    pytest.param("train photo", ["train", "--raster", "photo_2017.tif", "--labels", "inv.gpkg|ls_2017", "--name",
                                 "x"], 2, "PNG image without any georeferencing", marks=needs_training),
    pytest.param("train no crs says no year", ["train", "--raster", "nocrs_2017.tif", "--labels",
                                               "inv.gpkg|ls_2017", "--name", "x"], 2,
                 "error: nocrs_2017.tif has no coordinate", marks=needs_training),
    pytest.param("train points", ["train", "--raster", "a_2017.tif", "--labels", "points.gpkg", "--name", "x"], 2,
                 "points.gpkg", marks=needs_training),
    pytest.param("train patch 17", ["train", "--raster", "a_2017.tif", "--labels", "inv.gpkg|ls_2017", "--name", "x",
                                    "--patch-size", 17], 2, "multiple of 16", marks=needs_training),
    pytest.param("train lr inf", ["train", "--raster", "a_2017.tif", "--labels", "inv.gpkg|ls_2017", "--name", "x",
                                  "--lr", "inf"], 2, "must be a finite", marks=needs_training),
    pytest.param("train name path", ["train", "--raster", "a_2017.tif", "--labels", "inv.gpkg|ls_2017", "--name",
                                     "a/b"], 2, "not allowed in a folder name", marks=needs_training),
    pytest.param("finetune missing base", ["finetune", "--checkpoint", "nothere", "--raster", "a_2017.tif",
                                           "--labels", "inv.gpkg|ls_2017", "--name", "x"], 2, "nothere",
                 marks=needs_training),
]


def _case_id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("name,args,code,text", CASES, ids=[_case_id(c) for c in CASES])
def test_hostile_command_line(corpus, tmp_path, name, args, code, text):
    out = tmp_path / "out"
    argv = list(args) + ([] if "--output" in args else ["--output", out])
    got, said = run_cli(argv, corpus)
    assert "Traceback" not in said and "Internal error" not in said, said[-2000:]
    assert got == code, f"{name}: exit {got}, expected {code}\n{said[-1500:]}"
    assert text.lower() in said.lower(), f"{name}: {text!r} not in:\n{said[-1500:]}"
    if code != 0:                   # refused: nothing new, no run and no staging folder
        assert not out.exists() or list(out.iterdir()) == []
    assert not list(corpus.glob("landslide_mapper_crash_*"))


BAD_SPECS = [
    ("not json", "{years: 2017}", "not valid JSON"),
    ("a list", "[1, 2]", "must be a JSON object"),
    ("no kind", {"years": []}, "'kind' is one of"),
    ("kind unknown", {"kind": "paint"}, "got 'paint'"),
    ("kind a list", {"kind": ["infer"]}, "got ['infer']"),
    ("no output", {"kind": "infer", "years": [{"year": 2017, "path": "a_2017.tif"}], "model": "auto"},
     "lacks the field(s) output_dir"),
    ("years ints", {"kind": "infer", "years": [2017], "model": "auto", "output_dir": "o"},
     "Each YearInput must be an object"),
    ("years text", {"kind": "infer", "years": "2017", "model": "auto", "output_dir": "o"},
     "InferenceJob.years must be a list"),
    ("year text", {"kind": "infer", "years": [{"year": "2017", "path": "a.tif"}], "model": "auto",
                   "output_dir": "o"}, "YearInput.year must be a whole number; got '2017'"),
    ("year lacks path", {"kind": "infer", "years": [{"year": 2017}], "model": "auto", "output_dir": "o"},
     "Incomplete job specification"),
    ("unknown field", {"kind": "infer", "years": [], "model": "auto", "output_dir": "o", "colour": "red"},
     "Unknown field(s) in InferenceJob: colour"),
    ("tile text", {"kind": "infer", "years": [{"year": 2017, "path": "a.tif"}], "model": "auto", "output_dir": "o",
                   "tile_size": "512"}, "tile_size must be a whole number or null; got '512'"),
    ("batch bool", {"kind": "infer", "years": [{"year": 2017, "path": "a.tif"}], "model": "auto", "output_dir": "o",
                    "batch_size": True}, "batch_size must be a whole number"),
    ("min area Infinity", '{"kind": "infer", "years": [{"year": 2017, "path": "a.tif"}], "model": "auto", '
                          '"output_dir": "o", "min_area_m2": Infinity}', "min_area_m2 must be a finite"),
    ("bounds short", {"kind": "infer", "years": [{"year": 2017, "path": "a.tif"}], "model": "auto",
                      "output_dir": "o", "bounds": [1, 2]}, "must be four numbers"),
    ("run name path", {"kind": "subtract", "years": [{"year": 2017, "path": "a"}, {"year": 2018, "path": "b"}],
                       "output_dir": "o", "run_name": "../up"}, "not a path"),
    ("sources not list", {"kind": "train", "sources": {"raster": "a"}, "output_dir": "o", "name": "x"},
     "TrainJob.sources must be a list"),
    ("inventory years none", {"kind": "fad" if False else "analyse", "years": None, "output_dir": "o"},
     "must be a list of objects"),
    ("max pixels zero", {"kind": "infer", "years": [{"year": 2017, "path": "a.tif"}], "model": "auto",
                         "output_dir": "o", "max_pixels": 0}, "max_pixels must be at least 1"),
]


@pytest.mark.parametrize("name,spec,text", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_hostile_job_json(tmp_path, name, spec, text):
    """``run-job`` with a bad spec: one error event naming the field, exit 2, nothing written."""
    path = tmp_path / "job.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    code, said = run_cli(["run-job", path], tmp_path)
    events = [e for e in map(parse_event, said.splitlines()) if e]
    assert code == 2 and events[-1]["event"] == "error" and events[-1]["user_error"], said
    assert text in events[-1]["message"], events[-1]["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]


def test_job_json_fuzzing_never_raises_anything_but_input_errors():
    """Any JSON object, shaped like a job or not: a job, or an InputError — never another
    exception (hypothesis generates the objects)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
    values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                          max_leaves=12)
    field_names = sorted({f for cls in JOB_TYPES.values() for f in cls.__dataclass_fields__} |
                         {"year", "path", "bands", "raster", "labels", "layer"})
    year = st.fixed_dictionaries({"year": st.one_of(st.integers(1900, 2100), values),
                                  "path": st.one_of(st.just("a.tif"), values)})
    job = st.fixed_dictionaries(
        {"kind": st.one_of(st.sampled_from(sorted(JOB_TYPES)), values)},
        optional={**{name: values for name in field_names if name != "kind"},
                  "years": st.one_of(st.lists(year, max_size=3), values), "output_dir": st.just("o"),
                  "model": st.just("auto")})

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(job)
    def check(data):
        try:
            job_from_json(json.dumps(data))
        except InputError:
            pass

    check()


def _tmpfs_shell(script: str) -> subprocess.CompletedProcess | None:
    """Run ``script`` in sh with a 400 kB tmpfs at $SMALL (a mount namespace of its own; the
    8-bit probability raster of the test image alone needs more);
    None when this machine allows no such mount."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && echo ok"],
                           capture_output=True, text=True) if shutil.which("unshare") else None
    if probe is None or "ok" not in probe.stdout:
        return None
    return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=400k tmpfs /mnt && SMALL=/mnt && "
                           + script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_full_disk_is_named_and_the_partial_run_removed(tmp_path):
    big = write_raster(tmp_path / "big_2017.tif", forest_with_scars(2500, 2500, [(20, 400, 20, 440)]))
    done = _tmpfs_shell(f'"{sys.executable}" -m landslide_mapper infer 2017={big} --model {BASELINE} '
                        '--output "$SMALL/out"; echo "rc=$?"; ls -A "$SMALL/out"')
    if done is None:
        pytest.skip("no small file system can be mounted here (unshare/mount of a tmpfs is not permitted)")
    assert "rc=2" in done.stdout, done.stdout + done.stderr
    assert "The disk holding" in done.stderr and "is full" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "rc=2"             # the output folder is empty


def test_a_killed_run_leaves_a_partial_that_the_next_run_removes(tmp_path):
    big = write_raster(tmp_path / "big_2017.tif", forest_with_scars(1500, 1500))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "landslide_mapper", "infer", f"2017={big}", "-o", str(out),
                             "--model", str(BASELINE), "--tile", "32", "--overlap", "8", "--batch", "1", "--jsonl"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        event = parse_event(line)
        if event and event["event"] == "progress" and event["fraction"] > 0.05:
            proc.kill()                                     # SIGKILL: no clean-up can run
            break
    proc.wait(timeout=60)
    partial = [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and (partial[0] / ".owner.json").is_file()
    small = write_raster(tmp_path / "small_2017.tif", forest_with_scars(64, 64))
    code, said = run_cli(["infer", f"2017={small}", "--model", BASELINE, "--output", out], tmp_path)
    assert code == 0 and f"Removed {partial[0].name}" in said and "is gone" in said
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    live = out / ".other.12345.partial"                     # a live run's staging folder stays
    live.mkdir()
    (live / ".owner.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                  "started": time.time()}))
    assert run_cli(["infer", f"2017={small}", "--model", BASELINE, "--output", out], tmp_path)[0] == 0
    assert live.is_dir()


def test_job_json_in_a_run_has_absolute_paths_and_reruns_from_anywhere(corpus, tmp_path):
    code, said = run_cli(["infer", "2017=a_2017.tif", "--model", BASELINE, "--output", tmp_path / "out",
                          "--run-name", "first"], corpus)
    assert code == 0, said
    spec = json.loads((tmp_path / "out" / "first" / "job.json").read_text())
    assert Path(spec["years"][0]["path"]).is_absolute() and Path(spec["output_dir"]).is_absolute()
    spec["run_name"] = "again"
    (tmp_path / "again.json").write_text(json.dumps(spec))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, said = run_cli(["run-job", tmp_path / "again.json"], elsewhere)
    assert code == 0 and (tmp_path / "out" / "again" / "landslides.gpkg").is_file(), said


def test_an_unforeseen_error_writes_a_crash_report_not_a_traceback(tmp_path, monkeypatch):
    """A bug (here: a ZeroDivisionError planted in the statistics) gives one line pointing to
    a crash report beside the output folder, with the traceback inside."""
    from landslide_mapper.core.mapping import job as mapping

    def broken(*_a, **_k):
        return 1 / 0

    monkeypatch.setattr(mapping, "analyse_series", broken)
    img = write_raster(tmp_path / "a_2017.tif", forest_with_scars(64, 64))
    code, said = run_cli(["infer", f"2017={img}", "--model", BASELINE, "--output", tmp_path / "runs"], tmp_path)
    assert code == 1 and "Traceback" not in said and "Internal error" in said and "ZeroDivisionError" in said
    reports = list(tmp_path.glob("landslide_mapper_crash_*.log"))
    assert len(reports) == 1 and str(reports[0]) in said
    assert "Traceback" in reports[0].read_text() and "ZeroDivisionError" in reports[0].read_text()
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_a_bug_after_the_job_is_caught_too(tmp_path, monkeypatch):
    """A failure outside the job itself (here: printing its summary) also ends in one line
    and a crash report, not a traceback."""
    def broken(_result):
        raise KeyError("precision")

    monkeypatch.setattr(cli, "_print_inference_table", broken)
    img = write_raster(tmp_path / "a_2017.tif", forest_with_scars(64, 64))
    code, said = run_cli(["infer", f"2017={img}", "--model", BASELINE, "--output", tmp_path / "runs"], tmp_path)
    assert code == 1 and "Traceback" not in said and "KeyError" in said
    assert len(list(tmp_path.glob("landslide_mapper_crash_*.log"))) == 1
