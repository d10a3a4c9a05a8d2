"""Multi-year training and benchmark scenes: real landslide outlines on real imagery.

A scene is one real background (:mod:`backgrounds`) seen over several years, with
landslide scars burned into it from real outlines (:mod:`outlines`). Everything random
is drawn from generators seeded by ``(spec.seed, purpose, landslide id)``, so a scene is
a pure function of its spec and the data files.

What a scar looks like is :mod:`scars`' business (spectrum, light, runout structure,
edges). Over time:

* **Time**: a scar triggered in year e recovers as r = 1 − exp(−k (t − e)) towards a
  grass-like cover (NDVI rises); it is truth while r < 0.5 and still shows, fading,
  until r ≈ 0.95. Landslides of later years may enlarge by a lobe at crown or toe.

Per year the whole image also changes: the real yearly images where the background has
them (NAIP), otherwise a sensor gain per band, haze strongest in blue, a seasonal shift
of vegetation, up to one pixel of misregistration; some years carry clouds with their
shadows, or a nodata swath. Labels for training (``labels_<year>``) are the truth minus
what clouds hide. The background's own scree, bare fields, rivers, roads and towns are
never labelled: they are the look-alikes a model must learn to reject.
"""
from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.transform import Affine
from scipy import ndimage

from . import backgrounds as bgs
from . import scars
from ...names import changes_layer, landslides_layer
from .outlines import OutlineLibrary, load_outlines, place
from ...geodata.bands import ndvi as ndvi_of
from ...geodata.raster import apply_transform, compose
from ...geodata.vector_io import VectorLayer, write_geopackage
from .composite_spec import (_DESCRIPTIONS, _HAZE, _PRE_YEARS, CLOUD, GENERATOR_VERSION, RENDER_RECOVERY,
                             SCENE_JSON, SENSORS, TRUTH_NAME, VISIBLE_RECOVERY, CompositeManifest, CompositeSpec)

@dataclass
class _Part:
    geom: object           # shapely polygon in map coordinates
    year: int              # the year it failed
    k: float               # recovery rate per year

    def recovery(self, year: int) -> float:
        return 1.0 - math.exp(-self.k * (year - self.year)) if year >= self.year else -1.0


@dataclass
class _Landslide:
    id: int
    parts: list[_Part]
    look: dict             # appearance parameters


def _rng(seed: int, *parts) -> np.random.Generator:
    """A generator for one purpose of one scene: a stable function of the seed and ``parts``."""
    return np.random.default_rng([seed & 0xFFFFFFFF] + [zlib.crc32(str(p).encode()) for p in parts])


@lru_cache(maxsize=4)
def _library(which: str, root: str | None) -> OutlineLibrary:
    return load_outlines(which, root)


