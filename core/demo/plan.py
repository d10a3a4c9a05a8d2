"""The scene's plan, vectors first: terrain, river, road, fields, and every landslide with
its parts, enlargements and recovery through the years (ScenePlan); one cached plan per
spec, and the elevation and slope of its terrain at points."""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon, box

from ..names import changes_layer, landslides_layer
from ..geodata.vector_io import VectorLayer
from .noise import _Fbm, _key, _rng, _spectrum
from .paths import least_cost_path, path_line
from .shapes import _crs_wkt, _layer, _LineDistance, _polygonal, sample_landslide_areas
from .spec import RENDER_RECOVERY, VISIBLE_RECOVERY, SceneSpec


@dataclass
class _Part:
    year: int
    geom: Polygon
    axis: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)  # cos, sin, centre, half-length along slope

    @classmethod
    def make(cls, year: int, geom: Polygon, theta: float) -> "_Part":
        ca, sa = math.cos(theta), math.sin(theta)
        xy = shapely.get_coordinates(geom)
        proj = xy[:, 0] * ca + xy[:, 1] * sa
        lo, hi = float(proj.min()), float(proj.max())
        return cls(year, geom, (ca, sa, 0.5 * (lo + hi), max(0.5 * (hi - lo), 1e-6)))


@dataclass
class _Landslide:
    ls_id: int
    theta: float  # downslope direction, radians from +x (east) counter-clockwise
    rate: float  # recovery rate k per year
    brightness: float
    nir_factor: float
    parts: list[_Part] = field(default_factory=list)

    def recovery(self, part: _Part, year: int) -> float:
        return 1.0 - math.exp(-self.rate * (year - part.year))

    def visible_parts(self, year: int) -> list[Polygon]:
        return [p.geom for p in self.parts if p.year <= year and self.recovery(p, year) < VISIBLE_RECOVERY]


@dataclass
class _Year:
    gain: np.ndarray
    offset: np.ndarray
    haze: float
    phen_r: float
    phen_nir: float
    clouds: list  # (row, col, radius_px) of cloud blobs
    shadow_shift: tuple[int, int]
    nodata: tuple | None  # (corner, threshold) of a diagonal nodata strip
    footprint: Polygon


