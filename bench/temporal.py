"""Benchmark: temporal subtraction of the Wenchuan inventories, 2011 − 2009 (1,552 vs
10,335 features), three ways, each in a fresh subprocess so that peak RSS is its own:

  * ours:  core.inventory.subtraction.subtract_pair (STRtree bulk query, differences in vectorised
           rounds, sliver opening and minimum remnant area);
  * loop:  the straightforward per-polygon loop: every 2011 polygon against every 2009
           polygon (``intersects`` then ``difference``), then the same sliver opening and
           minimum area, one polygon at a time;
  * loop+index: the same loop, but candidates from an STRtree query per polygon (what a
           careful scalar implementation does);
  * raster: the papers' approach done right: rasterise both years at 3 m over their common
           extent, ``2011 & ~2009`` (their code subtracted in uint16, wrapping −1 to 65,535,
           and polygonised the background), polygonise, drop parts below the minimum area.

Reading the shapefiles is timed separately and excluded. Needs ../shared/data.

    .venv/bin/python bench/temporal.py [--repeat 5] [--skip-loop]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "bhuyan2023_inventories" / "China.zip"
PIXEL = 3.0


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load():
    from landslide_mapper.core.inventory.series import parse_layer_refs, read_series

    refs = [r for r in parse_layer_refs([str(DATA)]) if r.year in (2009, 2011)]
    t = time.perf_counter()
    prev, cur = read_series(refs)
    return prev, cur, time.perf_counter() - t


def method_ours(prev, cur, settings, repeat):
    from landslide_mapper.core.inventory.subtraction import subtract_pair

    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        change = subtract_pair(cur, prev, settings)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2], change.geometries


def _open_slivers(g, d, q):
    import shapely

    opened = shapely.buffer(shapely.buffer(g, -d, quad_segs=q), d, quad_segs=q)
    return shapely.intersection(g, shapely.buffer(opened, d, quad_segs=q))


def method_loop(prev, cur, settings, indexed: bool):
    import shapely

    p = list(prev.geometries)
    tree = shapely.STRtree(prev.geometries) if indexed else None
    out = []
    t = time.perf_counter()
    for g in cur.geometries:
        candidates = [p[j] for j in tree.query(g)] if indexed else p
        touched = False
        for other in candidates:
            if g.intersects(other):
                g = g.difference(other)
                touched = True
        if touched:
            g = _open_slivers(g, settings.sliver_buffer_m, settings.quad_segs)
        for part in getattr(g, "geoms", [g]):
            if part.geom_type == "Polygon" and part.area >= settings.min_remnant_m2:
                out.append(part)
    return time.perf_counter() - t, out


def method_raster(prev, cur, settings):
    import numpy as np
    import rasterio.features
    import shapely
    from rasterio.transform import from_origin

    t = time.perf_counter()
    b = np.vstack([shapely.bounds(prev.geometries), shapely.bounds(cur.geometries)])
    x0, y0 = np.floor(b[:, 0].min() / PIXEL) * PIXEL, np.floor(b[:, 1].min() / PIXEL) * PIXEL
    x1, y1 = np.ceil(b[:, 2].max() / PIXEL) * PIXEL, np.ceil(b[:, 3].max() / PIXEL) * PIXEL
    shape = (int(round((y1 - y0) / PIXEL)), int(round((x1 - x0) / PIXEL)))
    transform = from_origin(x0, y1, PIXEL, PIXEL)
    burn = lambda geoms: rasterio.features.rasterize(  # noqa: E731
        ((g, 1) for g in geoms), out_shape=shape, transform=transform, fill=0, dtype="uint8")
    diff = (burn(cur.geometries) & (burn(prev.geometries) ^ 1)).astype("uint8")
    polys = [shapely.geometry.shape(geom) for geom, _ in
             rasterio.features.shapes(diff, mask=diff.astype(bool), transform=transform, connectivity=8)]
    polys = [g for g in polys if g.area >= settings.min_remnant_m2]
    return time.perf_counter() - t, polys, shape


def child(method: str, repeat: int) -> None:
    import shapely

    from landslide_mapper.core.inventory.subtraction import SubtractionSettings

    prev, cur, read_s = load()
    settings = SubtractionSettings.for_pixel_size(PIXEL)
    extra = {}
    if method == "ours":
        seconds, geoms = method_ours(prev, cur, settings, repeat)
    elif method in ("loop", "loop+index"):
        seconds, geoms = method_loop(prev, cur, settings, indexed=method == "loop+index")
    else:
        seconds, geoms, shape = method_raster(prev, cur, settings)
        extra["grid"] = f"{shape[1]}×{shape[0]} px"
    import numpy as np

    geoms = np.asarray(geoms, dtype=object)
    print(json.dumps({"method": method, "seconds": seconds, "read_seconds": read_s,
                      "polygons": [len(prev), len(cur)], "parts": len(geoms),
                      "area_m2": float(shapely.area(geoms).sum()) if len(geoms) else 0.0,
                      "peak_rss_mb": peak_rss_mb(), **extra}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="runs of ours (median reported)")
    ap.add_argument("--skip-loop", action="store_true", help="skip the all-pairs loop (slow)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.repeat)
        return
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark needs ../shared/data (the Bhuyan et al. 2023 inventories).")
    methods = ["ours", "loop+index", "raster"] + ([] if args.skip_loop else ["loop"])
    results = []
    for m in methods:
        out = subprocess.run([sys.executable, __file__, "--child", m, "--repeat", str(args.repeat)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {m}: {results[-1]['seconds']:.2f} s", file=sys.stderr)
    ours = results[0]["seconds"]
    print(f"China 2011 − 2009: {results[0]['polygons'][1]:,} vs {results[0]['polygons'][0]:,} polygons "
          f"(read in {results[0]['read_seconds']:.2f} s, not counted)")
    print(f"{'method':>11} {'seconds':>9} {'× ours':>8} {'parts':>6} {'area m²':>12} {'peak RSS MB':>11}")
    for r in results:
        print(f"{r['method']:>11} {r['seconds']:>9.3f} {r['seconds'] / ours:>8.1f} {r['parts']:>6} "
              f"{r['area_m2']:>12,.0f} {r['peak_rss_mb']:>11.0f}" + (f"  ({r['grid']})" if "grid" in r else ""))
    out_dir = ROOT / "bench_output"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "temporal.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