class _Scene:
    """Planning and rendering of one scene."""

    def __init__(self, spec: CompositeSpec, root: str | None):
        self.spec, self.root = spec, root
        self.bg = bgs.get(spec.background)
        self.px = spec.resolved_pixel_size
        u = self.bg.upsample(self.px)
        full_w, full_h = bgs.native_size(spec.background, root)
        rx0, ry0, rx1, ry1 = spec.region
        ox, oy = int(round(rx0 * full_w)), int(round(ry0 * full_h))
        nat_w, nat_h = int(round(rx1 * full_w)) - ox, int(round(ry1 * full_h)) - oy
        rng = _rng(spec.seed, "crop")
        if spec.size is None:
            self.crop = (ox, oy, nat_w, nat_h)
        else:
            cw, ch = (min(n, int(math.ceil(v / u))) for v, n in zip(spec.size, (nat_w, nat_h)))
            self.crop = (ox + int(rng.integers(0, nat_w - cw + 1)), oy + int(rng.integers(0, nat_h - ch + 1)), cw, ch)
        self.year_offset = int(rng.integers(0, len(self.bg.files)))
        first = self._background(0)
        self.crs = first.crs
        self.h, self.w = first.valid.shape
        if spec.size is not None:
            self.w, self.h = min(self.w, spec.size[0]), min(self.h, spec.size[1])
        self.transform = Affine(self.px, 0, first.origin[0], 0, -self.px, first.origin[1])
        self.first = self._fit(first)

    # -- inputs -------------------------------------------------------------------------
    def _background(self, k: int) -> bgs.BackgroundImage:
        img = bgs.load_background(self.spec.background, self.year_offset + k, self.px, self.crop, self.root)
        return self._fit(img) if hasattr(self, "h") else img

    def _fit(self, img: bgs.BackgroundImage) -> bgs.BackgroundImage:
        """Cut to the scene's size; with ``bare_ground`` strip the vegetation, with ``ground_tint``
        tint the ground (the same every year: one generator, one grid for all of them)."""
        img.reflectance, img.valid = img.reflectance[:, :self.h, :self.w], img.valid[:self.h, :self.w]
        if self.spec.bare_ground > 0:
            img.reflectance = bgs.strip_vegetation(img.reflectance, img.valid, self.spec.bare_ground,
                                                   _rng(self.spec.seed, "bare ground"))
        if self.spec.ground_tint > 0:
            img.reflectance = bgs.tint(img.reflectance, img.valid, self.spec.ground_tint,
                                       _rng(self.spec.seed, "ground tint"))
        return img

    def _site_weights(self, refl: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Where landslides may start: land, not water, more likely on rough (relief) ground."""
        b, g, r, nir = refl
        ndvi = ndvi_of(r, nir)
        water = bgs.water_mask(refl)
        lum = (b + g + r) / 3
        rough = ndimage.uniform_filter(lum * lum, 9) - ndimage.uniform_filter(lum, 9) ** 2
        rough = np.sqrt(np.maximum(rough, 0))
        rough = rough / (np.percentile(rough[valid], 90) + 1e-6) if valid.any() else rough
        veg = np.clip((ndvi - 0.1) / 0.4, 0, 1)
        w = (0.5 + veg) * (0.6 + 0.4 * np.clip(rough, 0, 1.5)) * valid * ~water
        return ndimage.minimum_filter(w, 5)   # keep clear of water edges and nodata

    # -- plan -----------------------------------------------------------------------------
    def plan(self) -> list[_Landslide]:
        spec = self.spec
        lib = _library(spec.outlines, self.root)
        weights = self._site_weights(self.first.reflectance, self.first.valid)
        flat = weights.ravel() / weights.sum()
        area_km2 = self.h * self.w * self.px ** 2 / 1e6
        max_area = spec.max_area_fraction * area_km2 * 1e6
        usable = np.flatnonzero(lib.areas <= max_area)
        occupied = np.zeros((self.h, self.w), bool)
        first_year = spec.years[0]
        history = list(range(first_year - _PRE_YEARS, first_year)) + list(spec.years)
        slides: list[_Landslide] = []
        rng = _rng(spec.seed, "plan")
        for year in history:
            rate = spec.event_density if year == spec.resolved_event_year else spec.background_rate
            n = rng.poisson(rate * area_km2)
            for _ in range(n):
                for _attempt in range(12):
                    idx = int(rng.choice(usable))
                    cell = int(rng.choice(flat.size, p=flat))
                    r, c = divmod(cell, self.w)
                    x, y = apply_transform(self.transform, c + 0.5, r + 0.5)
                    geom = place(lib.shapes[idx], x, y, float(rng.uniform(0, 360)), float(rng.uniform(0.8, 1.25)))
                    mask, win = self._burn(geom, pad=2)
                    if mask is None or (occupied[win] & mask).any():
                        continue
                    occupied[win] |= ndimage.binary_dilation(mask, iterations=2)
                    sid = len(slides)
                    look = scars.draw_look(_rng(spec.seed, "look", sid))
                    slides.append(_Landslide(sid, [_Part(geom, year, look["k"])], look))
                    break
            # enlargements of visible landslides (not in the pre-history: keeps the first year plain)
            if year > first_year:
                for s in slides:
                    if s.parts[0].year < year and s.parts[-1].recovery(year) < VISIBLE_RECOVERY \
                            and rng.random() < spec.enlarge_probability:
                        lobe = self._lobe(s, lib, usable, rng, year)
                        if lobe is not None:
                            mask, win = self._burn(lobe, pad=2)
                            own = ndimage.binary_dilation(self._burn_at(s, win), iterations=3) \
                                if mask is not None else None
                            if mask is not None and not (occupied[win] & mask & ~own).any():
                                occupied[win] |= mask
                                s.parts.append(_Part(lobe, year, s.look["k"]))
        return slides

    def _lobe(self, s: _Landslide, lib, usable, rng, year):
        whole = shapely.union_all([p.geom for p in s.parts])
        idx = int(rng.choice(usable))
        target = float(rng.uniform(0.15, 0.5)) * whole.area
        scale = math.sqrt(target / max(lib.areas[idx], 1.0))
        b = shapely.minimum_rotated_rectangle(whole)
        ring = np.asarray(b.exterior.coords)[:4] if b.geom_type == "Polygon" else None
        if ring is None:
            return None
        mids = (ring + np.roll(ring, -1, axis=0)) / 2
        x, y = mids[int(rng.integers(0, 4))]
        lobe = place(lib.shapes[idx], float(x), float(y), float(rng.uniform(0, 360)), min(scale, 1.5))
        part = shapely.difference(lobe, whole)
        part = max(shapely.get_parts(part), key=lambda g: g.area, default=None) if not part.is_empty else None
        if part is None or part.area < 9 * self.px ** 2 or not part.intersects(whole.buffer(self.px)):
            return None
        return part

    # -- rasters ------------------------------------------------------------------------
    def _window(self, geom, pad: int):
        inv = ~self.transform
        x0, y0, x1, y1 = geom.bounds
        c0, r0 = apply_transform(inv, x0, y1)
        c1, r1 = apply_transform(inv, x1, y0)
        c0, r0 = max(0, int(math.floor(c0)) - pad), max(0, int(math.floor(r0)) - pad)
        c1, r1 = min(self.w, int(math.ceil(c1)) + pad), min(self.h, int(math.ceil(r1)) + pad)
        if c1 <= c0 or r1 <= r0:
            return None
        return (slice(r0, r1), slice(c0, c1))

    def _burn(self, geom, pad: int = 0, win=None):
        win = win or self._window(geom, pad)
        if win is None:
            return None, None
        t = compose(self.transform, Affine.translation(win[1].start, win[0].start))
        shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        m = rasterio.features.rasterize([(geom, 1)], out_shape=shape, transform=t, fill=0,
                                        all_touched=False, dtype="uint8").astype(bool)
        return (m, win) if m.any() else (None, None)

    def _burn_at(self, s: _Landslide, win) -> np.ndarray:
        t = compose(self.transform, Affine.translation(win[1].start, win[0].start))
        shape = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        return rasterio.features.rasterize([(p.geom, 1) for p in s.parts], out_shape=shape, transform=t,
                                           fill=0, dtype="uint8").astype(bool)

    def _scar(self, s: _Landslide, index: int, win, ground: np.ndarray, shade: np.ndarray):
        """(alpha (h, w), scar reflectance (4, h, w)) of part ``index`` of ``s`` in window ``win``."""
        inside, _ = self._burn(s.parts[index].geom, win=win)
        if inside is None:
            return None, None
        angle = scars.long_axis_angle(shapely.union_all([p.geom for p in s.parts]))
        return scars.edge_alpha(inside, s.look["softness"]), scars.scar_reflectance(
            s.look, index, inside, angle, ground, shade)

    def render(self, k: int, year: int, slides: list[_Landslide]):
        """The year's reflectance, valid mask and cloud opacity."""
        spec = self.spec
        img = self._background(k) if len(self.bg.files) > 1 or k == 0 else self._background(0)
        refl, valid = img.reflectance.copy(), img.valid.copy()
        rng = _rng(spec.seed, "year", year)
        if len(self.bg.files) == 1 and k > 0:   # single-date ground: misregistration between years
            dy, dx = (int(v) for v in rng.integers(-1, 2, 2))
            refl = np.roll(refl, (dy, dx), axis=(1, 2))
        lum = refl[:3].mean(0)
        smooth = ndimage.gaussian_filter(lum, 6)
        med = float(np.median(smooth[valid])) if valid.any() else 1.0
        shade = np.clip((smooth / max(med, 1e-4)) ** 0.35, 0.6, 1.25).astype(np.float32)
        for s in slides:
            for index, part in enumerate(s.parts):
                r = part.recovery(year)
                if r < 0 or r >= RENDER_RECOVERY:
                    continue
                win = self._window(part.geom, pad=3)
                if win is None:
                    continue
                ground = refl[(slice(None),) + win]
                alpha, scar = self._scar(s, index, win, ground, shade[win])
                if alpha is None:
                    continue
                cover = scars.recovered(scar, ground, shade[win], r)
                refl[(slice(None),) + win] = ground * (1 - alpha) + cover * alpha
        refl = self._year_radiometry(refl, valid, k, rng)
        opacity = self._clouds(rng) if k > 0 and rng.random() < spec.cloud_probability else None
        if opacity is not None:
            shift = (int(rng.integers(12, 40)), int(rng.integers(-40, 40)))
            shadow = np.roll(opacity, shift, axis=(0, 1))
            refl *= 1 - 0.55 * shadow[None]
            cloud = CLOUD[:, None, None] * (1 + 0.1 * scars.noise(opacity.shape, rng, (4.0,)))
            refl = refl * (1 - opacity[None]) + cloud * opacity[None]
        if rng.random() < spec.nodata_probability:
            valid &= ~self._swath(rng)
        # the sensor's point-spread function blurs scars and ground alike: no sharpness cue
        sigma = float(rng.uniform(0.3, 0.7))
        refl = ndimage.gaussian_filter(refl, (0, sigma, sigma), mode="nearest")
        noise = rng.standard_normal(refl.shape).astype(np.float32) * (0.002 + 0.01 * refl)
        refl = np.clip(refl + noise, 0.0005, 1.5)
        refl[:, ~valid] = 0
        return refl, valid, opacity

    def _year_radiometry(self, refl, valid, k: int, rng) -> np.ndarray:
        real_years = len(self.bg.files) > 1
        spread = 0.03 if real_years else 0.07
        gain = np.exp(rng.normal(0, spread) + rng.normal(0, spread / 2, 4)).astype(np.float32)
        haze = float(rng.uniform(0, 0.02)) * _HAZE
        out = refl * gain[:, None, None] + haze[:, None, None]
        if not real_years and k > 0:             # seasonal state of the vegetation
            v = bgs.vegetation_cover(refl[2], refl[3])
            out[3] *= 1 + v * float(rng.uniform(-0.12, 0.1))
            out[2] *= 1 + v * float(rng.uniform(-0.1, 0.2))
        return out

    def _clouds(self, rng) -> np.ndarray:
        field_ = scars.noise((self.h, self.w), rng, (60.0, 30.0, 8.0))
        cover = float(rng.uniform(0.03, 0.15))
        cut = np.quantile(field_, 1 - cover)
        return np.clip((field_ - cut) / 0.6, 0, 1).astype(np.float32)

    def _swath(self, rng) -> np.ndarray:
        rows, cols = np.mgrid[0:self.h, 0:self.w]
        angle = rng.uniform(0, 2 * math.pi)
        d = cols * math.cos(angle) + rows * math.sin(angle)
        return d > np.quantile(d, 1 - rng.uniform(0.05, 0.25))


def _polygons_of(mask: np.ndarray, transform) -> object:
    shapes = [shapely.geometry.shape(g) for g, v in rasterio.features.shapes(mask.astype(np.uint8), mask=mask,
                                                                               transform=transform) if v]
    return shapely.union_all(shapes) if shapes else shapely.Polygon()


def _layer(geoms: list, fields: dict, crs_wkt: str) -> VectorLayer:
    arr = np.asarray(geoms, dtype=object) if geoms else np.empty(0, dtype=object)
    return VectorLayer(arr, {k: np.asarray(v) for k, v in fields.items()}, crs_wkt)


def _write_raster(path: Path, refl: np.ndarray, valid: np.ndarray, scene: _Scene, rng) -> None:
    sensor = scene.spec.sensor
    _, names, dtype = SENSORS[sensor]
    b, g, r, nir = refl
    bands = {"B": b, "G": g, "R": r, "NIR": nir, "RE": r + 0.35 * (nir - r)}
    stack = np.stack([bands[n] for n in names])
    if dtype == "uint16":
        data = np.clip(np.round(stack * 10000), 1, 65535).astype(np.uint16)
    else:  # visual product: a per-image stretch and gamma, as 8-bit RGB products are made
        lo = np.percentile(stack[:, valid], 1) if valid.any() else 0.0
        hi = np.percentile(stack[:, valid], 99.5) if valid.any() else 1.0
        gamma = float(rng.uniform(0.6, 0.9))
        data = np.clip(255 * np.clip((stack - lo) / max(hi - lo, 1e-4), 0, 1) ** gamma, 1, 255).astype(np.uint8)
    data[:, ~valid] = 0
    profile = dict(driver="GTiff", width=scene.w, height=scene.h, count=len(names), dtype=dtype,
                   crs=scene.crs, transform=scene.transform, nodata=0, tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate", predictor=2)
    tmp = path.with_name("." + path.name + ".partial")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        for i, n in enumerate(names, 1):
            dst.set_band_description(i, _DESCRIPTIONS[n])
        if sensor == "visual":
            from rasterio.enums import ColorInterp
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    os.replace(tmp, path)


def generate_composite(directory: str | os.PathLike, spec: CompositeSpec, root: str | os.PathLike | None = None,
                       progress=None) -> CompositeManifest:
    """Write the scene's yearly GeoTIFFs, ``truth.gpkg`` and ``scene.json`` into ``directory``.

    truth.gpkg layers: ``landslides_<year>`` (what is on the ground and visible, r < 0.5),
    ``labels_<year>`` (the same minus what clouds hide: training labels), ``new_<year>`` (new
    landslides and enlargement lobes of that year, from the second year on), ``scars_<year>``
    (every scar part burned in, healing ones included, with its recovery)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda f, m: None)
    scene = _Scene(spec, str(root) if root else None)
    slides = scene.plan()
    wkt = scene.crs.to_wkt()
    layers, rasters, counts, new_counts = {}, {}, {}, {}
    _, names, _ = SENSORS[spec.sensor]
    for k, year in enumerate(spec.years):
        progress(k / len(spec.years), f"rendering {year}")
        refl, valid, opacity = scene.render(k, year, slides)
        footprint = _polygons_of(valid, scene.transform)
        path = out / f"scene_{year}.tif"
        _write_raster(path, refl, valid, scene, _rng(spec.seed, "write", year))
        rasters[year] = str(path)
        truth, ids, areas, firsts = [], [], [], []
        for s in slides:
            parts = [p.geom for p in s.parts if 0 <= p.recovery(year) < VISIBLE_RECOVERY]
            if not parts:
                continue
            g = shapely.intersection(shapely.union_all(parts), footprint)
            for piece in shapely.get_parts(g):
                if piece.geom_type == "Polygon" and piece.area > 0:
                    truth.append(piece), ids.append(s.id), areas.append(piece.area), firsts.append(s.parts[0].year)
        scars, scar_ids, scar_rec = [], [], []
        for s in slides:
            for p in s.parts:
                r = p.recovery(year)
                if 0 <= r < RENDER_RECOVERY:
                    scars.append(p.geom), scar_ids.append(s.id), scar_rec.append(round(r, 4))
        layers[f"scars_{year}"] = _layer(scars, {"landslide_id": scar_ids, "recovery": scar_rec}, wkt)
        fields = {"landslide_id": ids, "year": [year] * len(truth), "event_year": firsts, "area_m2": areas}
        layers[landslides_layer(year)] = _layer(truth, fields, wkt)
        counts[year] = len(truth)
        clouds = _polygons_of(opacity > 0.5, scene.transform) if opacity is not None else shapely.Polygon()
        labels = [shapely.difference(g, clouds) for g in truth] if not clouds.is_empty else truth
        keep = [i for i, g in enumerate(labels) if not g.is_empty]
        layers[f"labels_{year}"] = _layer([labels[i] for i in keep], {"landslide_id": [ids[i] for i in keep]}, wkt)
        if k > 0:
            new, change, nid = [], [], []
            for s in slides:
                for j, p in enumerate(s.parts):
                    if p.year == year:
                        g = shapely.intersection(p.geom, footprint)
                        if not g.is_empty:
                            new.append(g), change.append("new" if j == 0 else "enlarged"), nid.append(s.id)
            layers[changes_layer(year)] = _layer(new, {"landslide_id": nid, "change": change}, wkt)
            new_counts[year] = len(new)
    truth_path = out / TRUTH_NAME
    truth_path.unlink(missing_ok=True)
    write_geopackage(truth_path, layers)
    manifest = CompositeManifest(str(out.absolute()), spec, rasters, str(truth_path.absolute()), list(names),
                                 scene.px, scene.bg.texture_scale(scene.px), counts, new_counts)
    (out / SCENE_JSON).write_text(manifest.to_json() + "\n")
    progress(1.0, "scene written")
    return manifest


def load_or_generate(directory: str | os.PathLike, spec: CompositeSpec, root=None, progress=None) -> CompositeManifest:
    """The scene in ``directory`` if it was generated from the same spec, else a new one."""
    path = Path(directory) / SCENE_JSON
    if path.exists():
        try:
            m = CompositeManifest.load(directory)
            if m.spec == spec and m.generator_version == GENERATOR_VERSION and \
                    all(Path(p).exists() for p in m.rasters.values()):
                return m
        except (ValueError, KeyError, TypeError, OSError):
            pass
    return generate_composite(directory, spec, root, progress)
