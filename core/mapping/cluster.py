"""Mapping on a Dask cluster: where a job runs, and the distributed form of a mapping run.

A job's ``cluster`` setting says where its tiles are predicted:

* ``local`` (the default): this process, one year after another (core/mapping/job.py);
* ``local:N``: a Dask LocalCluster of N worker processes on this machine;
* ``tcp://host:8786`` (or ``tls://``): an existing Dask scheduler and its workers, which
  must see the input files, the model and the output folder under the same paths (a
  shared file system) and import this package; both are checked before any tile.

On a cluster the tasks are blocks of tile rows of one year: each worker opens the year's
image again (same grid, bands, scale and area of interest, :meth:`YearRaster.recipe`),
keeps one ONNX Runtime session per process with its threads sized to its share of the
cores, and writes the block's probabilities to a file of its own. One task per year
then streams those blocks, one block row at a time, into the final GeoTIFF; blocks of
rows of it are vectorised on the workers, and :func:`core.mapping.vectorize.merge_blocks` joins
the pieces of a landslide that crosses a block seam, so every polygon and area is the
one a single process finds. All years are submitted at once and run as workers free up.
Cancelling sets a cluster-wide event that running tasks check at each batch, cancels
the queued ones, and the run folder is removed as in a local run.
"""
from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import Cancelled, InputError

LOCAL = "local"
MAX_LOCAL_WORKERS = 256
CONNECT_TIMEOUT_S = 10
WORKERS_TIMEOUT_S = 30
BLOCKS_PER_WORKER = 4          # per year: enough for the faster workers to take more
CLUSTER_HELP = ("where tiles are predicted: 'local' (this process), 'local:N' (N worker processes "
                "on this machine) or a Dask scheduler address such as tcp://host:8786")
_LOCAL_N = re.compile(r"local:(\d+)")
_ADDRESS = re.compile(r"(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+")


@dataclass(frozen=True)
class Execution:
    """A parsed ``cluster`` setting."""

    workers: int = 0                  # local:N; 0 for local and for a scheduler
    address: str | None = None        # a scheduler's address

    @property
    def distributed(self) -> bool:
        return bool(self.workers or self.address)

    def describe(self) -> str:
        if self.address:
            return f"the Dask cluster at {self.address}"
        if self.workers:
            return f"a local Dask cluster of {self.workers} worker process{'es' if self.workers > 1 else ''}"
        return "this process"


def parse_cluster(text: str) -> Execution:
    """``local``, ``local:N`` or a scheduler address; anything else is refused with examples."""
    value = str(text).strip()
    if value.lower() == LOCAL:
        return Execution()
    match = _LOCAL_N.fullmatch(value.lower())
    if match:
        n = int(match.group(1))
        if not 1 <= n <= MAX_LOCAL_WORKERS:
            raise InputError(f"cluster {value!r}: the number of local workers must be 1-{MAX_LOCAL_WORKERS}.")
        return Execution(workers=n)
    if _ADDRESS.fullmatch(value):
        return Execution(address=value)
    raise InputError(f"cluster {value!r} is not understood: use {CLUSTER_HELP}.")


def default_local_workers() -> int:
    """Worker processes for ``local:N`` when a user asks for "all cores"."""
    return max(1, os.cpu_count() or 1)


