"""Tiled inference of one raster: windowed reads in, batched ONNX tiles, windowed writes out.

Memory is bounded by a strip of tile rows (plus less than one GeoTIFF block row) no
matter how tall the raster is. Every pixel is predicted, edges included; nodata input
pixels are never predicted and stay nodata in the probability raster.
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from . import probability
from ..geodata.bands import build_channels, required_spectral
from ..errors import InputError
from .model import OnnxModel
from ..progress import Reporter
from ..geodata.raster import YearRaster
from .tiling import Tile, TileGrid

PROB_NODATA = probability.NODATA
UNC_NODATA = 255          # uncertainty rasters: uint8, 0-254 for 0-1
BLOCK = 256
GDAL_CACHE_BYTES = 8 * 2**20  # GDAL's block cache outside predict_raster; rasterio hands it on in bytes, not MB


def geotiff_profile(raster: YearRaster, dtype: str, nodata, rows: tuple[int, int] | None = None,
                    threads: int | str = "ALL_CPUS") -> dict:
    """A tiled, compressed single-band GeoTIFF on the raster's grid, or on rows [r0, r1) of it."""
    r0, r1 = rows if rows is not None else (0, raster.height)
    transform = raster.transform if r0 == 0 else raster.transform * raster.transform.translation(0, r0)
    return dict(
        driver="GTiff", width=raster.width, height=r1 - r0, count=1, dtype=dtype,
        crs=raster.crs, transform=transform, nodata=nodata, tiled=True,
        blockxsize=BLOCK, blockysize=BLOCK, BIGTIFF="IF_SAFER", **probability.creation_options(dtype, threads))


def open_probability(path, raster: YearRaster, model_name: str, rows: tuple[int, int] | None = None,
                     threads: int | str = "ALL_CPUS"):
    """A new probability raster (8-bit codes, see core.mapping.probability) opened for writing."""
    ds = rasterio.open(path, "w", **geotiff_profile(raster, probability.DTYPE, probability.NODATA, rows, threads))
    ds.scales, ds.offsets = (1.0 / probability.SCALE,), (0.0,)
    ds.set_band_description(1, f"landslide probability ({model_name})")
    return ds


def read_cache_bytes(raster: YearRaster, bands: int) -> int:
    """GDAL's block cache while a raster is predicted: one and a half rows of the image's
    blocks (the bands read), so that the block row two tile rows share is decoded once, not
    twice (measured: reading an 8,192² DEFLATE scene 3.7 → 2.2 s; with GDAL_NUM_THREADS
    decoding on the cores, 1.9 s). At least 8 MB, at most 512 MB."""
    ds = raster.dataset
    block_rows = ds.block_shapes[0][0] if ds.block_shapes else 256
    row_bytes = raster.width * min(block_rows, 1024) * bands * np.dtype(ds.dtypes[0]).itemsize
    return int(min(512 * 2**20, max(8 * 2**20, 1.5 * row_bytes)))


@dataclass
class PredictionStats:
    valid_pixels: int
    landslide_pixels: int
    tiles: int


