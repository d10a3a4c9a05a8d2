"""Tiled inference of one raster: windowed reads in, batched ONNX tiles, windowed writes out.

Memory is bounded by a strip of tile rows (plus the input rows the next tile row reads
again: the overlap and the rest of a block row) no matter how tall the raster is. Every
pixel is predicted, edges included; nodata input pixels are never predicted and stay
nodata in the probability raster.
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
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from . import probability
from ..geodata.bands import build_channels, required_spectral
from ..errors import InputError
from .model import OnnxModel
from ..progress import Reporter
from ..geodata.raster import YearRaster, compose
from .tiling import Tile, TileGrid

PROB_NODATA = probability.NODATA
UNC_NODATA = 255          # uncertainty rasters: uint8, 0-254 for 0-1
BLOCK = 256
GDAL_CACHE_BYTES = 8 * 2**20  # GDAL's block cache outside predict_raster; rasterio hands it on in bytes, not MB


def geotiff_profile(raster: YearRaster, dtype: str, nodata, rows: tuple[int, int] | None = None,
                    threads: int | str = "ALL_CPUS") -> dict:
    """A tiled, compressed single-band GeoTIFF on the raster's grid, or on rows [r0, r1) of it."""
    r0, r1 = rows if rows is not None else (0, raster.height)
    transform = raster.transform if r0 == 0 else compose(raster.transform, raster.transform.translation(0, r0))
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


def read_cache_bytes(raster: YearRaster, bands: int, window_cols: int) -> int:
    """GDAL's block cache while a raster is predicted. The reader decodes each block once
    and keeps the rows it will need again itself (:func:`_read_windows`), so the cache
    needs only the blocks of one window of ``window_cols`` columns (the last column of them
    is the next window's first): it no longer grows with the image's width. An image whose
    block rows are too tall to keep (:data:`REUSE_BLOCK_ROWS`), and a reprojected one, get
    three block rows of the whole width, as before the reader kept rows (at most 512 MB).
    At least 8 MB."""
    ds = raster.dataset
    block_rows = raster.block_rows
    block_cols = ds.block_shapes[0][1] if ds.block_shapes else raster.width
    value = bands * np.dtype(ds.dtypes[0]).itemsize
    # a reprojected image (WarpedVRT) decodes its source's blocks through the same cache:
    # those are not kept by the reader, so the cache keeps its earlier size there
    if not _reads_ahead(raster) or isinstance(ds, WarpedVRT):
        need = 3 * raster.width * min(block_rows, 1024) * value
    else:
        need = 2 * (window_cols + block_cols) * block_rows * value
    return int(min(512 * 2**20, max(GDAL_CACHE_BYTES, need)))


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
class _Placed:
    """Where one tile of a batch goes: its tile row, the tile, and its valid-pixel mask."""

    row_index: int
    row_tiles: list[Tile]
    tile: Tile
    valid: np.ndarray      # (tile rows, tile cols) of the raster, before any padding


def _read_windows(raster: YearRaster, grid: TileGrid, spectral: list[str], per_window: int,
                  tile_rows: tuple[int, int] | None = None):
    """Windows of up to ``per_window`` consecutive tiles of one tile row, read and scaled
    to reflectance: (tile row, its tiles, the window's tiles, first column, bands, valid).

    Every block of the image is decoded once, with no block cache across the width: a
    window is read down to the end of the last block row it touches, and the rows the
    next tile row reads again (the overlap and the rest of that block row) are kept, as
    the file stores them (two bytes a value for 16-bit data) and with their validity,
    until it comes. The rows of a tile row's windows straddle two block rows; reading
    each window alone had GDAL decode the shared block row twice unless its cache held
    three block rows of the whole width (100 MB at 16,384 px wide, four 16-bit bands)."""
    first, stop = tile_rows or (0, len(grid.rows))
    kept: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}   # window → parts (first row, values, valid)
    for row_index, row_tiles in grid.tile_rows(first, stop):
        r0, r1 = row_tiles[0].row, min(row_tiles[0].row + grid.tile, raster.height)
        nxt = grid.rows[row_index + 1][0] if row_index + 1 < stop else None
        for start in range(0, len(row_tiles), per_window):
            chunk = row_tiles[start:start + per_window]
            c0, c1 = chunk[0].col, min(chunk[-1].col + grid.tile, raster.width)
            parts = kept.pop(start, [])
            have = parts[-1][0] + parts[-1][1].shape[1] if parts else r0
            if have < r1:        # the rows not kept, down to the end of a block row if the next tile row reads on
                end = r1 if nxt is None else _reusable_end(raster, r1)
                data, valid = raster.read_raw(Window(c0, have, c1 - c0, end - have), spectral)
                parts.append((have, data, valid))
            spec, valid = raster.reflectance(*_rows_of(parts, r0, r1), spectral)
            if nxt is not None:
                kept[start] = _from_row(parts, nxt)
            yield row_index, row_tiles, chunk, c0, spec, valid