# --- the client side ------------------------------------------------------------------
class _Session:
    """A Dask client (and the LocalCluster it owns), closed with the context."""

    def __init__(self, execution: Execution):
        self.execution = execution
        self.cluster = self.client = None

    def __enter__(self):
        try:
            import distributed
        except ImportError:
            raise InputError("Mapping on a Dask cluster needs the packages dask and distributed in the worker "
                             "environment (Settings: set up the environment again), or map with cluster "
                             "'local'.") from None
        for name in ("distributed", "distributed.worker", "distributed.nanny", "distributed.scheduler"):
            logging.getLogger(name).setLevel(logging.ERROR)       # stdout/stderr carry the job's events
        ex = self.execution
        if ex.workers:
            import dask

            # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's
            # adaptive mmap threshold: every array of over 128 kB is then mapped and unmapped
            # afresh, and the page faults made a worker's tasks about a third slower than the
            # same work in one process (kernel time doubled; README, "Distributed mapping").
            # Our tasks' memory is bounded, so workers allocate as a single process does.
            environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                       if k != "MALLOC_TRIM_THRESHOLD_"}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                self.cluster = distributed.LocalCluster(n_workers=ex.workers, threads_per_worker=1, processes=True,
                                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = distributed.Client(self.cluster)
        else:
            try:
                self.client = distributed.Client(ex.address, timeout=f"{CONNECT_TIMEOUT_S}s")
            except (OSError, TimeoutError) as exc:
                raise InputError(
                    f"The Dask scheduler at {ex.address} cannot be reached within {CONNECT_TIMEOUT_S} s "
                    f"({str(exc).strip()[:200] or type(exc).__name__}). Start it (dask scheduler), check the "
                    "address, the port and the firewall, or map with cluster 'local'.") from None
            try:
                self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
            except (TimeoutError, OSError):
                self.client.close()
                raise InputError(f"The Dask scheduler at {ex.address} has no workers (waited "
                                 f"{WORKERS_TIMEOUT_S} s). Start some (dask worker {ex.address}) or map with "
                                 "cluster 'local'.") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()          # stops the worker processes and any task still running


def code_version() -> str:
    """A fingerprint of this package's core code: workers must run the same."""
    import hashlib

    digest, root = hashlib.sha1(), Path(__file__).parents[1]       # core/, every sub-package
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def _probe(inputs: list[str], folder: str, token: str) -> dict:
    """Run on every worker: what it cannot see or write of the job's files."""
    problems = [f"cannot read {p}" for p in inputs if not os.access(p, os.R_OK)]
    probe = Path(folder) / f"probe_{token}.txt"
    try:
        if probe.read_text() != token:
            problems.append(f"sees another {folder}")
        reply = Path(folder) / f"probe_{token}_{socket.gethostname()}_{os.getpid()}.txt"
        reply.write_text(token)
        reply.unlink()
    except OSError as exc:
        problems.append(f"cannot read and write the output folder {folder} ({exc.strerror or exc})")
    return {"problems": problems, "version": code_version(),
            "cores": os.cpu_count() or 1, "host": socket.gethostname()}


def _check_workers(client, inputs: list[str], folder: Path, where: str) -> dict[str, int]:
    """Every worker must import this package, read the inputs and write the output folder
    under the same paths; returns the ONNX Runtime threads each worker's tasks may use."""
    token = os.urandom(8).hex()
    probe = folder / f"probe_{token}.txt"
    probe.write_text(token)
    try:
        answers = client.run(_probe, inputs, str(folder), token, on_error="return")
    finally:
        probe.unlink()
    lines, per_host = [], {}
    info = client.scheduler_info(n_workers=-1)["workers"] if _accepts_n_workers(client) \
        else client.scheduler_info()["workers"]
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            lines.append(f"{address} cannot run the mapping code ({type(answer).__name__}: "
                         f"{str(answer).strip()[:160]}); put the plugin folder on the workers' PYTHONPATH "
                         "with the worker environment's packages")
            continue
        if answer["version"] != code_version():
            lines.append(f"{address} runs other Landslide Mapper code (core fingerprint {answer['version']}, "
                         f"here {code_version()})")
        lines += [f"{address} {text}" for text in answer["problems"]]
        host = per_host.setdefault(answer["host"], {"cores": answer["cores"], "threads": 0})
        host["threads"] += int(info.get(address, {}).get("nthreads", 1))
    if lines:
        raise InputError(f"{where} cannot map this job: " + "; ".join(lines[:8]) +
                         (f"; and {len(lines) - 8} more" if len(lines) > 8 else "") +
                         ". Workers need the same paths as this machine (a shared file system) and the same "
                         "version of the plugin; or map with cluster 'local'.")
    threads = {}
    for address, answer in answers.items():
        host = per_host[answer["host"]]
        threads[address] = max(1, host["cores"] // max(1, host["threads"]))
    return threads


def _accepts_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


# --- the worker side ------------------------------------------------------------------
_MODELS: dict = {}                     # one ONNX Runtime session per worker process and model


def _model(path: str, device: str, threads: int):
    from .model import OnnxModel

    key = (path, device, threads)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = OnnxModel(path, device, threads=threads)
    return _MODELS[key]


class _ClusterCancel:
    """A cancel flag shared by the cluster (a distributed.Event), polled at most once a second."""

    def __init__(self, name: str):
        self.name, self._checked, self._set = name, 0.0, False

    def is_set(self) -> bool:
        if not self._set and time.monotonic() - self._checked > 1.0:
            import distributed

            self._set = distributed.Event(self.name).is_set()
            self._checked = time.monotonic()
        return self._set


def _threads_here(threads: dict[str, int]) -> int:
    import distributed

    return threads.get(distributed.get_worker().address, 1)


@dataclass
class _Block:
    """A predicted block's files and its count of mapped pixels."""

    probability: str
    uncertainty: str | None
    valid_pixels: int


def _predict_block(recipe: dict, model_path: str, device: str, threads: dict[str, int], tile: int, overlap: int,
                   batch: int, threshold: float, tta: bool, tile_rows: tuple[int, int], prob_path: str,
                   unc_path: str | None, cancel: str) -> _Block:
    import rasterio

    from .inference import GDAL_CACHE_BYTES, predict_raster
    from ..progress import Reporter
    from ..geodata.raster import YearRaster

    n = _threads_here(threads)
    model = _model(model_path, device, n)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), YearRaster.reopen(recipe) as raster:
        stats = predict_raster(raster, model, prob_path, tile, overlap, batch, threshold,
                               Reporter(cancel_event=_ClusterCancel(cancel)), tta=tta, uncertainty_path=unc_path,
                               tile_rows=tile_rows, threads=n)
    return _Block(prob_path, unc_path, stats.valid_pixels)


@dataclass
class _Grid:
    """What the assembled rasters need of a year's grid."""

    width: int
    height: int
    crs: object
    transform: object


def _assemble(blocks: list[_Block], grid: _Grid, prob_path: str, unc_path: str | None, model_name: str,
              threads: dict[str, int]) -> str:
    """The year's blocks (top to bottom, as submitted) into its final GeoTIFFs, one block row
    at a time."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from .inference import BLOCK, UNC_NODATA, _BlockRowWriter, geotiff_profile, open_probability

    n = _threads_here(threads)
    targets = [(prob_path, "probability")] + ([(unc_path, "uncertainty")] if unc_path else [])
    for path, kind in targets:
        out = (open_probability(path, grid, model_name, threads=n) if kind == "probability" else
               rasterio.open(path, "w", **geotiff_profile(grid, "uint8", UNC_NODATA, threads=n)))
        with out:
            writer = _BlockRowWriter(out, grid.width, None, np.uint8)
            for b in blocks:
                part = getattr(b, kind)
                with rasterio.open(part) as src:
                    for r in range(0, src.height, BLOCK):
                        writer.add(src.read(1, window=Window(0, r, src.width, min(BLOCK, src.height - r))))
                os.unlink(part)
            writer.close()
    return prob_path


def _vectorise(prob_path: str, threshold: float, min_pixels: int, rows: tuple[int, int], width: int,
               threads: dict[str, int]) -> list:
    """Rows ``rows`` of the assembled raster, cut again into one block per thread of this
    worker's share of the cores (core.mapping.vectorize.regions does the same in one process)."""
    from concurrent.futures import ThreadPoolExecutor

    import rasterio

    from .inference import GDAL_CACHE_BYTES
    from .vectorize import block_rows, vectorise_block

    n = _threads_here(threads)
    parts = [(rows[0] + a, rows[0] + b) for a, b in block_rows(rows[1] - rows[0], width, n)]
    # the scratch label rasters go through GDAL's block cache: bounded as in one process
    # (the default, 5 % of the machine's memory, let a 16,384² year's vectorising reach 1.4 GB)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        if len(parts) == 1:
            return [vectorise_block(prob_path, threshold, min_pixels, rows)]
        with ThreadPoolExecutor(len(parts)) as pool:
            return list(pool.map(lambda r: vectorise_block(prob_path, threshold, min_pixels, r), parts))


# --- the distributed run ------------------------------------------------------------
@dataclass
class YearOutcome:
    valid_pixels: int
    regions: tuple              # polygons, pixel counts, mean probabilities (core.mapping.vectorize.regions)


def map_years(execution: Execution, job, model, rasters, tile: int, threshold: float, run, reporter,
              min_pixels: list[int]) -> list[YearOutcome]:
    """Predict and vectorise every year of ``rasters`` on the cluster; files into ``run``."""
    import distributed

    from ..names import probability_file, uncertainty_file
    from .tiling import TileGrid
    from .vectorize import block_rows, merge_blocks

    staging = run.path(".blocks")
    staging.mkdir()
    inputs = sorted({str(Path(r.path).resolve()) for r in rasters} | {str(Path(model.path).resolve())}
                    | ({str(Path(job.area.split("|")[0]).resolve())} if job.area else set()))
    with _Session(execution) as session:
        client = session.client
        threads = _check_workers(client, inputs, staging.resolve(), execution.describe().capitalize())
        workers = len(threads)
        reporter.log(f"Mapping on {execution.describe()}: {workers} worker(s), "
                     f"{sum(threads.values())} ONNX Runtime thread(s) in all.")
        cancel = f"landslide-mapper-cancel-{os.urandom(6).hex()}"
        event = distributed.Event(cancel, client=client)
        weights, futures, vector_futures = {}, [], {}
        try:
            for i, raster in enumerate(rasters):
                grid = TileGrid(raster.height, raster.width, tile, job.overlap)
                per_block = max(1, math.ceil(len(grid.rows) / (BLOCKS_PER_WORKER * workers)))
                blocks = []
                for k, tile_rows in enumerate(grid.row_blocks(per_block)):
                    prob = staging.resolve() / f"probability_{raster.year}_{k}.tif"
                    unc = staging.resolve() / f"uncertainty_{raster.year}_{k}.tif" if job.uncertainty else None
                    f = client.submit(_predict_block, raster.recipe(), str(Path(model.path).resolve()), job.device,
                                      threads, tile, job.overlap, job.batch_size, threshold, job.tta, tile_rows,
                                      str(prob), None if unc is None else str(unc), cancel, pure=False)
                    blocks.append(f)
                    weights[f.key] = (tile_rows[1] - tile_rows[0]) * len(grid.cols)
                final = str(run.path(probability_file(raster.year)).resolve())
                unc_final = str(run.path(uncertainty_file(raster.year)).resolve()) if job.uncertainty else None
                assembled = client.submit(_assemble, blocks, _Grid(raster.width, raster.height, raster.crs,
                                                                    raster.transform),
                                          final, unc_final, model.path.name, threads, pure=False)
                weights[assembled.key] = 0.05 * len(grid)
                parts = []
                for rows in block_rows(raster.height, raster.width, BLOCKS_PER_WORKER * workers):
                    parts.append(client.submit(_vectorise, assembled, threshold, min_pixels[i], rows, raster.width,
                                               threads, pure=False))
                    weights[parts[-1].key] = 0.3 * len(grid) * (rows[1] - rows[0]) / raster.height
                vector_futures[raster.year] = (blocks, parts)
                futures += blocks + [assembled] + parts
            _wait(futures, weights, reporter)
        except BaseException:
            event.set()
            client.cancel(futures, force=True)
            if session.cluster is None:          # another's cluster: let running tasks see the event
                try:
                    distributed.wait(futures, timeout=5)
                except Exception:
                    pass
            raise
        outcomes = []
        for i, raster in enumerate(rasters):
            blocks, parts = vector_futures[raster.year]
            valid = sum(b.valid_pixels for b in client.gather(blocks))
            pieces = [piece for pieces in client.gather(parts) for piece in pieces]
            outcomes.append(YearOutcome(valid, merge_blocks(pieces, raster.transform, min_pixels[i])))
    staging.rmdir()
    return outcomes


def _wait(futures, weights: dict, reporter) -> None:
    """Until every task is done: progress by the weight done, cancel checked twice a second,
    a task's error raised here (an InputError keeps its message)."""
    import distributed

    pending, total, done = set(futures), sum(weights.values()) or 1.0, 0.0
    n = len(futures)
    while pending:
        reporter.check_cancelled()
        try:
            finished, pending = distributed.wait(pending, timeout=0.5, return_when="FIRST_COMPLETED")
        except TimeoutError:
            continue
        for f in finished:
            if f.status == "error":
                f.result()                        # raises the task's own exception
            if f.status == "cancelled":
                raise Cancelled()
            done += weights.get(f.key, 0.0)
        reporter.progress(done / total, f"{n - len(pending)}/{n} cluster tasks")
