"""Shared fixtures: real GeoTIFFs written with rasterio, the bundled model, shared data."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parent.parent
try:
    import landslide_mapper  # noqa: F401  (installed by ./dev.sh setup as a .pth link)
except ImportError:  # running pytest without ./dev.sh setup: link the repo under its package name
    link_dir = ROOT / "build" / "pkgroot"
    link_dir.mkdir(parents=True, exist_ok=True)
    if not (link_dir / "landslide_mapper").exists():
        os.symlink(ROOT, link_dir / "landslide_mapper")
    sys.path.insert(0, str(link_dir))

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

SHARED_DATA = ROOT.parent / "shared" / "data"
NO_TRAINING = ("training needs TensorFlow and Keras, which this Python lacks (TensorFlow has no "
               "Python 3.14 release): the worker maps here but cannot train")
# for tests that train through a worker running this same Python
needs_training = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason=NO_TRAINING)
BASELINE = ROOT / "models" / "spectral_baseline.onnx"

# Typical PlanetScope surface reflectance (×10,000), bands B, G, R, NIR.
FOREST = (300, 600, 350, 3000)
SCAR = (1100, 1300, 1500, 1800)


def shared(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (only in the development workspace)")
    return path


def write_raster(path, data: np.ndarray, crs="EPSG:32645", transform=None, nodata=0, **extra) -> Path:
    """Write a (bands, rows, cols) array as a GeoTIFF; north-up 3 m pixels by default."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    transform = transform or from_origin(300000.0, 3100000.0, 3.0, 3.0)
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata)
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return Path(path)


def forest_with_scars(height: int, width: int, scars=(), seed: int = 0) -> np.ndarray:
    """A vegetated 4-band uint16 image with rectangular scars ``(row0, row1, col0, col1)``."""
    rng = np.random.default_rng(seed)
    img = np.empty((4, height, width), np.uint16)
    for b, v in enumerate(FOREST):
        img[b] = np.clip(rng.normal(v, v * 0.05, (height, width)), 1, None)
    for r0, r1, c0, c1 in scars:
        for b, v in enumerate(SCAR):
            img[b, r0:r1, c0:c1] = np.clip(rng.normal(v, v * 0.05, (r1 - r0, c1 - c0)), 1, None)
    return img


@pytest.fixture
def baseline_model() -> Path:
    return BASELINE


def polygons_gpkg(path, boxes, raster, layer: str = "landslides") -> Path:
    """A GeoPackage of rectangles given as pixel boxes ``(row0, row1, col0, col1)`` of ``raster``."""
    import shapely

    from landslide_mapper.core.geodata.vector_io import VectorLayer, write_geopackage

    with rasterio.open(raster) as src:
        t, wkt = src.transform, src.crs.to_wkt()
    geoms = [shapely.box(*(t * (c0, r1)), *(t * (c1, r0))) for r0, r1, c0, c1 in boxes]
    write_geopackage(path, {layer: VectorLayer(np.array(geoms, dtype=object), {}, wkt)})
    return Path(path)


@pytest.fixture(autouse=True)
def _fresh_plugin_settings():
    """Each test starts without the plugin's settings (folders, worker Python) of the one
    before: pytest-qgis keeps one temporary QGIS profile for the whole session."""
    yield
    from qgis.core import QgsSettings

    QgsSettings().remove("landslide_mapper")


def run_task(task, timeout: float = 240.0, while_running=None) -> list:
    """Queue a QgsTask that calls ``on_finished(task)`` in QGIS' task manager and spin the
    event loop until it has (``while_running(task)`` is called on every spin)."""
    import time

    from qgis.core import QgsApplication

    done: list = []
    task.on_finished = done.append
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + timeout
    while not done and time.monotonic() < deadline:
        QgsApplication.processEvents()
        if while_running is not None:
            while_running(task)
        time.sleep(0.02)
    assert done, f"the task did not finish within {timeout} s"
    return done


@pytest.fixture(autouse=True, scope="session")
def _qgis_app_teardown_guard(qgis_app):
    """pytest-qgis ends the session by disconnecting its own ``legendLayersAdded`` →
    ``processEvents`` connection, which some sequences of (passing) tests lose on QGIS
    3.22 (seen after a run whose charts were shown, followed by other modules), failing
    the last test's teardown. Leave exactly that one connection in place for it."""
    yield
    import gc

    from qgis.core import QgsProject

    # Python-owned QGIS objects still waiting in reference cycles (e.g. a Processing
    # algorithm held by the traceback pytest.raises keeps) must go while QGIS runs: freed
    # after exitQgis() they crash the interpreter in a later garbage collection.
    gc.collect()
    signal = QgsProject.instance().legendLayersAdded
    try:
        signal.disconnect(qgis_app.processEvents)
    except TypeError:
        pass
    signal.connect(qgis_app.processEvents)
