"""Mapping on a Dask cluster (core/mapping/cluster.py): real LocalClusters and a real scheduler with
an outside worker; the results must be those of a single process."""
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely

from conftest import forest_with_scars, write_raster
from landslide_mapper.core.mapping.cluster import Execution, parse_cluster
from landslide_mapper.core.errors import Cancelled, InputError
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput, job_from_json
from landslide_mapper.core.mapping.job import run_inference
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.geodata.vector_io import read_layer

distributed = pytest.importorskip("distributed")


def scene(tmp_path):
    """Two years, 1,100 rows: scars across the vectorising seams at rows 512 and 768, one
    spanning four blocks, and a new scar in the second year."""
    (tmp_path / "in").mkdir()
    scars = [(480, 560, 40, 120), (100, 900, 200, 212), (760, 780, 10, 290), (30, 60, 250, 280)]
    a = write_raster(tmp_path / "in" / "a.tif", forest_with_scars(1100, 300, scars=scars, seed=1))
    b = write_raster(tmp_path / "in" / "b.tif", forest_with_scars(1100, 300, scars=scars + [(600, 700, 60, 160)],
                                                                   seed=2))
    return [YearInput(2017, str(a)), YearInput(2018, str(b))]


def job(tmp_path, years, model, cluster, name, **kw):
    return InferenceJob(years=years, model=str(model), output_dir=str(tmp_path / "out"), run_name=name,
                        tile_size=64, overlap=16, batch_size=4, cluster=cluster, **kw)


def test_cluster_settings_are_parsed_and_bad_ones_explained():
    assert parse_cluster("local") == Execution() and not Execution().distributed
    assert parse_cluster("local:3") == Execution(workers=3)
    assert parse_cluster("tcp://10.0.0.5:8786") == Execution(address="tcp://10.0.0.5:8786")
    for bad in ("local:0", "banana", "http://host:8786", "tcp://", "local:-2"):
        with pytest.raises(InputError, match="cluster"):
            parse_cluster(bad)
    with pytest.raises(InputError, match="cluster"):
        job_from_json('{"kind": "infer", "years": [{"year": 2017, "path": "a.tif"}], "model": "m.onnx", '
                      '"output_dir": "out", "cluster": "everywhere"}')


def test_a_local_cluster_maps_exactly_what_one_process_maps(tmp_path, baseline_model):
    years = scene(tmp_path)
    with rasterio.open(years[0].path) as ds:          # bounds inside the image, in its CRS
        left, bottom, right, top = ds.bounds
    kw = dict(uncertainty=True, review_areas=3, bounds=[left + 9, bottom + 30, right - 30, top])
    one = run_inference(job(tmp_path, years, baseline_model, "local", "one", **kw))
    logs = []
    two = run_inference(job(tmp_path, years, baseline_model, "local:2", "two", **kw), Reporter(on_log=logs.append))
    assert any("local Dask cluster of 2 worker processes" in m for m in logs)
    for a, b in zip(one.years, two.years):
        for raster in (a.probability, a.uncertainty):
            with rasterio.open(Path(one.run_dir) / raster) as p, rasterio.open(Path(two.run_dir) / raster) as q:
                assert p.profile == q.profile
                assert (p.read(1) == q.read(1)).all()
        assert (a.polygons, a.total_area_m2, a.mapped_area_km2) == (b.polygons, b.total_area_m2, b.mapped_area_km2)
        la, lb = read_layer(one.geopackage, a.layer), read_layer(two.geopackage, b.layer)
        order_a = np.lexsort(np.array(shapely.bounds(la.geometries)).T[::-1])
        order_b = np.lexsort(np.array(shapely.bounds(lb.geometries)).T[::-1])
        ga, gb = la.geometries[order_a], lb.geometries[order_b]
        assert (shapely.area(shapely.symmetric_difference(ga, gb)) < 1e-6).all()
        for name in ("area_m2", "perimeter_m", "mean_prob"):
            np.testing.assert_allclose(la.fields[name][order_a], lb.fields[name][order_b])
    # the scar across the seam at row 512 is one polygon of its full size (80 × 80 px of 3 m)
    layer = read_layer(two.geopackage, "landslides_2017")
    assert np.isclose(layer.fields["area_m2"], 80 * 80 * 9.0).sum() == 1
    assert [y.polygons for y in two.years] == [y.polygons for y in one.years] and one.years[1].polygons > 3
    assert not list(Path(two.run_dir).glob(".blocks*")) and read_layer(two.geopackage, "new_2018").fields


def test_cancel_on_a_cluster_leaves_nothing(tmp_path, baseline_model):
    years = scene(tmp_path)
    reporter = Reporter()

    def progress(fraction, message):
        if "cluster tasks" in message:
            reporter.cancel()

    reporter = Reporter(on_progress=progress)
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_inference(job(tmp_path, years, baseline_model, "local:2", "cancelled"), reporter)
    assert time.monotonic() - started < 60
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_named_before_any_tile(tmp_path, baseline_model):
    years = scene(tmp_path)
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(InputError, match=f"The Dask scheduler at {address} cannot be reached"):
        run_inference(job(tmp_path, years, baseline_model, address, "unreachable"))
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt && echo ok"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "ok"


WORKER = """
import asyncio, sys
import distributed

async def main():
    async with distributed.Worker(sys.argv[1], nthreads=1) as worker:
        await worker.finished()

asyncio.run(main())
"""


def test_workers_that_cannot_see_the_output_folder_are_named_before_any_tile(tmp_path, baseline_model):
    """A real scheduler with one outside worker that sees another output folder (a tmpfs
    mounted over it in its own mount namespace): refused before any tile, nothing left."""
    if not _unshare_works():
        pytest.skip("a private mount namespace (unshare -rm) is not permitted here")
    years = scene(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        worker = subprocess.Popen(["unshare", "-rm", "sh", "-c", f'mount -t tmpfs tmpfs "{out}" && exec '
                                   f'"{sys.executable}" -c "$0" "{cluster.scheduler_address}"', WORKER])
        try:
            with distributed.Client(cluster) as client:
                client.wait_for_workers(1, timeout=60)
            with pytest.raises(InputError) as err:
                run_inference(job(tmp_path, years, baseline_model, cluster.scheduler_address, "hidden"))
        finally:
            worker.terminate()
            worker.wait(30)
    text = str(err.value)
    assert "cannot read and write the output folder" in text and str(out) in text and "shared file system" in text
    assert list(out.iterdir()) == []


def test_local_cluster_workers_allocate_as_one_process_does():
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which made every large
    array a fresh mapping (a third slower here); our LocalCluster's workers go without it
    and keep Dask's other settings."""
    import os

    from landslide_mapper.core.mapping.cluster import _Session

    with _Session(Execution(workers=1)) as session:
        env = session.client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_",
                                                                          "OMP_NUM_THREADS")})
    (worker_env,) = env.values()
    assert worker_env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}