REUSE_BLOCK_ROWS = 1024   # files with taller blocks (an image stored as one strip) are not read ahead


def _reads_ahead(raster: YearRaster) -> bool:
    """Whether windows are read down to the end of their block row (not for blocks too
    tall to keep)."""
    return raster.block_rows < REUSE_BLOCK_ROWS


def _reusable_end(raster: YearRaster, r1: int) -> int:
    """Where a window ending at row ``r1`` is read down to: the end of the file's block row
    holding its last row, when the reader reads ahead."""
    return raster.block_row_end(r1 - 1) if _reads_ahead(raster) else r1


def _rows_of(parts: list[tuple[int, np.ndarray, np.ndarray]], r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [r0, r1) of consecutive parts: values cast to float32 and a validity mask, new
    arrays (the parts stay as they are for the next tile row)."""
    first = parts[0]
    values = np.empty((first[1].shape[0], r1 - r0, first[1].shape[2]), np.float32)
    valid = np.empty((r1 - r0, first[1].shape[2]), bool)
    for row0, data, ok in parts:
        a, b = max(r0, row0), min(r1, row0 + data.shape[1])
        if a < b:
            values[:, a - r0:b - r0] = data[:, a - row0:b - row0]
            valid[a - r0:b - r0] = ok[a - row0:b - row0]
    return values, valid


def _from_row(parts: list[tuple[int, np.ndarray, np.ndarray]], row: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The parts' rows from ``row`` on, copied where a part starts above it, so that the
    rows no longer needed are freed rather than held by a view."""
    out = []
    for row0, data, ok in parts:
        if row0 + data.shape[1] <= row:
            continue
        if row0 < row:
            row0, data, ok = row, data[:, row - row0:].copy(), ok[row - row0:].copy()
        out.append((row0, data, ok))
    return out


def _read_batches(raster: YearRaster, model: OnnxModel, grid: TileGrid, batch_size: int,
                  tile_rows: tuple[int, int] | None = None):
    """Full batches of normalised tiles (the last one partial) and where each tile goes.

    Windows of up to ``batch_size`` tiles are read and decoded in a thread of their own,
    so that reading the next window overlaps building this one's channels; each tile's
    channels are built and normalised straight into its slot of the batch (no
    window-wide stack copied tile by tile). Nodata pixels are set to 0.
    Measured with the free model on an 8,192² scene, 2 cores: 4.4 → 2.4 s once no block was
    decoded twice (then by GDAL's cache, now by :func:`_read_windows` keeping rows)."""
    channels = model.metadata.channels
    tile = grid.tile
    x = np.empty((batch_size, len(channels), tile, tile), np.float32)
    placed: list[_Placed] = []
    windows = _Prefetcher(_read_windows(raster, grid, required_spectral(channels), batch_size, tile_rows))
    try:
        for row_index, row_tiles, chunk, c0, spec, valid in windows:
            for t in chunk:
                cols = slice(t.col - c0, t.col - c0 + tile)
                tile_valid = valid[:, cols]
                views = {ch: a[:, cols] for ch, a in spec.items()}
                slot = x[len(placed)]
                if tile_valid.shape == (tile, tile):
                    model.normalise(build_channels(views, channels, out=slot))
                    if not tile_valid.all():
                        slot[:, ~tile_valid] = 0.0
                else:               # a raster smaller than one tile: mirror-padded
                    part = model.normalise(build_channels(views, channels))
                    part[:, ~tile_valid] = 0.0
                    slot[:] = _pad_to(part, tile)
                placed.append(_Placed(row_index, row_tiles, t, tile_valid))
                if len(placed) == batch_size:
                    yield x, placed
                    x = np.empty_like(x)
                    placed = []
    finally:
        windows.close()
    if placed:
        yield x[:len(placed)], placed


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
        finally:
            close = getattr(items, "close", None)
            if close is not None:     # a generator stopped early runs its cleanup here, in its thread
                close()

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
    strips: dict[int, _Strip] = {}      # tile row → its strip, until written
    done_tiles = valid_pixels = 0
    started, estimated = time.monotonic(), False

    unc_ds = None
    cache = read_cache_bytes(raster, bands, min(raster.width, batch_size * (tile - overlap) + overlap))
    with rasterio.Env(GDAL_CACHEMAX=cache, GDAL_NUM_THREADS=str(threads)), \
            open_probability(prob_path, raster, model.path.name, rows, threads) as prob_ds:
        writer = _BlockRowWriter(prob_ds, width, threshold)
        unc_writer = None
        if uncertainty_path is not None:
            unc_ds = rasterio.open(uncertainty_path, "w", **geotiff_profile(raster, "uint8", UNC_NODATA, rows,
                                                                            threads))
            unc_ds.set_band_description(1, "uncertainty × 254 (near the threshold" +
                                        (", or flips disagree)" if tta else ")"))
            unc_writer = _BlockRowWriter(unc_ds, width, None, np.uint8)

        def predict(batch: np.ndarray, placed: list[_Placed]) -> None:
            nonlocal done_tiles, valid_pixels, estimated
            if tta:
                probs, disagree = predict_tta(model, batch)
            else:
                probs, disagree = model.predict(batch), None
            for k, where in enumerate(placed):
                t = where.tile
                if where.row_index not in strips:
                    first = where.row_tiles[0]
                    strips[where.row_index] = _Strip(first.keep_row0, first.keep_row1, width,
                                                     len(where.row_tiles), unc_writer is not None)
                strip = strips[where.row_index]
                rows, cols = slice(t.keep_row0 - t.row, t.keep_row1 - t.row), slice(t.keep_col0, t.keep_col1)
                tile_cols = slice(t.keep_col0 - t.col, t.keep_col1 - t.col)
                valid = where.valid[rows, tile_cols]
                valid_pixels += int(np.count_nonzero(valid))
                out_rows = slice(t.keep_row0 - strip.row0, t.keep_row1 - strip.row0)
                p = probs[k, rows, tile_cols]
                strip.prob[out_rows, cols] = probability.encode(p, valid)
                if strip.unc is not None:
                    u = uncertainty(p, threshold, None if disagree is None else disagree[k, rows, tile_cols])
                    strip.unc[out_rows, cols] = np.where(valid, np.round(u * 254), UNC_NODATA).astype(np.uint8)
                strip.remaining -= 1
            done_tiles += len(placed)
            if not estimated and done_tiles >= 2 * batch_size and total >= 4 * done_tiles and tile_rows is None:
                estimated = True         # from the first batches' pace: what the user is in for
                left = (time.monotonic() - started) / done_tiles * (total - done_tiles)
                reporter.log(f"{done_tiles} of {total:,} tiles in {time.monotonic() - started:.1f} s: about "
                             f"{_duration(left)} left for this image.")
            while strips and strips[min(strips)].remaining == 0:
                done = strips.pop(min(strips))
                writer.add(done.prob)
                if unc_writer is not None:
                    unc_writer.add(done.unc)
            reporter.progress(done_tiles / total, f"{done_tiles}/{total} tiles")

        batches = _Prefetcher(_read_batches(raster, model, grid, batch_size, tile_rows))
        try:
            for batch, placed in batches:
                predict(batch, placed)
            writer.close()
            if unc_writer is not None:
                unc_writer.close()
        finally:
            batches.close()
            if unc_ds is not None:
                unc_ds.close()
    return PredictionStats(valid_pixels, writer.landslide_pixels, total)