class ScenePlan:
    """The vector and scalar description of a scene, shared by all its blocks and years."""

    def __init__(self, spec: SceneSpec):
        spec.validate()
        self.spec = spec
        self.px = float(spec.pixel_size)
        self.size = int(spec.size)
        self.ox, self.oy = spec.origin
        self.band_idx = [0, 1, 2, 3, 4] if spec.resolved_sensor() == "rapideye" else [0, 1, 2, 4]
        self.scene_box = box(*spec.extent)
        px = self.px
        top = int(np.clip(round(math.log2(3000.0 / px)), 3, 14))
        roll = int(np.clip(round(math.log2(100.0 / px)), 0, top - 1))
        s = spec.seed
        self.dem1 = _Fbm(_key(s, "dem1"), _spectrum(0, top, spec.hurst, roll, 1.8))
        self.dem2 = _Fbm(_key(s, "dem2"), _spectrum(roll, top - 1, spec.hurst, roll + 1, 1.5))
        self.vigour = _Fbm(_key(s, "vigour"), _spectrum(max(roll - 2, 1), top - 2, 0.6))
        self.texture = _Fbm(_key(s, "texture"), _spectrum(0, 2, 0.5))
        self.patch = _Fbm(_key(s, "patch"), _spectrum(1, max(roll, 2), 0.7))
        self.haze_noise = _Fbm(_key(s, "haze"), _spectrum(max(top - 3, 1), top, 0.5))
        self.cloud_noise = _Fbm(_key(s, "cloud"), _spectrum(0, max(roll + 2, 3), 0.35))
        self.relief_scale = spec.relief / 1000.0
        self.base_elevation = 1500.0
        self.river_hw = max(12.0, 2.5 * px)
        self.floor_w = self.river_hw + 25.0
        self.valley_w = self.floor_w + 300.0
        self.road_hw = 3.5
        self.river: LineString | None = None
        self.plane = (0.0, 0.0, 0.0)
        self._plan_river_and_road()
        self._plan_fields()
        self.rock_level = float(np.percentile(self._coarse_z, 85))
        self.landslides: list[_Landslide] = []
        self._plan_landslides()
        self.years = {y: self._plan_year(y) for y in spec.years}

    # -- coordinates ----------------------------------------------------------
    def to_pixel(self, x, y):
        return (self.oy - np.asarray(y, float)) / self.px - 0.5, (np.asarray(x, float) - self.ox) / self.px - 0.5

    def _raw_z_points(self, x, y, min_level=0):
        """DEM before the river valley is carved; |f2| adds sharp V-shaped ravines."""
        row, col = self.to_pixel(x, y)
        f1 = self.dem1.points(row, col, min_level)
        f2 = self.dem2.points(row, col, min_level)
        return self.base_elevation + self.relief_scale * (180.0 * f1 + 150.0 * np.abs(f2))

    def _plane_at(self, x, y):
        a, bx, by = self.plane
        return a + bx * (np.asarray(x) - self.ox) + by * (np.asarray(y) - self.oy)

    def _carve_weight(self, d):
        """0 on the valley floor, 1 beyond the valley: the river valley profile."""
        t = np.clip((np.asarray(d, float) - self.floor_w) / (self.valley_w - self.floor_w), 0, 1)
        return t * t * (3 - 2 * t)

    def elevation_at(self, x, y, min_level: int = 0) -> np.ndarray:
        x = np.asarray(x, float).ravel()
        y = np.asarray(y, float).ravel()
        z = self._raw_z_points(x, y, min_level=min_level)
        if self.river is None:
            return z
        d = self.river_distance(x, y)
        p = self._plane_at(x, y)
        return p + (z - p) * self._carve_weight(d)

    def gradient_at(self, x, y, h: float | None = None):
        """dz/dx, dz/dy by central differences of the carved DEM (step h, default 1 px)."""
        h = self.px if h is None else h
        x = np.asarray(x, float).ravel()
        y = np.asarray(y, float).ravel()
        xs = np.concatenate([x + h, x - h, x, x])
        ys = np.concatenate([y, y, y + h, y - h])
        z = self.elevation_at(xs, ys).reshape(4, -1)
        return (z[0] - z[1]) / (2 * h), (z[2] - z[3]) / (2 * h)

    # -- river and road -------------------------------------------------------
    def _coarse_grid(self):
        n = int(np.clip(self.size // 4, 32, 256))
        cs = self.size * self.px / n
        c = (np.arange(n) + 0.5) * cs
        xx, yy = np.meshgrid(self.ox + c, self.oy - c)
        return n, cs, xx, yy

    def _plan_river_and_road(self) -> None:
        n, cs, xx, yy = self._coarse_grid()
        min_level = max(0, int(math.log2(max(cs / self.px, 1.0))) - 1)
        z = self._raw_z_points(xx.ravel(), yy.ravel(), min_level=min_level).reshape(n, n)
        rng = _rng(self.spec.seed, "river")
        horizontal = bool(rng.integers(2))
        zn = (z - z.min()) / max(float(np.ptp(z)), 1e-6)
        cells = least_cost_path((0.02 + zn) ** 3, cs, horizontal)
        self.river = path_line(cells, cs, rng, True, (self.ox, self.oy), self.px)
        self.river_distance = _LineDistance(self.river, self.valley_w + 50.0)
        # A tilted plane through the river's course is the valley floor: no per-pixel
        # look-ups of the river profile are needed, so blocks stay independent.
        rx, ry = np.asarray(self.river.coords).T
        side = self.size * self.px
        inside = (rx > self.ox) & (rx < self.ox + side) & (ry < self.oy) & (ry > self.oy - side)
        rx, ry = rx[inside], ry[inside]
        rz = self._raw_z_points(rx, ry, min_level=min_level)
        a = np.stack([np.ones_like(rx), rx - self.ox, ry - self.oy], 1)
        coef, *_ = np.linalg.lstsq(a, rz, rcond=None)
        resid = rz - a @ coef
        self.plane = (float(coef[0] + np.percentile(resid, 25)), float(coef[1]), float(coef[2]))
        d = self.river_distance(xx, yy).reshape(n, n)
        p = self._plane_at(xx, yy)
        zc = p + (z - p) * self._carve_weight(d)
        self._coarse_z = zc
        gy, gx = np.gradient(zc, cs)
        tan = np.hypot(gx, gy)
        cost = 1.0 + (tan / 0.12) ** 2 + 60.0 * (d < self.floor_w + 15.0)
        cells = least_cost_path(cost, cs, horizontal)
        self.road = path_line(cells, cs, rng, False, (self.ox, self.oy), self.px)
        self.road_distance = _LineDistance(self.road, 200.0)
        self.river_zone = shapely.buffer(self.river, self.river_hw + 12.0)
        self.road_zone = shapely.buffer(self.road, self.road_hw + 4.0)
        shapely.prepare(self.river_zone)
        shapely.prepare(self.road_zone)

    # -- fields ---------------------------------------------------------------
    def _slope_deg(self, x, y, h=None):
        gx, gy = self.gradient_at(x, y, h)
        return np.degrees(np.arctan(np.hypot(gx, gy))), gx, gy

    def _plan_fields(self) -> None:
        rng = _rng(self.spec.seed, "fields")
        side = self.size * self.px
        n_clusters = max(1, int(round(self.spec.area_km2 * 2.0)))
        n_try = max(200, 25 * n_clusters)
        x = self.ox + rng.uniform(0, side, n_try)
        y = self.oy - rng.uniform(0, side, n_try)
        slope, gx, gy = self._slope_deg(x, y, 10.0)
        ok = (slope < 14.0) & (self.river_distance(x, y) > self.river_hw + 45.0) \
            & (self.road_distance(x, y) > self.road_hw + 15.0)
        polys = []
        for i in np.flatnonzero(ok)[:n_clusters]:
            along = math.atan2(gy[i], gx[i]) + math.pi / 2  # fields follow the contours
            ca, sa = math.cos(along), math.sin(along)
            nu, nv = int(rng.integers(2, 6)), int(rng.integers(2, 5))
            w, h = rng.uniform(25, 80), rng.uniform(20, 55)
            gap = rng.uniform(3, 7)
            for iu in range(nu):
                for iv in range(nv):
                    if rng.random() < 0.2:
                        continue
                    fw, fh = w * rng.uniform(0.7, 1.2), h * rng.uniform(0.7, 1.2)
                    u = (iu - nu / 2) * (w + gap)
                    v = (iv - nv / 2) * (h + gap)
                    cx, cy = x[i] + u * ca - v * sa, y[i] + u * sa + v * ca
                    corners = np.array([[0, 0], [fw, 0], [fw, fh], [0, fh]])
                    px_ = cx + corners[:, 0] * ca - corners[:, 1] * sa
                    py_ = cy + corners[:, 0] * sa + corners[:, 1] * ca
                    polys.append(Polygon(np.stack([px_, py_], 1)))
        polys = np.asarray(polys, dtype=object) if polys else np.empty(0, dtype=object)
        if len(polys):
            c = shapely.centroid(polys)
            cx, cy = shapely.get_x(c), shapely.get_y(c)
            slope, _, _ = self._slope_deg(cx, cy, 10.0)
            keep = (slope < 20.0) & ~shapely.intersects(self.river_zone, polys) \
                & ~shapely.intersects(self.road_zone, polys) & shapely.intersects(self.scene_box, polys)
            polys = polys[keep]
        self.fields = polys
        self.fields_tree = shapely.STRtree(polys)
        # per year: 0 green crop, 1 grass/fallow, 2 bare ploughed soil
        self.field_state = {}
        for y in self.spec.years:
            r = _rng(self.spec.seed, "field-state", y).random(len(polys))
            self.field_state[y] = np.where(r < 0.5, 0, np.where(r < 0.75, 1, 2))

    # -- landslides -----------------------------------------------------------
    def _candidates(self, rng: np.random.Generator, n: int):
        """Uniform points thinned with a probability that grows with slope."""
        side = self.size * self.px
        x = self.ox + rng.uniform(0, side, n)
        y = self.oy - rng.uniform(0, side, n)
        slope, gx, gy = self._slope_deg(x, y, 15.0)
        p = np.clip((slope - 15.0) / 25.0, 0, 1) ** 1.5
        keep = rng.random(n) < p
        keep &= self.river_distance(x, y) > self.river_hw + 20.0
        theta = np.arctan2(-gy, -gx)  # downslope
        return list(zip(x[keep], y[keep], theta[keep]))

    def _shape(self, rng: np.random.Generator, area: float, theta: float, cx: float, cy: float,
               aspect: float | None = None) -> Polygon:
        """Elongated, ragged teardrop: long axis downslope, wider crown upslope."""
        n = 72
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        aspect = float(np.clip(rng.lognormal(math.log(2.2), 0.3), 1.3, 5.0)) if aspect is None else aspect
        k = np.arange(2, 16)
        amp = rng.normal(0, 1, len(k)) * 0.16 / k ** 0.75
        phase = rng.uniform(0, 2 * np.pi, len(k))
        rho = 1.0 + amp @ np.cos(np.outer(k, t) + phase[:, None])  # ragged outline
        jitter = rng.normal(0, 0.05, n)
        rho *= 1 + 0.5 * jitter + 0.25 * (np.roll(jitter, 1) + np.roll(jitter, -1))
        rho = np.clip(rho, 0.45, 1.7)
        u = rho * np.cos(t)  # along slope: -1 crown (upslope) … +1 toe
        v = rho * np.sin(t) / aspect
        v *= np.clip(1.0 - rng.uniform(0.1, 0.6) * u, 0.25, None)
        poly = Polygon(np.stack([u, v], 1))
        if not poly.is_valid:
            poly = max(getattr(shapely.make_valid(poly), "geoms", [poly]), key=lambda g: g.area)
        c = poly.centroid
        s = math.sqrt(area / poly.area)  # exact target area: the power law is not distorted
        ca, sa = math.cos(theta), math.sin(theta)
        xy = shapely.get_coordinates(poly.exterior)
        uu = (xy[:, 0] - c.x) * s
        vv = (xy[:, 1] - c.y) * s
        return Polygon(np.stack([cx + uu * ca - vv * sa, cy + uu * sa + vv * ca], 1))

    def _plan_landslides(self) -> None:
        spec = self.spec
        first, last = spec.years[0], spec.years[-1]
        t0 = min(first, spec.event_year) - 5
        t1 = max(last, spec.event_year)
        a_min, a_max = spec.min_landslide_area, spec.effective_max_area()
        inner = self.scene_box.buffer(-self.px)
        shapely.prepare(inner)
        cell = 200.0
        index: dict[tuple[int, int], list[tuple[int, _Part]]] = {}

        def cells_of(g):
            x0, y0, x1, y1 = g.bounds
            return [(i, j) for i in range(int(x0 // cell), int(x1 // cell) + 1)
                    for j in range(int(y0 // cell), int(y1 // cell) + 1)]

        def conflicts(g, year, own=-1):
            if not inner.contains(g) or shapely.intersects(self.river_zone, g) \
                    or shapely.intersects(self.road_zone, g):
                return True
            seen = set()
            for c in cells_of(g):
                for j, part in index.get(c, ()):
                    if j == own or id(part) in seen:
                        continue
                    seen.add(id(part))
                    ls = self.landslides[j]
                    if part.year <= year and ls.recovery(part, year) < VISIBLE_RECOVERY and \
                            shapely.dwithin(part.geom, g, self.px):
                        return True
            return False

        def add(j, part):  # j: index in self.landslides (ls_id - 1)
            self.landslides[j].parts.append(part)
            for c in cells_of(part.geom):
                index.setdefault(c, []).append((j, part))

        for year in range(t0, t1 + 1):
            rng = _rng(spec.seed, "landslides", year)
            # enlargement of landslides that were visible the year before
            for j, ls in enumerate(list(self.landslides)):
                if not ls.visible_parts(year - 1) or rng.random() >= spec.enlarge_probability:
                    continue
                base = shapely.union_all(ls.visible_parts(year - 1))
                coords = np.asarray(shapely.get_coordinates(base))
                ca, sa = math.cos(ls.theta), math.sin(ls.theta)
                proj = coords[:, 0] * ca + coords[:, 1] * sa
                area = base.area * rng.uniform(0.25, 0.9)
                length = math.sqrt(area * 2.2)
                up = rng.random() < 0.5  # retrogression at the crown, or runout at the toe
                c = base.centroid
                c_proj = c.x * ca + c.y * sa
                shift = (proj.min() - c_proj - 0.3 * length) if up else (proj.max() - c_proj + 0.3 * length)
                lobe = self._shape(rng, area, ls.theta, c.x + shift * ca, c.y + shift * sa)
                if shapely.intersects(lobe, base) and not conflicts(lobe, year, own=j):
                    add(j, _Part.make(year, lobe, ls.theta))
            # new landslides
            rate = 1.0 if year == spec.event_year else spec.background_rate
            n_new = int(round(rate * spec.landslide_density * spec.area_km2))
            if n_new == 0:
                continue
            areas = sample_landslide_areas(rng, n_new, spec.powerlaw_alpha, a_min, a_max)
            pool: list = []
            for area in areas:
                for _ in range(40):
                    if not pool:
                        pool = self._candidates(rng, max(256, 8 * n_new))
                        if not pool:
                            break
                    cx, cy, theta = pool.pop()
                    g = self._shape(rng, float(area), float(theta), float(cx), float(cy))
                    if not conflicts(g, year):
                        # ids start at 1 so that 0 stays free for "no landslide" in label rasters
                        ls = _Landslide(len(self.landslides) + 1, float(theta), float(rng.uniform(0.12, 0.55)),
                                        float(rng.uniform(0.82, 1.18)), float(rng.uniform(0.9, 1.12)))
                        self.landslides.append(ls)
                        add(len(self.landslides) - 1, _Part.make(year, g, ls.theta))
                        break
        self._all_parts = [(ls, p) for ls in self.landslides for p in ls.parts]
        self._lock = threading.Lock()
        self._render_cache: dict = {}

    # -- per-year conditions --------------------------------------------------
    def _plan_year(self, year: int) -> _Year:
        spec = self.spec
        rng = _rng(spec.seed, "year", year)
        nb = len(self.band_idx)
        gain = (1.0 + rng.normal(0, 0.025) + rng.normal(0, 0.012, nb)).astype(np.float32)
        offset = rng.normal(0, 15, nb).astype(np.float32)
        haze = float(rng.uniform(0.4, 1.0) if rng.random() < 0.35 else rng.uniform(0, 0.15))
        phen_r = float(rng.normal(1.0, 0.06))
        phen_nir = float(rng.normal(1.0, 0.04))
        clouds = []
        az, el = math.radians(spec.sun_azimuth), math.radians(spec.sun_elevation)
        dist = 1500.0 / math.tan(el) / self.px
        shift = (int(round(-dist * math.cos(az))), int(round(dist * math.sin(az))))
        if year in spec.resolved_cloud_years():
            area_px = self.size ** 2
            target = spec.cloud_cover * area_px
            total = 0.0
            while total < target:
                r = rng.uniform(60, 320) / self.px * max(1.0, self.size / 2048) ** 0.3
                cr, cc = rng.uniform(0, self.size, 2)
                for _ in range(int(rng.integers(4, 11))):
                    dr, dc = rng.normal(0, 1.1 * r, 2)
                    clouds.append((cr + dr, cc + dc, r * rng.uniform(0.3, 0.8)))
                total += 1.3 * math.pi * r * r
        footprint = self.scene_box
        nodata = None
        if year in spec.resolved_nodata_years():
            corner = int(rng.integers(4))
            t = math.floor(rng.uniform(0.25, 0.5) * self.size) + 0.5  # never on a pixel centre
            nodata = (corner, t)
            cx = self.ox if corner in (0, 3) else self.ox + self.size * self.px
            cy = self.oy if corner in (0, 1) else self.oy - self.size * self.px
            sx = 1 if corner in (0, 3) else -1
            sy = -1 if corner in (0, 1) else 1
            tri = Polygon([(cx, cy), (cx + sx * t * self.px, cy), (cx, cy + sy * t * self.px)])
            footprint = self.scene_box.difference(tri)
        return _Year(gain, offset, haze, phen_r, phen_nir, clouds, shift, nodata, footprint)

    # -- truth ----------------------------------------------------------------
    def truth(self) -> dict[str, VectorLayer]:
        """``landslides_<year>`` and ``new_<year>`` layers for every year of the spec."""
        spec = self.spec
        crs = _crs_wkt(spec.epsg)
        layers = {}
        prev: dict[int, tuple] = {}  # ls_id -> (visible part indices, union)
        for k, year in enumerate(spec.years):
            cur = {}
            for ls in self.landslides:
                idx = tuple(j for j, p in enumerate(ls.parts)
                            if p.year <= year and ls.recovery(p, year) < VISIBLE_RECOVERY)
                if idx:
                    old = prev.get(ls.ls_id)
                    same = old is not None and old[0] == idx
                    cur[ls.ls_id] = (idx, old[1] if same else shapely.union_all([ls.parts[j].geom for j in idx]))
            fp = self.years[year].footprint
            full_fp = fp.equals(self.scene_box)  # landslides lie inside the scene by construction
            ids, geoms, areas = [], [], []
            for i, (_, g) in cur.items():
                g = _polygonal(g if full_fp else g.intersection(fp))
                if g is not None:
                    ids.append(i), geoms.append(g), areas.append(g.area)
            layers[landslides_layer(year)] = _layer(geoms, ids, year, areas, crs)
            ids, geoms, areas, change = [], [], [], []
            for i, (idx, g) in cur.items():
                if k > 0 and i in prev:
                    if set(idx) <= set(prev[i][0]):
                        continue  # parts only healed: nothing new
                    g = _polygonal(g.difference(prev[i][1]), min_area=0.25 * self.px * self.px)
                    kind = "enlarged"
                else:
                    kind = "new"
                if g is not None and not full_fp:
                    g = _polygonal(g.intersection(fp))
                if g is not None:
                    ids.append(i), geoms.append(g), areas.append(g.area), change.append(kind)
            lay = _layer(geoms, ids, year, areas, crs)
            lay.fields["change"] = np.asarray(change, dtype=str) if change else np.asarray([], dtype="<U8")
            layers[changes_layer(year)] = lay
            prev = cur
        return layers

    def render_parts(self, year: int):
        """Scar parts drawn in ``year``, most recovered first so that fresher ones win
        where parts overlap (that keeps every truth pixel a visible scar), plus an
        STRtree over them."""
        with self._lock:
            cached = self._render_cache.get(year)
            if cached is None:
                items = []
                for ls, p in self._all_parts:
                    if p.year <= year:
                        r = ls.recovery(p, year)
                        if r < RENDER_RECOVERY:
                            items.append((r, ls.ls_id, p.year, ls, p))
                items.sort(key=lambda t: (-t[0], t[1], t[2]))
                geoms = np.asarray([it[4].geom for it in items], dtype=object) if items else np.empty(0, object)
                cached = (items, geoms, shapely.STRtree(geoms))
                self._render_cache[year] = cached
            return cached


_PLAN_CACHE: dict[str, ScenePlan] = {}


def plan_scene(spec: SceneSpec) -> ScenePlan:
    """The scene's vectors (river, road, fields, landslide history); cached per spec."""
    k = json.dumps(spec.to_dict(), sort_keys=True)
    plan = _PLAN_CACHE.get(k)
    if plan is None:
        plan = ScenePlan(spec)
        if len(_PLAN_CACHE) >= 4:
            _PLAN_CACHE.pop(next(iter(_PLAN_CACHE)))
        _PLAN_CACHE[k] = plan
    return plan


def elevation_at(spec: SceneSpec, x, y) -> np.ndarray:
    """DEM elevation (m) at map coordinates, the same surface the rasters are shaded with."""
    return plan_scene(spec).elevation_at(x, y)


def slope_at(spec: SceneSpec, x, y) -> np.ndarray:
    """Slope in degrees at map coordinates (central differences over one pixel)."""
    gx, gy = plan_scene(spec).gradient_at(x, y)
    return np.degrees(np.arctan(np.hypot(gx, gy)))
