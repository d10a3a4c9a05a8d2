"""Landslide inventories as they come from users: one polygon layer per year, in any
OGR source, with the mess real inventories carry.

Real inventories hold self-intersecting rings, MultiPolygons, empty records, attribute
columns that differ between years and area attributes that disagree with the geometry.
Everything here works on the geometry alone: invalid rings are repaired with
``make_valid`` (never dropped silently; the counts are kept), multi-part features are
split into polygons that remember their source feature, and areas are always computed
from the geometry in a metre-based CRS.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import rasterio.warp
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError

from ..geodata import crs as crs_rules
from ..errors import InputError
from ..jobs.specs import InventoryLayer, split_layer
from ..geodata.vector_io import list_layers, read_layer

POLYGON, MULTIPOLYGON, COLLECTION = 3, 6, 7
_UNDEFINED_SRS = re.compile(r'\s*\w+\["Undefined (geographic|cartesian) SRS"', re.IGNORECASE)
_YEAR = re.compile(r"(?<!\d)(19[5-9]\d|20\d\d|21\d\d)(?!\d)")

Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass
class Cleaning:
    """What repairing a layer changed, so that nothing disappears without a trace."""

    features: int = 0             # features read
    missing: int = 0              # features without a geometry (or an empty one)
    repaired: int = 0             # invalid geometries repaired with make_valid
    non_polygonal: int = 0        # points/lines (also those left over by a repair) ignored
    multipart: int = 0            # features split into more than one polygon
    polygons: int = 0             # polygons kept

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def describe(self) -> str:
        bits = [f"{self.features} features → {self.polygons} polygons"]
        if self.repaired:
            bits.append(f"{self.repaired} invalid geometries repaired")
        if self.multipart:
            bits.append(f"{self.multipart} multi-part features split")
        if self.missing:
            bits.append(f"{self.missing} features without geometry skipped")
        if self.non_polygonal:
            bits.append(f"{self.non_polygonal} non-polygon parts ignored")
        return ", ".join(bits)


def clean_polygons(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, Cleaning]:
    """Valid single polygons of non-zero area, and for each the index of its source feature."""
    geoms = np.asarray(geoms, dtype=object)
    report = Cleaning(features=len(geoms))
    index = np.arange(len(geoms))
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) if len(geoms) else np.zeros(0, bool)
    report.missing = int((~present).sum())
    geoms, index = geoms[present], index[present]
    invalid = ~shapely.is_valid(geoms)
    report.repaired = int(invalid.sum())
    if report.repaired:
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    # collections (from make_valid or the source) → members; multipolygons → polygons
    for multi in (COLLECTION, MULTIPOLYGON):
        is_multi = shapely.get_type_id(geoms) == multi
        if is_multi.any():
            parts, where = shapely.get_parts(geoms[is_multi], return_index=True)
            geoms = np.concatenate([geoms[~is_multi], parts])
            index = np.concatenate([index[~is_multi], index[is_multi][where]])
    polygon = shapely.get_type_id(geoms) == POLYGON
    polygon &= ~shapely.is_empty(geoms)
    polygon[polygon] = shapely.area(geoms[polygon]) > 0
    report.non_polygonal = int((~polygon).sum())
    geoms, index = geoms[polygon], index[polygon]
    order = np.argsort(index, kind="stable")
    geoms, index = geoms[order], index[order]
    if len(index):
        report.multipart = int((np.bincount(index) > 1).sum())
    report.polygons = len(geoms)
    return geoms, index, report


def parse_crs(wkt: str | None, name: str) -> CRS | None:
    """The CRS of a layer, or None when it has none (or GDAL's 'Undefined' placeholder)."""
    if not wkt or _UNDEFINED_SRS.match(wkt):
        return None
    try:
        return CRS.from_wkt(wkt)
    except CRSError as exc:
        raise InputError(f"The coordinate reference system of {name} is not understood: {exc}.") from None


def to_crs(geoms: np.ndarray, src: CRS, dst: CRS, name: str) -> np.ndarray:
    """Reproject a shapely array; a specific error when vertices fall outside the CRS."""
    if src == dst or not len(geoms):
        return geoms

    def reproject(xy: np.ndarray) -> np.ndarray:
        xs, ys = rasterio.warp.transform(src, dst, xy[:, 0].tolist(), xy[:, 1].tolist())
        return np.column_stack([xs, ys])

    problem = (f"{name} cannot be reprojected from {crs_rules.describe(src)} to "
               f"{crs_rules.describe(dst)}")
    try:
        out = shapely.transform(geoms, reproject)
    except Exception as exc:  # GDAL's errors (rasterio._err.CPLE_*) have no public base class
        raise InputError(f"{problem} ({exc}); check the layer's CRS.") from None
    if not np.isfinite(shapely.bounds(out)).all():
        raise InputError(f"{problem}: some vertices fall outside its area of use; check the layer's CRS.")
    return out


def metric_crs(crs: CRS, geoms: np.ndarray, name: str, log: Log = _quiet) -> CRS:
    """``crs`` itself when areas in it are in m², else the UTM zone of the layer's centre."""
    problem = crs_rules.metric_problem(crs)
    if problem is None:
        return crs
    if not len(geoms):
        raise InputError(f"{name} is {crs_rules.describe(crs)}, {problem}, and has no polygons to "
                         "choose a UTM zone from.")
    bounds = shapely.total_bounds(geoms)
    utm = crs_rules.utm_for_bounds(crs, bounds, name)
    log(f"{name} is {crs_rules.describe(crs)}, {problem}: areas are computed after reprojecting "
        f"to {crs_rules.describe(utm)}.")
    return utm


@dataclass
class YearInventory:
    """One year's polygons (single parts) in a metre-based CRS."""

    year: int
    name: str                     # where it came from, for messages
    geometries: np.ndarray        # shapely Polygons
    source_fid: np.ndarray        # feature id (FID) in the source layer of each polygon
    crs: CRS | None
    cleaning: Cleaning = field(default_factory=Cleaning)
    fields: dict[str, np.ndarray] = field(default_factory=dict)   # per polygon, from the source

    def __len__(self) -> int:
        return len(self.geometries)

    @property
    def areas(self) -> np.ndarray:
        return shapely.area(self.geometries) if len(self.geometries) else np.empty(0)


def from_layer(year: int, name: str, layer, crs: CRS | None,
               keep_fields: Iterable[str] = ()) -> YearInventory:
    """A YearInventory of an in-memory layer (e.g. a mapping result about to be written:
    its features will get FIDs 1..n in order)."""
    geoms, index, cleaning = clean_polygons(layer.geometries)
    fields = {k: np.asarray(layer.fields[k])[index] for k in keep_fields if k in layer.fields}
    return YearInventory(year, name, geoms, index + 1, crs, cleaning, fields)


def year_of(text: str) -> int | None:
    """The year a layer or file name stands for (``landslides_2017``, ``China/2009``)."""
    found = _YEAR.findall(Path(str(text)).name) or _YEAR.findall(str(text))
    return int(found[-1]) if found else None


def discover_years(path: str | os.PathLike, prefix: str | None = None) -> list[InventoryLayer]:
    """One :class:`InventoryLayer` per year-named layer of a multi-layer source.

    A run GeoPackage holds ``landslides_<year>`` and ``new_<year>`` layers: ``prefix``
    picks one family (by default ``landslides_`` when present, else every year-named layer).
    """
    names = list_layers(path)
    if prefix is None and any(n.startswith("landslides_") for n in names):
        prefix = "landslides_"
    refs: dict[int, InventoryLayer] = {}
    for n in names:
        if prefix and not n.startswith(prefix):
            continue
        year = year_of(n)
        if year is None:
            continue
        if year in refs:
            raise InputError(f"{path} has two layers for {year} ({refs[year].layer!r} and {n!r}); "
                             "name the layer of each year explicitly.")
        refs[year] = InventoryLayer(year, str(path), n)
    if not refs:
        raise InputError(f"No layer of {path} is named after a year (such as 'landslides_2017' or "
                         f"'2009'); its layers are {names}. Give each year as YEAR=PATH|LAYER.")
    return [refs[y] for y in sorted(refs)]


def parse_layer_refs(items: Iterable[str]) -> list[InventoryLayer]:
    """``YEAR=PATH[|LAYER]`` items, or bare multi-layer sources whose layers name the years."""
    refs: list[InventoryLayer] = []
    for item in items:
        year, sep, rest = item.partition("=")
        if sep and year.strip().isdigit():
            path, layer = split_layer(rest)
            refs.append(InventoryLayer(int(year), path, layer))
        else:
            refs.extend(discover_years(item))
    years = [r.year for r in refs]
    dup = sorted({y for y in years if years.count(y) > 1})
    if dup:
        raise InputError(f"Year {dup[0]} is given more than once.")
    return sorted(refs, key=lambda r: r.year)


def read_inventory(ref: InventoryLayer, dst: CRS | None = None, log: Log = _quiet,
                   keep_fields: Iterable[str] = ()) -> YearInventory:
    """Read, repair and (when ``dst`` is given) reproject one year's layer."""
    try:
        vl = read_layer(ref.path, ref.layer)
    except InputError as exc:
        raise InputError(f"Year {ref.year}: {exc}") from None
    geoms, index, cleaning = clean_polygons(vl.geometries)
    if cleaning.features and not cleaning.polygons and cleaning.missing < cleaning.features:
        raise InputError(f"Year {ref.year}: {ref.name} has no polygons (landslides must be "
                         "polygons, not points or lines).")
    src = parse_crs(vl.crs_wkt, ref.name)
    if dst is not None and src is not None and src != dst:
        geoms = to_crs(geoms, src, dst, ref.name)
        log(f"{ref.name}: reprojected from {crs_rules.describe(src)} to {crs_rules.describe(dst)}.")
        # reprojection can bend a valid ring into an invalid one
        bad = ~shapely.is_valid(geoms)
        if bad.any():
            fixed, where, extra = clean_polygons(shapely.make_valid(geoms[bad]))
            geoms = np.concatenate([geoms[~bad], fixed])
            index = np.concatenate([index[~bad], index[bad][where]])
    crs = dst if dst is not None else src
    if cleaning.repaired or cleaning.multipart or cleaning.missing or cleaning.non_polygonal:
        log(f"Year {ref.year} ({ref.name}): {cleaning.describe()}.")
    fields = {k: np.asarray(vl.fields[k])[index] for k in keep_fields if k in vl.fields}
    fids = vl.fids[index] if vl.fids is not None else index + 1
    return YearInventory(ref.year, ref.name, geoms, fids, crs, cleaning, fields)


def read_series(refs: list[InventoryLayer], log: Log = _quiet,
                keep_fields: Iterable[str] = (), target: CRS | None = None) -> list[YearInventory]:
    """Every year in one metre-based CRS: ``target`` when given, else the first year's, or
    its UTM zone when that is geographic/Web Mercator. A layer without a CRS is assumed to
    share it (and said so)."""
    if not refs:
        raise InputError("No inventory years were given.")
    first = read_inventory(refs[0], target, log, keep_fields)
    src = first.crs
    if target is None and src is None:
        log(f"{refs[0].name} has no coordinate reference system; areas are computed in its "
            "own units, assumed to be metres.")
    elif target is None:
        target = metric_crs(src, first.geometries, refs[0].name, log)
        if target != src:  # geographic or Web Mercator: read again, reprojected
            first = read_inventory(refs[0], target, log, keep_fields)
    series = [first]
    for ref in refs[1:]:
        inv = read_inventory(ref, target, log, keep_fields)
        if target is None and inv.crs is not None:
            raise InputError(f"{ref.name} has a CRS ({crs_rules.describe(inv.crs)}) but "
                             f"{refs[0].name} has none; give every year a CRS.")
        if inv.crs is None and target is not None:
            log(f"{ref.name} has no coordinate reference system; assuming "
                f"{crs_rules.describe(target)} like {refs[0].name}.")
            inv.crs = target
        series.append(inv)
    return series
