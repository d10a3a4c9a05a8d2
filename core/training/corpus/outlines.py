"""Real landslide outlines, taken out of published inventories to be placed anywhere.

The Wenchuan (China) and Rasuwa (Nepal) inventories of Bhuyan et al. (2023) hold about
14,000 polygons mapped on 3-5 m imagery: real source-runout shapes, elongated tongues,
lobed crowns, and a real frequency-area distribution. Each polygon is cleaned (repaired,
largest part, holes kept), moved to its centroid and simplified by 0.5 m (its own mapping
grid's staircase is not a landslide property). The library is split in two by place: the
**benchmark** set (all of Rasuwa, and the easternmost tenth of Wenchuan) is never used
for training scenes, so a benchmark scene holds shapes no model has seen.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
import shapely.affinity

from .backgrounds import data_root
from ...errors import InputError
from ...inventory.series import discover_years, read_inventory

INVENTORIES = ("bhuyan2023_inventories/China.zip", "bhuyan2023_inventories/Nepal.zip")
MIN_AREA_M2 = 150.0
BENCHMARK_EAST_FRACTION = 0.1      # of Wenchuan's x range, held out with all of Rasuwa
SETS = ("train", "benchmark", "all")


@dataclass
class OutlineLibrary:
    """Centred outlines (metres) with their areas and the length/width of their long axis."""

    shapes: np.ndarray          # shapely polygons centred on (0, 0)
    areas: np.ndarray
    elongation: np.ndarray      # long / short side of the minimum rotated rectangle
    axis: np.ndarray            # direction of the long side, radians
    source: list[str]

    def __len__(self) -> int:
        return len(self.shapes)

    def subset(self, idx: np.ndarray) -> "OutlineLibrary":
        return OutlineLibrary(self.shapes[idx], self.areas[idx], self.elongation[idx], self.axis[idx],
                              [self.source[i] for i in np.asarray(idx)])


def _axes(shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rects = shapely.oriented_envelope(shapes)
    coords = [np.asarray(r.exterior.coords)[:3] if r.geom_type == "Polygon" else np.zeros((3, 2))
              for r in rects]
    c = np.asarray(coords)
    e1, e2 = c[:, 1] - c[:, 0], c[:, 2] - c[:, 1]
    l1, l2 = np.hypot(*e1.T), np.hypot(*e2.T)
    long_vec = np.where((l1 >= l2)[:, None], e1, e2)
    elong = np.maximum(l1, l2) / np.maximum(np.minimum(l1, l2), 1e-6)
    return elong, np.arctan2(long_vec[:, 1], long_vec[:, 0])


def load_outlines(which: str = "train", root: str | os.PathLike | None = None) -> OutlineLibrary:
    """The outline set ``train``, ``benchmark`` or ``all`` (see the module note)."""
    if which not in SETS:
        raise InputError(f"Outline set must be one of {', '.join(SETS)}, not {which!r}.")
    base = data_root(root)
    shapes, sources, xs = [], [], []
    for rel in INVENTORIES:
        path = base / rel
        if not path.is_file():
            raise InputError(f"The landslide inventory {path} is missing (real data lives in ../shared/data).")
        region = Path(rel).stem
        for ref in discover_years(str(path)):
            geoms = read_inventory(ref).geometries          # repaired single polygons
            geoms = geoms[shapely.area(geoms) >= MIN_AREA_M2]
            shapes.append(geoms)
            sources += [f"{region} {ref.year}"] * len(geoms)
            xs.append(shapely.get_x(shapely.centroid(geoms)) if region == "China" else np.full(len(geoms), np.nan))
    geoms = np.concatenate(shapes)
    x = np.concatenate(xs)
    china = np.isfinite(x)
    lo, hi = x[china].min(), x[china].max()
    bench = ~china | (x > hi - BENCHMARK_EAST_FRACTION * (hi - lo))
    keep = {"train": ~bench, "benchmark": bench, "all": np.ones(len(geoms), bool)}[which]
    geoms = geoms[keep]
    sources = [s for s, k in zip(sources, keep) if k]
    centroids = shapely.centroid(geoms)
    centred = np.array([shapely.affinity.translate(g, -c.x, -c.y) for g, c in zip(geoms, centroids)],
                       dtype=object)
    centred = shapely.simplify(centred, 0.5, preserve_topology=True)
    elong, axis = _axes(centred)
    # deterministic order whatever the file system listed first
    order = np.lexsort((shapely.area(centred), np.array(sources)))
    lib = OutlineLibrary(centred[order], shapely.area(centred)[order], elong[order], axis[order],
                         [sources[i] for i in order])
    return lib


def place(shape, x: float, y: float, angle_deg: float, scale: float = 1.0):
    """An outline rotated about its centroid, scaled, and moved to (x, y)."""
    g = shapely.affinity.rotate(shape, angle_deg, origin=(0, 0))
    if scale != 1.0:
        g = shapely.affinity.scale(g, scale, scale, origin=(0, 0))
    return shapely.affinity.translate(g, x, y)