class _BlockRowWriter:
    """Writes whole GeoTIFF block rows only, so no compressed block is written twice.

    Rows are copied into one reusable block-row buffer; full block rows of a strip that
    start on a block boundary are written straight from the strip. ``threshold`` (None:
    no count) counts the landslide pixels written."""

    def __init__(self, prob_ds, width: int, threshold: float | None, dtype=np.uint8):
        self.prob_ds, self.width, self.threshold = prob_ds, width, threshold
        self.row = 0                                       # first row not yet written
        self.buffer = np.empty((BLOCK, width), dtype)
        self.filled = 0                                    # rows waiting in the buffer
        self.landslide_pixels = 0

    def add(self, rows: np.ndarray) -> None:
        while len(rows):
            if self.filled == 0 and len(rows) >= BLOCK:
                full = (len(rows) // BLOCK) * BLOCK
                self._write(rows[:full])
                rows = rows[full:]
                continue
            n = min(BLOCK - self.filled, len(rows))
            self.buffer[self.filled:self.filled + n] = rows[:n]
            self.filled += n
            rows = rows[n:]
            if self.filled == BLOCK:
                self._write(self.buffer)
                self.filled = 0

    def close(self) -> None:
        if self.filled:
            self._write(self.buffer[:self.filled])
            self.filled = 0

    def _write(self, prob: np.ndarray) -> None:
        if self.threshold is not None:
            self.landslide_pixels += int(np.count_nonzero(probability.landslide(prob, self.threshold,
                                                                                 self.prob_ds.nodata)))
        self.prob_ds.write(prob, 1, window=Window(0, self.row, self.width, len(prob)))
        self.row += len(prob)


class _Strip:
    """The kept rows of one tile row, filled tile by tile (nodata where input was)."""

    def __init__(self, row0: int, row1: int, width: int, n_tiles: int, uncertainty: bool = False):
        self.row0 = row0
        self.prob = np.full((row1 - row0, width), PROB_NODATA, np.uint8)
        self.unc = np.full((row1 - row0, width), UNC_NODATA, np.uint8) if uncertainty else None
        self.remaining = n_tiles


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def predict_tta(model: OnnxModel, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean probability over the four flips of each tile (none, left-right, up-down, both),
    and the flips' disagreement (their standard deviation, ×2 so that it spans 0-1)."""
    outs = [model.predict(batch)]
    for axes in ((3,), (2,), (2, 3)):
        outs.append(np.flip(model.predict(np.ascontiguousarray(np.flip(batch, axes))), tuple(a - 1 for a in axes)))
    stack = np.stack(outs)
    return stack.mean(0), np.minimum(1.0, 2.0 * stack.std(0))


def uncertainty(prob: np.ndarray, threshold: float, disagreement: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel uncertainty in [0, 1]: closeness to the threshold in logit space,
    exp(-|logit p − logit t| / 2) (1 at the threshold, 0.33 at p = 0.9 for t = 0.5, and
    the same on either side of extreme thresholds), or the flips' disagreement where larger."""
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    near = np.exp(-np.abs(np.log(p / (1 - p)) - math.log(t / (1 - t))) / 2)
    return near if disagreement is None else np.maximum(near, disagreement)


def _pad_to(x: np.ndarray, tile: int) -> np.ndarray:
    """Mirror-pad a (C, h, w) patch to tile × tile; only needed when the raster is smaller."""
    ph, pw = tile - x.shape[1], tile - x.shape[2]
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="symmetric")


@dataclass
class _Chunk:
    """Normalised input for consecutive tiles of one tile row, read in one window."""

    row_index: int
    row_tiles: list[Tile]
    tiles: list[Tile]
    col0: int
    x: np.ndarray          # (C, rows, cols) normalised channels, nodata set to 0
    valid: np.ndarray      # (rows, cols)


def _read_chunks(raster: YearRaster, model: OnnxModel, grid: TileGrid, per_chunk: int,
                 tile_rows: tuple[int, int] | None = None):
    """Read, build channels and normalise, one chunk of up to ``per_chunk`` tiles at a time."""
    channels = model.metadata.channels
    spectral = required_spectral(channels)
    for row_index, row_tiles in grid.tile_rows(*(tile_rows or ())):
        r0, r1 = row_tiles[0].row, min(row_tiles[0].row + grid.tile, raster.height)
        for start in range(0, len(row_tiles), per_chunk):
            chunk = row_tiles[start:start + per_chunk]
            c0, c1 = chunk[0].col, min(chunk[-1].col + grid.tile, raster.width)
            spec, valid = raster.read(Window(c0, r0, c1 - c0, r1 - r0), spectral)
            x = model.normalise(build_channels(spec, channels))
            x[:, ~valid] = 0.0
            yield _Chunk(row_index, row_tiles, chunk, c0, x, valid)


class _Prefetcher:
    """Runs a generator in a thread, a few items ahead, so reading and decoding the
    next chunk overlaps the model's forward pass (both release the GIL)."""

    _END = object()

    def __init__(self, items, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), daemon=True)
        self._thread.start()

    def _run(self, items) -> None:
        try:
            for item in items:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put(exc)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass


def predict_raster(raster: YearRaster, model: OnnxModel, prob_path: str | os.PathLike,
                   tile: int, overlap: int, batch_size: int, threshold: float,
                   reporter: Reporter | None = None, tta: bool = False,
                   uncertainty_path: str | os.PathLike | None = None,
                   tile_rows: tuple[int, int] | None = None, threads: int | str = "ALL_CPUS") -> PredictionStats:
    """Write the probability GeoTIFF of ``raster``; ``threshold`` counts landslide pixels and
    centres the uncertainty. ``tta``: average the four flips of every tile (4× the network
    time). ``uncertainty_path``: also write the per-pixel uncertainty (uint8, 0-254 for 0-1,
    255 nodata; see :func:`uncertainty`). ``tile_rows`` (first, stop): only those tile rows
    (a block of a distributed run), written to files covering just the rows they keep.
    ``threads``: how many threads compress the output."""
    reporter = reporter or Reporter()
    meta = model.metadata
    if tile % meta.size_multiple:
        raise InputError(f"Tile size {tile} is not a multiple of {meta.size_multiple}, "
                         f"which the model {model.path.name} needs.")
    if batch_size < 1:
        raise InputError(f"Batch size must be at least 1, got {batch_size}.")
    bands = len(set(raster.source_indexes(required_spectral(meta.channels))))   # also: all bands are there
    grid = TileGrid(raster.height, raster.width, tile, overlap)
    first, stop = tile_rows or (0, len(grid.rows))
    rows = grid.kept_rows(first, stop)
    total = (stop - first) * len(grid.cols)
    width = raster.width
    batch = np.zeros((batch_size, len(meta.channels), tile, tile), np.float32)
    pending: list[tuple[_Strip, Tile, _Chunk]] = []
    strips: list[_Strip] = []
    done_tiles = valid_pixels = 0
    started, estimated = time.monotonic(), False

    unc_ds = None
    with rasterio.Env(GDAL_CACHEMAX=read_cache_bytes(raster, bands), GDAL_NUM_THREADS=str(threads)), \
            open_probability(prob_path, raster, model.path.name, rows, threads) as prob_ds:
        writer = _BlockRowWriter(prob_ds, width, threshold)
        unc_writer = None
        if uncertainty_path is not None:
            unc_ds = rasterio.open(uncertainty_path, "w", **geotiff_profile(raster, "uint8", UNC_NODATA, rows,
                                                                            threads))
            unc_ds.set_band_description(1, "uncertainty × 254 (near the threshold" +
                                        (", or flips disagree)" if tta else ")"))
            unc_writer = _BlockRowWriter(unc_ds, width, None, np.uint8)

        def flush() -> None:
            nonlocal done_tiles, valid_pixels, estimated
            if not pending:
                return
            if tta:
                probs, disagree = predict_tta(model, batch[:len(pending)])
            else:
                probs, disagree = model.predict(batch[:len(pending)]), None
            for k, (strip, t, chunk) in enumerate(pending):
                rows, cols = slice(t.keep_row0 - t.row, t.keep_row1 - t.row), slice(t.keep_col0, t.keep_col1)
                valid = chunk.valid[rows, t.keep_col0 - chunk.col0:t.keep_col1 - chunk.col0]
                valid_pixels += int(np.count_nonzero(valid))
                out_rows = slice(t.keep_row0 - strip.row0, t.keep_row1 - strip.row0)
                tile_cols = slice(t.keep_col0 - t.col, t.keep_col1 - t.col)
                p = probs[k, rows, tile_cols]
                strip.prob[out_rows, cols] = probability.encode(p, valid)
                if strip.unc is not None:
                    u = uncertainty(p, threshold, None if disagree is None else disagree[k, rows, tile_cols])
                    strip.unc[out_rows, cols] = np.where(valid, np.round(u * 254), UNC_NODATA).astype(np.uint8)
                strip.remaining -= 1
            done_tiles += len(pending)
            pending.clear()
            if not estimated and done_tiles >= 2 * batch_size and total >= 4 * done_tiles and tile_rows is None:
                estimated = True         # from the first batches' pace: what the user is in for
                left = (time.monotonic() - started) / done_tiles * (total - done_tiles)
                reporter.log(f"{done_tiles} of {total:,} tiles in {time.monotonic() - started:.1f} s: about "
                             f"{_duration(left)} left for this image.")
            while strips and strips[0].remaining == 0:
                done = strips.pop(0)
                writer.add(done.prob)
                if unc_writer is not None:
                    unc_writer.add(done.unc)
            reporter.progress(done_tiles / total, f"{done_tiles}/{total} tiles")

        chunks = _Prefetcher(_read_chunks(raster, model, grid, batch_size, tile_rows))
        try:
            current_row = -1
            for chunk in chunks:
                first = chunk.row_tiles[0]
                if chunk.row_index != current_row:
                    current_row = chunk.row_index
                    strips.append(_Strip(first.keep_row0, first.keep_row1, width, len(chunk.row_tiles),
                                         unc_writer is not None))
                strip = strips[-1]
                for t in chunk.tiles:
                    c = t.col - chunk.col0
                    batch[len(pending)] = _pad_to(chunk.x[:, :, c:c + tile], tile)
                    pending.append((strip, t, chunk))
                    if len(pending) == batch_size:
                        flush()
            flush()
            writer.close()
            if unc_writer is not None:
                unc_writer.close()
        finally:
            chunks.close()
            if unc_ds is not None:
                unc_ds.close()
    return PredictionStats(valid_pixels, writer.landslide_pixels, total)
