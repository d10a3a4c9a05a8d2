"""Paths of a procedural scene (its river and road): the cheapest way across a cost grid,
then smoothed and made to meander like a real one."""
from __future__ import annotations

import math

import numpy as np
from shapely.geometry import LineString

from .shapes import _resample


def least_cost_path(cost: np.ndarray, cs: float, horizontal: bool) -> np.ndarray:
    """Cheapest 8-connected path from one side of the grid to the opposite side."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    n = cost.shape[0]
    idx = np.arange(n * n).reshape(n, n)
    src, dst, w = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = idx[0:n - dr, max(0, -dc):n - max(0, dc)]
        b = idx[dr:n, max(0, dc):n + min(0, dc)]
        length = cs * math.hypot(dr, dc)
        ww = length * 0.5 * (cost.ravel()[a.ravel()] + cost.ravel()[b.ravel()])
        src += [a.ravel(), b.ravel()]
        dst += [b.ravel(), a.ravel()]
        w += [ww, ww]
    g = coo_matrix((np.concatenate(w), (np.concatenate(src), np.concatenate(dst))), shape=(n * n, n * n))
    g = g.tocsr()
    starts = idx[:, 0] if horizontal else idx[0, :]
    ends = idx[:, -1] if horizontal else idx[-1, :]
    dist, pred, _ = dijkstra(g, indices=starts, min_only=True, return_predecessors=True)
    node = int(ends[np.argmin(dist[ends])])
    path = [node]
    while pred[node] >= 0:
        node = int(pred[node])
        path.append(node)
    path = np.asarray(path[::-1])
    return np.stack([path // n, path % n], 1)  # (row, col) cells

def path_line(cells: np.ndarray, cs: float, rng: np.random.Generator, meander: bool, origin: tuple[float, float],
              px: float) -> LineString:
    """A path of grid cells (of side ``cs`` from ``origin``, the top-left corner) made
    natural: Gaussian-smoothed, optionally meandering, extended beyond the scene edges so it
    never ends inside the image (``px``: the scene's pixel size)."""
    from scipy.ndimage import gaussian_filter1d

    ox, oy = origin
    pts = np.stack([ox + (cells[:, 1] + 0.5) * cs, oy - (cells[:, 0] + 0.5) * cs], 1)
    pts = _resample(pts, cs / 2)
    sigma = max(2.0, 60.0 / (cs / 2))  # at least ~60 m of smoothing
    pts = np.stack([gaussian_filter1d(pts[:, 0], sigma, mode="nearest"),
                    gaussian_filter1d(pts[:, 1], sigma, mode="nearest")], 1)
    step = max(px, min(cs / 2, 3 * px))
    pts = _resample(pts, step)
    if meander and len(pts) > 3:
        seg = np.diff(pts, axis=0)
        tang = np.vstack([seg, seg[-1:]])
        tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
        normal = np.stack([-tang[:, 1], tang[:, 0]], 1)
        s_ = np.concatenate([[0], np.cumsum(np.linalg.norm(seg, axis=1))])
        off = np.zeros(len(pts))
        for wl in (900.0, 420.0, 190.0):
            off += rng.uniform(0.5, 1.0) * wl * 0.06 * np.sin(2 * np.pi * s_ / wl + rng.uniform(0, 2 * np.pi))
        taper = np.clip(np.minimum(s_, s_[-1] - s_) / 200.0, 0, 1)
        pts = pts + normal * (off * taper)[:, None]
        pts = np.stack([gaussian_filter1d(pts[:, 0], 2.0, mode="nearest"),
                        gaussian_filter1d(pts[:, 1], 2.0, mode="nearest")], 1)
    ext = 3 * cs + 10 * px

    def extend(end, inner):
        d = end - inner
        return end + d / max(float(np.linalg.norm(d)), 1e-9) * ext

    k = min(3, len(pts) - 1)
    return LineString(np.vstack([extend(pts[0], pts[k]), pts, extend(pts[-1], pts[-1 - k])]))
