"""Tiled inference of one raster: windowed reads in, batched ONNX tiles, windowed writes out.

Memory is bounded by a strip of tile rows (plus less than one GeoTIFF block row) no
matter how tall the raster is. Every pixel is predicted, edges included; nodata input
pixels are never predicted and stay nodata in the probability raster.
"""
from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from .bands import build_channels, required_spectral
from .errors import InputError
from .model import OnnxModel
from .progress import Reporter
from .raster import YearRaster
from .tiling import Tile, TileGrid

PROB_NODATA = -1.0
BLOCK = 256


def geotiff_profile(raster: YearRaster, dtype: str, nodata) -> dict:
    return dict(
        driver="GTiff", width=raster.width, height=raster.height, count=1, dtype=dtype,
        crs=raster.crs, transform=raster.transform, nodata=nodata, tiled=True,
        blockxsize=BLOCK, blockysize=BLOCK, compress="deflate", zlevel=1,
        predictor=3 if dtype.startswith("float") else 2, BIGTIFF="IF_SAFER")


@dataclass
class PredictionStats:
    valid_pixels: int
    landslide_pixels: int
    tiles: int


class _BlockRowWriter:
    """Writes whole GeoTIFF block rows only, so no compressed block is written twice.

    Rows are copied into one reusable block-row buffer; full block rows of a strip that
    start on a block boundary are written straight from the strip."""

    def __init__(self, prob_ds, width: int, threshold: float):
        self.prob_ds, self.width, self.threshold = prob_ds, width, threshold
        self.row = 0                                       # first row not yet written
        self.buffer = np.empty((BLOCK, width), np.float32)
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
        self.landslide_pixels += int(np.count_nonzero(prob >= self.threshold))
        self.prob_ds.write(prob, 1, window=Window(0, self.row, self.width, len(prob)))
        self.row += len(prob)


class _Strip:
    """The kept rows of one tile row, filled tile by tile (nodata where input was)."""

    def __init__(self, row0: int, row1: int, width: int, n_tiles: int):
        self.row0 = row0
        self.prob = np.full((row1 - row0, width), PROB_NODATA, np.float32)
        self.remaining = n_tiles


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


def _read_chunks(raster: YearRaster, model: OnnxModel, grid: TileGrid, per_chunk: int):
    """Read, build channels and normalise, one chunk of up to ``per_chunk`` tiles at a time."""
    channels = model.metadata.channels
    spectral = required_spectral(channels)
    for row_index, row_tiles in grid.tile_rows():
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
                   reporter: Reporter | None = None) -> PredictionStats:
    """Write the probability GeoTIFF of ``raster``; ``threshold`` only counts landslide pixels."""
    reporter = reporter or Reporter()
    meta = model.metadata
    if tile % meta.size_multiple:
        raise InputError(f"Tile size {tile} is not a multiple of {meta.size_multiple}, "
                         f"which the model {model.path.name} needs.")
    if batch_size < 1:
        raise InputError(f"Batch size must be at least 1, got {batch_size}.")
    raster.source_indexes(required_spectral(meta.channels))
    grid = TileGrid(raster.height, raster.width, tile, overlap)
    width = raster.width
    batch = np.zeros((batch_size, len(meta.channels), tile, tile), np.float32)
    pending: list[tuple[_Strip, Tile, _Chunk]] = []
    strips: list[_Strip] = []
    done_tiles = valid_pixels = 0

    with rasterio.open(prob_path, "w", **geotiff_profile(raster, "float32", PROB_NODATA)) as prob_ds:
        prob_ds.set_band_description(1, f"landslide probability ({model.path.name})")
        writer = _BlockRowWriter(prob_ds, width, threshold)

        def flush() -> None:
            nonlocal done_tiles, valid_pixels
            if not pending:
                return
            probs = model.predict(batch[:len(pending)])
            for k, (strip, t, chunk) in enumerate(pending):
                rows, cols = slice(t.keep_row0 - t.row, t.keep_row1 - t.row), slice(t.keep_col0, t.keep_col1)
                valid = chunk.valid[rows, t.keep_col0 - chunk.col0:t.keep_col1 - chunk.col0]
                valid_pixels += int(np.count_nonzero(valid))
                strip.prob[t.keep_row0 - strip.row0:t.keep_row1 - strip.row0, cols] = np.where(
                    valid, probs[k, rows, t.keep_col0 - t.col:t.keep_col1 - t.col], PROB_NODATA)
                strip.remaining -= 1
            done_tiles += len(pending)
            pending.clear()
            while strips and strips[0].remaining == 0:
                writer.add(strips.pop(0).prob)
            reporter.progress(done_tiles / len(grid), f"{done_tiles}/{len(grid)} tiles")

        chunks = _Prefetcher(_read_chunks(raster, model, grid, batch_size))
        try:
            current_row = -1
            for chunk in chunks:
                first = chunk.row_tiles[0]
                if chunk.row_index != current_row:
                    current_row = chunk.row_index
                    strips.append(_Strip(first.keep_row0, first.keep_row1, width, len(chunk.row_tiles)))
                strip = strips[-1]
                for t in chunk.tiles:
                    c = t.col - chunk.col0
                    batch[len(pending)] = _pad_to(chunk.x[:, :, c:c + tile], tile)
                    pending.append((strip, t, chunk))
                    if len(pending) == batch_size:
                        flush()
            flush()
        finally:
            chunks.close()
        writer.close()
    return PredictionStats(valid_pixels, writer.landslide_pixels, len(grid))
