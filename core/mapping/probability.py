"""Probability rasters on disk: 8-bit codes, read back as probabilities.

A probability p is stored as round(p × 254) in one byte, 255 marking nodata, with the
band's scale set to 1/254 so that GDAL and QGIS (Identify, styling, statistics) see
probabilities 0-1. A quarter of float32's size, and ZSTD with the horizontal predictor,
compressed on several threads, writes and reads it several times faster; the 1/254 step
(0.004) is far below any threshold's meaning. Readers here also accept the float32 files
of earlier versions (nodata −1), so older runs still open and vectorise.
"""
from __future__ import annotations

import math

import numpy as np

SCALE = 254                 # code of probability 1.0
NODATA = 255                # code of "not mapped" (nodata input, outside the area of interest)
DTYPE = "uint8"
LEGACY_NODATA = -1.0        # float32 probability rasters of versions before 0.5


def encode(prob: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Codes of ``prob`` (0-1), NODATA where ``valid`` is False."""
    codes = np.rint(np.clip(prob, 0.0, 1.0) * SCALE).astype(np.uint8)
    if valid is not None:
        codes[~valid] = NODATA
    return codes


def threshold_value(threshold: float, dtype) -> float:
    """What stored values are compared with: a value is a landslide when it is ≥ this.

    For codes: the smallest code whose probability (code / 254) reaches ``threshold``."""
    if np.dtype(dtype).kind == "f":
        return float(threshold)
    return float(math.ceil(round(threshold * SCALE, 6)))


def nodata_of(ds) -> float:
    """The nodata value of an open probability raster (its own, else by its type)."""
    if ds.nodata is not None:
        return ds.nodata
    return LEGACY_NODATA if np.dtype(ds.dtypes[0]).kind == "f" else NODATA


def landslide(values: np.ndarray, threshold: float, nodata: float) -> np.ndarray:
    """Pixels at or above ``threshold`` among stored ``values`` (codes or float32)."""
    return (values >= threshold_value(threshold, values.dtype)) & (values != nodata)


def as_probability(values: np.ndarray) -> np.ndarray:
    """Stored values as float32 probabilities (nodata pixels are not meaningful)."""
    if values.dtype.kind == "f":
        return values.astype(np.float32, copy=False)
    return values.astype(np.float32) / np.float32(SCALE)


def creation_options(dtype: str, threads: int | str = "ALL_CPUS") -> dict:
    """GeoTIFF creation options for probability and other per-pixel rasters: ZSTD (level 1,
    fast) with the predictor for the type, compressed on ``threads``."""
    return dict(compress="zstd", zstd_level=1, predictor=3 if dtype.startswith("float") else 2,
                num_threads=str(threads))
