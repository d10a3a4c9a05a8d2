"""Areas given as polygons: the area of interest of a mapping run, the mapped extent of an
analysis, the assessment area.

A mapping run may be limited to polygons (a catchment, a study area), to a rectangle (the
map canvas' extent) or to both; only pixels inside are read, predicted and counted in the
mapped area, so densities per km² refer to the area really mapped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.features import geometry_mask
from rasterio.transform import array_bounds
from rasterio.windows import Window, from_bounds

from . import crs as crs_rules
from ..errors import InputError
from ..inventory.series import clean_polygons, parse_crs, to_crs
from ..jobs.specs import check_bounds, split_layer
from .vector_io import read_layer

Log = Callable[[str], None]


def read_polygons(spec: str, target: CRS | None, name: str, log: Log = lambda _m: None) -> np.ndarray:
    """The polygons of ``spec`` (PATH, PATH|LAYER or PATH|layername=LAYER), repaired and
    in ``target`` (when both it and the layer have a CRS); an error naming ``name`` when
    there are none."""
    path, layer = split_layer(spec)
    try:
        vl = read_layer(path, layer)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    geoms, _, cleaning = clean_polygons(vl.geometries)
    if not len(geoms):
        raise InputError(f"{name} ({spec}) has no polygons; choose a polygon layer with at least one feature.")
    if cleaning.repaired:
        log(f"{name}: {cleaning.describe()}.")
    src = parse_crs(vl.crs_wkt, name)
    return to_crs(geoms, src, target, name) if src is not None and target is not None else geoms


def parse_bounds_crs(text: str | None, name: str = "the extent's CRS") -> CRS | None:
    if not text:
        return None
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise InputError(f"{name} {text!r} is not a coordinate reference system GDAL knows ({exc}); give "
                         "e.g. EPSG:32645.") from None


@dataclass
class AreaOfInterest:
    """One (multi)polygon in the mapping CRS, and a description of where it came from."""

    geometry: shapely.Geometry
    description: str

    def __post_init__(self) -> None:
        shapely.prepare(self.geometry)
        # a rectangle needs no per-window mask: the window is the rectangle
        self.rectangular = bool(shapely.equals(self.geometry, shapely.envelope(self.geometry)))

    @property
    def area_km2(self) -> float:
        return float(self.geometry.area) / 1e6

    def window(self, transform, width: int, height: int) -> Window | None:
        """The smallest whole-pixel window of a width × height grid covering the area, or
        None when they do not overlap."""
        win = from_bounds(*self.geometry.bounds, transform=transform)
        col0, row0 = max(0, math.floor(win.col_off + 1e-6)), max(0, math.floor(win.row_off + 1e-6))
        col1 = min(width, math.ceil(win.col_off + win.width - 1e-6))
        row1 = min(height, math.ceil(win.row_off + win.height - 1e-6))
        if col1 <= col0 or row1 <= row0:
            return None
        return Window(col0, row0, col1 - col0, row1 - row0)

    def mask(self, transform, shape: tuple[int, int]) -> np.ndarray | None:
        """Pixels (of a window with ``transform``) whose centre lies inside; None: all of them."""
        if self.rectangular:
            return None
        h, w = shape
        cell = shapely.box(*array_bounds(h, w, transform))
        if self.geometry.contains(cell):
            return None
        if not self.geometry.intersects(cell):
            return np.zeros(shape, bool)
        return geometry_mask([self.geometry], out_shape=shape, transform=transform, invert=True)


def area_of_interest(area: str | None, bounds: Sequence[float] | None, bounds_crs: str | None,
                     target: CRS, log: Log = lambda _m: None) -> AreaOfInterest | None:
    """The job's area of interest in ``target`` (the mapping CRS): the polygons of
    ``area``, the rectangle ``bounds`` (in ``bounds_crs``, else in ``target``), or where
    both overlap; None when neither is given."""
    parts, names = [], []
    if area:
        parts.append(shapely.union_all(read_polygons(area, target, "The area of interest", log)))
        names.append(f"the polygons of {area}")
    if bounds is not None:
        check_bounds(bounds)
        crs = parse_bounds_crs(bounds_crs) or target
        box = shapely.segmentize(shapely.box(*bounds), max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 32)
        box = to_crs(np.array([box]), crs, target, "The extent")[0] if crs != target else box
        parts.append(box)
        names.append(f"the extent {', '.join(f'{v:.6g}' for v in bounds)} ({crs_rules.describe(crs)})")
    if not parts:
        return None
    geometry = shapely.intersection_all(parts) if len(parts) > 1 else parts[0]
    if geometry.is_empty or geometry.area <= 0:
        raise InputError(f"The area of interest is empty: {' and '.join(names)} do not overlap. Choose an "
                         "extent that covers the polygons, or only one of them.")
    aoi = AreaOfInterest(geometry, " inside ".join(names))
    log(f"Mapping only inside {aoi.description}: {aoi.area_km2:,.3f} km².")
    return aoi
