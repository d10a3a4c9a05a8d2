"""Rendering one block of a year's image from the plan: terrain, cover, scars, haze, clouds
and their shadows, nodata."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import shapely
from shapely.geometry import box

from .noise import _HAZE, _colour, _hash2d, _key, _mix, _smoothstep
from .plan import ScenePlan, _Year
from .spec import _rasterize


def _edt_distance(line, r0, r1, c0, c1, halo, plan: ScenePlan) -> np.ndarray:
    """Distance in pixels from each pixel of the window to the rasterised line (≤ halo)."""
    from rasterio.transform import from_origin
    from scipy.ndimage import distance_transform_edt

    R0, R1, C0, C1 = r0 - halo, r1 + halo, c0 - halo, c1 + halo
    win = box(plan.ox + C0 * plan.px, plan.oy - R1 * plan.px, plan.ox + C1 * plan.px, plan.oy - R0 * plan.px)
    part = line.intersection(win.buffer(plan.px))
    h, w = r1 - r0, c1 - c0
    if part.is_empty:
        return np.full((h, w), np.float32(halo + 1))
    tr = from_origin(plan.ox + C0 * plan.px, plan.oy - R0 * plan.px, plan.px, plan.px)
    burned = _rasterize([part], out_shape=(R1 - R0, C1 - C0), transform=tr, fill=0, default_value=1,
                       all_touched=True, dtype="uint8")
    if not burned.any():
        return np.full((h, w), np.float32(halo + 1))
    d = distance_transform_edt(burned == 0).astype(np.float32)
    return np.minimum(d[halo:halo + h, halo:halo + w], np.float32(halo + 1))


def _near(geom, r0, r1, c0, c1, margin_m, plan: ScenePlan) -> bool:
    b = box(plan.ox + c0 * plan.px - margin_m, plan.oy - r1 * plan.px - margin_m,
            plan.ox + c1 * plan.px + margin_m, plan.oy - r0 * plan.px + margin_m)
    return bool(shapely.intersects(geom, b))


def _window_transform(plan: ScenePlan, r0: int, c0: int):
    from rasterio.transform import from_origin

    return from_origin(plan.ox + c0 * plan.px, plan.oy - r0 * plan.px, plan.px, plan.px)


def _cloud_opacity(plan: ScenePlan, yr: _Year, r0, r1, c0, c1):
    """Cloud opacity in [0, 1] on a window, or None where no cloud reaches it."""
    blobs = [(cr, cc, rad) for cr, cc, rad in yr.clouds
             if cr + 1.6 * rad > r0 and cr - 1.6 * rad < r1 and cc + 1.6 * rad > c0 and cc - 1.6 * rad < c1]
    if not blobs:
        return None
    h, w = r1 - r0, c1 - c0
    dens = np.zeros((h, w), np.float32)
    rows = np.arange(r0, r1, dtype=np.float32)
    cols = np.arange(c0, c1, dtype=np.float32)
    for cr, cc, rad in blobs:
        rad_ext = 1.6 * rad
        a0, a1 = max(r0, int(cr - rad_ext)), min(r1, int(cr + rad_ext) + 1)
        b0, b1 = max(c0, int(cc - rad_ext)), min(c1, int(cc + rad_ext) + 1)
        if a0 >= a1 or b0 >= b1:
            continue
        dy = ((rows[a0 - r0:a1 - r0] - np.float32(cr)) / np.float32(rad_ext))[:, None]
        dx = ((cols[b0 - c0:b1 - c0] - np.float32(cc)) / np.float32(rad_ext))[None, :]
        q = np.maximum(np.float32(1.0) - (dx * dx + dy * dy), np.float32(0.0))
        sub = dens[a0 - r0:a1 - r0, b0 - c0:b1 - c0]
        sub += (np.float32(1.0) - sub) * (q * q)  # union-like: stays in [0, 1]
    n = plan.cloud_noise.grid(r0, r1, c0, c1)
    # texture modulates the blobs multiplicatively, so there is no cloud far from a blob
    # (otherwise blocks without blobs would disagree with their neighbours)
    return _smoothstep(dens * (np.float32(0.8) + np.float32(0.6) * n), np.float32(0.12), np.float32(0.65))


def _nodata_mask(plan: ScenePlan, yr: _Year, r0, r1, c0, c1):
    if yr.nodata is None:
        return None
    corner, t = yr.nodata
    n = plan.size
    rows = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
    cols = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
    u = cols if corner in (0, 3) else n - cols
    v = rows if corner in (0, 1) else n - rows
    mask = (u + v) < t
    return mask if mask.any() else None


def render_block(plan: ScenePlan, r0: int, r1: int, c0: int, c1: int,
                 years: Sequence[int]) -> dict[int, np.ndarray]:
    """All requested years of one pixel window, as uint16 (bands, rows, cols) arrays."""
    spec = plan.spec
    px = plan.px
    h, w = r1 - r0, c1 - c0
    f32 = np.float32
    bands = plan.band_idx
    nb = len(bands)

    # terrain with a one-pixel halo for the slopes
    f1 = plan.dem1.grid(r0 - 1, r1 + 1, c0 - 1, c1 + 1)
    f2 = plan.dem2.grid(r0 - 1, r1 + 1, c0 - 1, c1 + 1)
    k = f32(plan.relief_scale)
    z = f32(plan.base_elevation) + k * (f32(180.0) * f1 + f32(150.0) * np.abs(f2))
    del f1, f2
    halo = int(math.ceil(plan.valley_w / px)) + 2
    if _near(plan.river, r0 - 1, r1 + 1, c0 - 1, c1 + 1, plan.valley_w + 2 * px, plan):
        d_river = _edt_distance(plan.river, r0 - 1, r1 + 1, c0 - 1, c1 + 1, halo, plan) * f32(px)
        a, bx, by = plan.plane
        xr = ((np.arange(c0 - 1, c1 + 1) + 0.5) * px).astype(np.float64)
        yr_ = (-(np.arange(r0 - 1, r1 + 1) + 0.5) * px).astype(np.float64)
        plane = (a + by * yr_[:, None] + bx * xr[None, :]).astype(np.float32)
        wgt = _smoothstep(d_river, f32(plan.floor_w), f32(plan.valley_w))
        # only where carved: (z - p) + p is not always z in floating point, and pixels
        # must not depend on whether their block happened to be near the river
        z = np.where(wgt < 1, plane + (z - plane) * wgt, z)
        d_river = d_river[1:-1, 1:-1]
    else:
        d_river = None
    # Horn's method; y points north (up the rows)
    inv = f32(1.0 / (8.0 * px))
    dzdx = ((z[:-2, 2:] + 2 * z[1:-1, 2:] + z[2:, 2:]) - (z[:-2, :-2] + 2 * z[1:-1, :-2] + z[2:, :-2])) * inv
    dzdy = ((z[:-2, :-2] + 2 * z[:-2, 1:-1] + z[:-2, 2:]) - (z[2:, :-2] + 2 * z[2:, 1:-1] + z[2:, 2:])) * inv
    zc = z[1:-1, 1:-1]
    del z
    az, el = math.radians(spec.sun_azimuth), math.radians(spec.sun_elevation)
    sx, sy, sz = f32(math.sin(az) * math.cos(el)), f32(math.cos(az) * math.cos(el)), f32(math.sin(el))
    norm = np.sqrt(f32(1.0) + dzdx * dzdx + dzdy * dzdy)
    illum = (sz - dzdx * sx - dzdy * sy) / norm
    tan_slope = np.sqrt(dzdx * dzdx + dzdy * dzdy)
    northness = -dzdy / norm  # > 0 on north-facing slopes (moister, denser forest)
    del dzdx, dzdy
    # direct light with a soft terminator ("cast-shadow-like" on slopes turned away),
    # plus diffuse sky light so shaded slopes are dark but not black
    direct = np.maximum(illum, 0) * _smoothstep(illum, f32(0.02), f32(0.25))
    topo = f32(0.22) + f32(0.78) * direct / sz
    del illum, direct, norm

    # land cover (static across years)
    vig = plan.vigour.grid(r0, r1, c0, c1)
    tex = plan.texture.grid(r0, r1, c0, c1)
    patch = plan.patch.grid(r0, r1, c0, c1)
    v = np.clip(f32(0.62) + f32(0.22) * vig + f32(0.25) * northness
                - f32(0.25) * _smoothstep(zc, f32(plan.rock_level - 100), f32(plan.rock_level + 150)), 0, 1)
    del vig, northness
    texture = f32(1.0) + f32(0.13) * tex
    rock = np.clip(_smoothstep(zc, f32(plan.rock_level - 20), f32(plan.rock_level + 60))
                   * _smoothstep(tan_slope, f32(0.5), f32(0.9)) * (f32(0.6) + f32(0.8) * patch), 0, 1)
    del tan_slope, zc
    dense, sparse = _colour("forest_dense", bands), _colour("forest_sparse", bands)

    field_lab = None
    if len(plan.fields):
        win = box(plan.ox + c0 * px, plan.oy - r1 * px, plan.ox + c1 * px, plan.oy - r0 * px)
        hit = np.sort(plan.fields_tree.query(win, predicate="intersects"))
        if len(hit):
            field_lab = _rasterize([(plan.fields[i], int(i) + 1) for i in hit], out_shape=(h, w),
                                  transform=_window_transform(plan, r0, c0), fill=0, dtype="int32")
            if not field_lab.any():
                field_lab = None

    water = bars = None
    if d_river is not None:
        bank = plan.river_hw * (f32(1.0) + f32(0.25) * patch)
        water = np.clip((bank - d_river) / f32(px) + f32(0.5), 0, 1)
        bar_zone = (d_river < bank + f32(22.0)) & (d_river > bank * f32(0.55))
        bars = np.where(bar_zone, _smoothstep(patch, f32(0.1), f32(0.5)), f32(0.0))
        bars = np.maximum(bars, _smoothstep(patch, f32(0.9), f32(1.3)) * (water > 0))
        water = water * (f32(1.0) - bars)
        if not water.any() and not bars.any():
            water = bars = None
    road = None
    road_halo = int(math.ceil(plan.road_hw / px)) + 3
    if _near(plan.road, r0, r1, c0, c1, plan.road_hw + 3 * px, plan):
        d_road = _edt_distance(plan.road, r0, r1, c0, c1, road_halo, plan)
        road = np.clip(f32(plan.road_hw / px + 0.5) - d_road, 0, 1)
        if not road.any():
            road = None

    out = {}
    win_tr = _window_transform(plan, r0, c0)
    win = box(plan.ox + c0 * px, plan.oy - r1 * px, plan.ox + c1 * px, plan.oy - r0 * px)
    rowsi = np.arange(r0, r1)
    colsi = np.arange(c0, c1)
    river_px = None if bars is None else np.nonzero((bars > 0) | (water > 0))
    road_px = None if road is None else np.nonzero(road > 0)
    for year in years:
        yr = plan.years[year]
        phen = np.ones(nb, np.float32)
        phen[2] = yr.phen_r
        phen[-1] = yr.phen_nir
        if nb == 5:
            phen[3] = 0.5 * (1 + yr.phen_nir)
        phen = phen[:, None, None]
        veg = (sparse + (dense - sparse) * v) * phen * texture
        img = veg + (_colour("rock", bands) * (f32(0.9) + f32(0.15) * patch) - veg) * rock
        if field_lab is not None:
            state = plan.field_state[year]
            lut = np.zeros((nb, len(plan.fields) + 1), np.float32)
            colours = [_colour("crop", bands) * phen, _colour("grass", bands) * phen, _colour("bare_field", bands)]
            for st in range(3):
                lut[:, np.flatnonzero(state == st) + 1] = colours[st][:, 0]
            m = np.nonzero(field_lab)
            img[:, m[0], m[1]] = lut[:, field_lab[m]] * (f32(1.0) + f32(0.05) * tex[m])
        # landslide scars, burned from exactly the truth polygons
        items, geoms, tree = plan.render_parts(year)
        if items:
            hit = np.sort(tree.query(win, predicate="intersects"))
            if len(hit):
                lab = _rasterize([(geoms[i], int(i) + 1) for i in hit], out_shape=(h, w), transform=win_tr,
                                fill=0, dtype="int32")
                m = np.nonzero(lab)
                if len(m[0]):
                    n_it = len(items) + 1
                    rec = np.zeros(n_it, np.float32)
                    bright = np.ones(n_it, np.float32)
                    nirf = np.ones(n_it, np.float32)
                    axis = np.zeros((4, n_it), np.float64)
                    axis[3] = 1.0
                    for i in hit:
                        rec[i + 1] = items[i][0]
                        bright[i + 1] = items[i][3].brightness
                        nirf[i + 1] = items[i][3].nir_factor
                        axis[:, i + 1] = items[i][4].axis
                    lm = lab[m]
                    # position along the slope: -1 at the crown (fresh, bright scarp), +1 at
                    # the toe (darker deposit mixed with uprooted vegetation)
                    xm = plan.ox + (m[1] + c0 + 0.5) * px
                    ym = plan.oy - (m[0] + r0 + 0.5) * px
                    u = ((xm * axis[0, lm] + ym * axis[1, lm] - axis[2, lm]) / axis[3, lm]).astype(np.float32)
                    u = np.minimum(np.maximum(u, f32(-1)), f32(1))
                    shade = f32(1.0) - f32(0.12) * u + f32(0.08) * tex[m] + f32(0.05) * patch[m]
                    scar = _colour("scar", bands)[:, :, 0] * bright[lm] * shade
                    scar[-1] *= nirf[lm]
                    if nb == 5:
                        scar[3] *= f32(0.5) + f32(0.5) * nirf[lm]
                    under = veg[:, m[0], m[1]]
                    mix = rec[lm] + (f32(1.0) - rec[lm]) * f32(0.1) * np.maximum(u, f32(0))
                    img[:, m[0], m[1]] = scar + (under - scar) * mix
        if river_px is not None:
            ii, jj = river_px
            sub = img[:, ii, jj]
            b_, w_ = bars[ii, jj], water[ii, jj]
            sub += (_colour("gravel", bands)[:, :, 0] * (f32(0.92) + f32(0.1) * tex[ii, jj]) - sub) * b_
            sub += (_colour("water", bands)[:, :, 0] * (f32(1.0) + f32(0.04) * patch[ii, jj]) - sub) * w_
            img[:, ii, jj] = sub
        if road_px is not None:
            ii, jj = road_px
            sub = img[:, ii, jj]
            img[:, ii, jj] = sub + (_colour("road", bands)[:, :, 0] - sub) * road[ii, jj]
        img *= topo
        # radiometry of the acquisition: gain, offset, haze
        if yr.haze > 0.01:
            haze = f32(yr.haze) * (f32(0.6) + f32(0.4) * plan.haze_noise.grid(r0, r1, c0, c1))
            img *= yr.gain[:, None, None] * (f32(1.0) - f32(0.08) * haze)
            path_radiance = np.asarray([_HAZE[b] for b in bands], np.float32)[:, None, None]
            img += yr.offset[:, None, None] + path_radiance * haze
        else:
            img *= yr.gain[:, None, None]
            img += yr.offset[:, None, None]
        # clouds and their shadows (the shadow falls away from the sun)
        if yr.clouds:
            dr, dc = yr.shadow_shift
            shadow = _cloud_opacity(plan, yr, r0 + dr, r1 + dr, c0 + dc, c1 + dc)
            if shadow is not None:
                img *= f32(1.0) - f32(0.6) * shadow
            op = _cloud_opacity(plan, yr, r0, r1, c0, c1)
            if op is not None:
                puff = plan.cloud_noise.grid(r0 + 7, r1 + 7, c0 + 7, c1 + 7)  # shifted: not the edge noise
                cloud = _colour("cloud", bands) * (f32(0.9) + f32(0.1) * puff)
                img += (cloud - img) * op
        # sensor noise from a per-pixel hash: independent of the block layout
        key = _key(spec.seed, "noise", year)
        h1 = _hash2d(rowsi, colsi, key)
        h2 = _mix(h1 ^ np.uint64(0xD1B54A32D192ED03))
        mask12 = np.uint64(0xFFF)
        for b in range(nb):
            sh = np.uint64(12 * b)
            u = ((h1 >> sh) & mask12).astype(np.float32) + ((h2 >> sh) & mask12).astype(np.float32)
            u -= f32(4095.0)
            u *= f32(1.0 / 4096.0)  # triangular on (-1, 1), std 0.41
            img[b] += u * (f32(20.0) + f32(0.02) * img[b])
        np.rint(img, out=img)
        np.maximum(img, f32(1.0), out=img)
        np.minimum(img, f32(65535.0), out=img)
        arr = img.astype(np.uint16)
        nd = _nodata_mask(plan, yr, r0, r1, c0, c1)
        if nd is not None:
            arr[:, nd] = 0
        out[year] = arr
    return out
