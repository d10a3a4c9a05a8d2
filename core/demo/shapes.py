"""Geometry helpers of the plan (resampled lines, distances to a line, polygonal parts,
layers) and the truncated power law of landslide areas."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import shapely
from shapely.geometry import LineString

from ..geodata.vector_io import VectorLayer


def _resample(pts: np.ndarray, step: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    if s[-1] <= 0:
        return pts
    t = np.linspace(0, s[-1], max(2, int(math.ceil(s[-1] / step)) + 1))
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], 1)


class _LineDistance:
    """Distance to a long polyline via an STRtree of its segments (shapely's direct
    distance scans every vertex for every point, which is far too slow here)."""

    def __init__(self, line: LineString, max_distance: float):
        self.max_distance = float(max_distance)
        xy = np.asarray(line.coords)
        self.segments = shapely.linestrings(np.stack([xy[:-1], xy[1:]], 1))
        self.tree = shapely.STRtree(self.segments)

    def __call__(self, x, y) -> np.ndarray:
        pts = shapely.points(np.asarray(x, float).ravel(), np.asarray(y, float).ravel())
        idx, dist = self.tree.query_nearest(pts, max_distance=self.max_distance, return_distance=True,
                                            all_matches=False)
        out = np.full(len(pts), np.inf)  # "farther than max_distance"
        out[idx[0]] = dist
        return out


def _crs_wkt(epsg: int) -> str:
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(int(epsg))
    return srs.ExportToWkt()


def _polygonal(g, min_area: float = 0.0):
    """Keep only the polygonal part of ``g`` (None if nothing of ``min_area`` is left)."""
    if g is None or g.is_empty:
        return None
    if g.geom_type in ("Polygon", "MultiPolygon"):
        out = g
    else:
        polys = [p for p in getattr(g, "geoms", []) if p.geom_type in ("Polygon", "MultiPolygon")]
        if not polys:
            return None
        out = shapely.union_all(polys)
    if min_area and out.geom_type == "MultiPolygon":
        keep = [p for p in out.geoms if p.area >= min_area]
        if not keep:
            return None
        out = keep[0] if len(keep) == 1 else shapely.MultiPolygon(keep)
    if out.is_empty or out.area <= min_area:
        return None
    return out


def _layer(geoms, ids, year, areas, crs) -> VectorLayer:
    return VectorLayer(
        np.asarray(geoms, dtype=object) if geoms else np.empty(0, dtype=object),
        {"ls_id": np.asarray(ids, np.int64), "year": np.full(len(ids), year, np.int64),
         "area_m2": np.asarray(areas, np.float64)},
        crs,
    )


def sample_landslide_areas(rng: np.random.Generator, n: int, alpha: float, a_min: float,
                           a_max: float | None = None) -> np.ndarray:
    """Areas from p(A) ∝ A^-alpha on [a_min, a_max] (inverse CDF of the truncated Pareto)."""
    u = rng.random(n)
    trunc = 0.0 if not a_max else (a_min / a_max) ** (alpha - 1.0)
    return a_min * (1.0 - u * (1.0 - trunc)) ** (-1.0 / (alpha - 1.0))


def fit_powerlaw_alpha(areas: Iterable[float], a_min: float) -> float:
    """Maximum-likelihood exponent of a Pareto tail above a_min (Clauset et al. 2009)."""
    a = np.asarray(list(areas), float)
    a = a[a >= a_min]
    if len(a) == 0:
        return float("nan")
    return float(1.0 + len(a) / np.sum(np.log(a / a_min)))
