"""Accuracy of one year's predicted landslide polygons against reference polygons.

Three views, as a geomorphologist compares an automatic inventory with a mapped one:

* **Pixels** (the papers' precision, recall and F1, plus MCC and IoU) on a common grid:
  the year's probability raster (its nodata pixels do not count) or, without one, a grid
  of ``pixel_size`` pixels snapped to multiples of the pixel size over the inventories.
* **Objects** (core/inventory/object_matching.py): overlapping predicted and reference polygons
  form *matched groups* (1:1, 1:n, n:1, n:m), each compared by summed area, so every
  polygon is counted once; these groups are the points of the predicted-vs-reference area
  scatter (Bhuyan et al. 2023, Fig. 10). The rest are *missed* references and *false
  alarms*.
* **Inventories**: count, total, min, max, mean and median area of each inventory.

Both inventories must be in the same projected CRS in metres (the caller reprojects).
Invalid polygons are repaired with ``shapely.make_valid`` and only their polygonal parts
kept; geometries with no polygonal part left are reported as dropped.

With an assessment area, pixels count only when their centre is inside it, and objects
count when they, or a polygon of their matched group, overlap it. Objects are never cut
at the area's edge, so their areas stay whole landslide areas.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import rasterio
import rasterio.errors
import shapely
from rasterio.crs import CRS

from ..geodata import crs as crs_utils
from ..errors import InputError
from ..json_values import plain
from .metrics import (Grid, PixelScores, as_geometry_array, grid_for_bounds, pixel_scores,
                      pixel_scores_on_grid)
from .object_matching import FALSE_ALARM, MISSED, OUTSIDE, MatchedGroup, ObjectSummary, ObjectTable, match_objects
from ..progress import Reporter

# ---------------------------------------------------------------------------------------
# Results


@dataclass
class InventoryStats:
    count: int
    total_m2: float
    min_m2: float
    max_m2: float
    mean_m2: float
    median_m2: float

    @classmethod
    def of(cls, areas) -> "InventoryStats":
        a = np.asarray(areas, float)
        a = a[np.isfinite(a)]
        if not len(a):
            return cls(0, 0.0, *(float("nan"),) * 4)
        return cls(len(a), float(a.sum()), float(a.min()), float(a.max()), float(a.mean()),
                   float(np.median(a)))

    def to_dict(self) -> dict:
        return plain(self.__dict__)


@dataclass
class YearAssessment:
    year: int
    pixel: PixelScores
    grid: dict                    # where the pixels were counted
    objects: ObjectSummary
    groups: list[MatchedGroup]
    predicted: ObjectTable
    reference: ObjectTable
    inventory: dict[str, InventoryStats]   # "reference" and "predicted"
    notes: list[str] = field(default_factory=list)

    def to_dict(self, per_object: bool = True) -> dict:
        """JSON-serialisable (NaN becomes null). ``per_object=False`` leaves out the
        per-polygon tables, which grow with the inventories."""
        out = {"year": int(self.year), "pixel": plain(self.pixel.to_dict()), "grid": plain(self.grid),
               "objects": self.objects.to_dict(),
               "inventory": {k: v.to_dict() for k, v in self.inventory.items()},
               "groups": [g.to_dict() for g in self.groups], "notes": list(self.notes)}
        if per_object:
            out["predicted"] = self.predicted.to_dict()
            out["reference"] = self.reference.to_dict()
        return out


# ---------------------------------------------------------------------------------------
# Geometry preparation


def repair_polygons(geoms) -> tuple[np.ndarray, np.ndarray]:
    """The polygonal part of each geometry, and which ones were invalid and repaired.

    Invalid geometries go through ``shapely.make_valid``; from collections (what
    make_valid returns when a ring collapses into lines) only the polygons are kept.
    Missing, empty and non-polygonal geometries become None.
    """
    g = as_geometry_array(geoms)
    present = ~(shapely.is_missing(g) | shapely.is_empty(g))
    invalid = present & ~shapely.is_valid(g)
    g = g.copy()
    if invalid.any():
        g[invalid] = shapely.make_valid(g[invalid])
    types = shapely.get_type_id(g)
    out = np.full(len(g), None, dtype=object)
    keep = present & np.isin(types, (3, 6)) & ~shapely.is_empty(g)
    out[keep] = g[keep]
    coll = present & (types == 7)
    if coll.any():
        parts, where = shapely.get_parts(g[coll], return_index=True)
        where = np.flatnonzero(coll)[where]
        polys, owners = [], []
        while len(parts):
            t = shapely.get_type_id(parts)
            single = (t == 3) & ~shapely.is_empty(parts)
            polys.append(parts[single])
            owners.append(where[single])
            nested = (t == 6) | (t == 7)
            parts, w = shapely.get_parts(parts[nested], return_index=True)
            where = where[nested][w]
        polys, owners = np.concatenate(polys), np.concatenate(owners)
        if len(polys):
            shapely.multipolygons(polys, indices=owners, out=out)
    return out, invalid


def _layer_parts(value):
    """Geometries and CRS WKT of a shapely array or a VectorLayer-like object."""
    if hasattr(value, "geometries"):
        return value.geometries, getattr(value, "crs_wkt", None)
    return value, None


def _parse_crs(value, what: str) -> CRS | None:
    if value is None or value == "":
        return None
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value)
    except Exception as exc:  # rasterio raises CRSError; keep the message for the user
        raise InputError(f"The CRS of {what} cannot be read: {exc}") from exc


def _check_crs(crs: CRS, what: str, year) -> None:
    problem = crs_utils.metric_problem(crs)
    if problem:
        raise InputError(
            f"Accuracy assessment {year}: {what} is in {crs_utils.describe(crs)}, which is {problem}; "
            "areas in m² and pixel sizes in metres need a projected CRS in metres. "
            "Reproject the predicted and reference polygons (and the grid raster) to the same "
            "projected CRS, e.g. the local UTM zone, and run the assessment again.")


# ---------------------------------------------------------------------------------------
# The assessment


def _positive(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def _open_grid(path, polygons_crs: CRS | None, year) -> Grid:
    try:
        with rasterio.open(path) as ds:
            r_crs, grid = ds.crs, Grid(ds.transform, ds.width, ds.height)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"Accuracy assessment {year}: the grid raster {path} cannot be read: {exc}") from exc
    if r_crs is not None:
        _check_crs(r_crs, f"the grid raster {path}", year)
        if polygons_crs is not None and r_crs != polygons_crs:
            raise InputError(
                f"Accuracy assessment {year}: the grid raster {path} is in {crs_utils.describe(r_crs)} "
                f"but the polygons are in {crs_utils.describe(polygons_crs)}; reproject the polygons "
                "to the raster's CRS first.")
    return grid


def _present(geoms: np.ndarray) -> np.ndarray:
    return geoms[~shapely.is_missing(geoms)]


def assess_year(predicted, reference, year: int, grid_raster: str | os.PathLike | None = None,
                pixel_size: float = 3.0, area=None, reporter: Reporter | None = None, *,
                crs=None, min_overlap_m2: float = 0.0) -> YearAssessment:
    """Pixel, object and inventory accuracy of one year's ``predicted`` polygons against
    ``reference`` polygons (shapely arrays, or VectorLayers whose CRS is then checked).

    ``grid_raster``: count pixels on this raster's grid, its nodata pixels excluded;
    otherwise on a ``pixel_size`` grid (snapped to multiples of it) over the inventories,
    or over ``area`` when given. ``area``: polygon(s) limiting the assessment. ``crs``:
    the inventories' CRS when known (anything rasterio's CRS accepts); a geographic,
    Web-Mercator or non-metre CRS is refused with an InputError.
    """
    reporter = reporter or Reporter()
    reporter.progress(0.0, f"Accuracy {year}: preparing polygons")
    pred_geoms, pred_crs = _layer_parts(predicted)
    ref_geoms, ref_crs = _layer_parts(reference)
    area_in, area_crs = _layer_parts(area)
    crs_objs = {what: _parse_crs(c, what) for what, c in
                (("the polygons", crs), ("the predicted polygons", pred_crs),
                 ("the reference polygons", ref_crs), ("the assessment area", area_crs))}
    known = {w: c for w, c in crs_objs.items() if c is not None}
    for what, c in known.items():
        _check_crs(c, what, year)
    the_crs = next(iter(known.values()), None)
    if any(c != the_crs for c in known.values()):
        listed = ", ".join(f"{w}: {crs_utils.describe(c)}" for w, c in known.items())
        raise InputError(f"Accuracy assessment {year}: the polygons are in different CRSs ({listed}); "
                         "reproject them to the same projected CRS first.")
    raster_grid = None
    if grid_raster is not None:
        raster_grid = _open_grid(grid_raster, the_crs, year)
        present = _present(np.concatenate([np.asarray(pred_geoms, dtype=object), np.asarray(ref_geoms, dtype=object)]))
        if len(present):
            gx0, gy0, gx1, gy1 = raster_grid.bounds
            px0, py0, px1, py1 = shapely.total_bounds(present)
            if not (gx0 < px1 and px0 < gx1 and gy0 < py1 and py0 < gy1):
                raise InputError(f"Accuracy assessment {year}: the grid raster {grid_raster} does not overlap the "
                                 "year's inventories, so no pixel could be scored; give the image these "
                                 "inventories were mapped on (or no grid raster).")
    elif not _positive(pixel_size):
        raise InputError(f"Accuracy assessment {year}: the pixel size must be a positive number "
                         f"of metres, not {pixel_size!r}.")

    pred, pred_fixed = repair_polygons(pred_geoms)
    ref, ref_fixed = repair_polygons(ref_geoms)
    notes: list[str] = []
    area_geoms = None
    if area is not None:
        area_geoms, area_fixed = repair_polygons(area_in)
        area_geoms = _present(area_geoms)
        if area_fixed.any():
            notes.append(f"{int(area_fixed.sum())} invalid assessment-area polygon(s) repaired.")
        if not len(area_geoms):
            raise InputError(f"Accuracy assessment {year}: the assessment area has no polygon "
                             "(it is empty or not polygonal).")
    for what, fixed, geoms in (("predicted", pred_fixed, pred), ("reference", ref_fixed, ref)):
        if fixed.any():
            notes.append(f"{int(fixed.sum())} invalid {what} polygon(s) repaired with make_valid.")
        dropped = int(np.count_nonzero(shapely.is_missing(geoms)))
        if dropped:
            notes.append(f"{dropped} {what} geometr{'y' if dropped == 1 else 'ies'} without area "
                         "(missing, empty or not polygonal) ignored.")

    reporter.progress(0.02, f"Accuracy {year}: matching objects")
    groups, p_table, r_table, summary = match_objects(pred, ref, area_geoms, min_overlap_m2)
    p_table.repaired, r_table.repaired = pred_fixed, ref_fixed
    inventory = {"reference": InventoryStats.of(r_table.area_m2[r_table.status != OUTSIDE]),
                 "predicted": InventoryStats.of(p_table.area_m2[p_table.status != OUTSIDE])}

    pix = reporter.sub(0.1, 1.0)
    pred_p, ref_p = _present(pred), _present(ref)
    if raster_grid is not None:
        grid = raster_grid
        scores = pixel_scores(grid_raster, pred_p, ref_p, area=area_geoms, reporter=pix)
        grid_info = {"source": "raster", "raster": str(grid_raster)}
    else:
        extent = area_geoms if area_geoms is not None else np.concatenate([pred_p, ref_p])
        grid = grid_for_bounds(shapely.total_bounds(extent) if len(extent) else (0, 0, 0, 0), pixel_size)
        if not len(extent):
            notes.append("Both inventories are empty: no pixel was counted.")
        scores = pixel_scores_on_grid(grid, pred_p, ref_p, area=area_geoms, reporter=pix)
        grid_info = {"source": "area" if area_geoms is not None else "extent"}
    grid_info.update(pixel_size=[abs(grid.transform.a), abs(grid.transform.e)], width=grid.width,
                     height=grid.height, bounds=list(grid.bounds), assessment_area=area_geoms is not None,
                     counted_pixels=scores.total,
                     crs=crs_utils.describe(the_crs) if the_crs is not None else None)
    return YearAssessment(int(year), scores, grid_info, summary, groups, p_table, r_table, inventory, notes)


def scatter_chart_data(assessments) -> dict:
    """Predicted-vs-reference area scatter (one point per matched group) for the charts.

    Besides the three parallel lists, each year carries ``overlap_m2`` (the predicted area
    inside the reference, per group) and, unpaired, the areas of missed references and of
    false alarms.
    """
    pairs = []
    for a in sorted(assessments, key=lambda a: a.year):
        pairs.append({"year": int(a.year),
                      "reference_m2": [g.reference_m2 for g in a.groups],
                      "predicted_m2": [g.predicted_m2 for g in a.groups],
                      "residual_m2": [g.residual_m2 for g in a.groups],
                      "overlap_m2": [g.overlap_m2 for g in a.groups],
                      "missed_reference_m2": a.reference.area_m2[a.reference.status == MISSED].tolist(),
                      "false_alarm_m2": a.predicted.area_m2[a.predicted.status == FALSE_ALARM].tolist()})
    return {"kind": "area_scatter", "title": "Predicted vs reference landslide area", "pairs": plain(pairs)}
