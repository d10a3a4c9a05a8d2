"""Benchmark: vectorising alone (core.mapping.vectorize.landslide_polygons) on a probability raster.

The raster is a smooth random field (Gaussian-filtered noise, rescaled to 0-1) thresholded
so that thousands of blobs of all sizes become polygons — the part of the pipeline that
bench/infer.py shows to dominate once the network is fast. Reports Mpx/s, polygons and
peak RSS, in a fresh process per size.

    .venv/bin/python bench/vectorize.py --sizes 4096 8192
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(size: int, threshold: float) -> dict:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from scipy import ndimage

    from landslide_mapper.core.mapping.vectorize import landslide_polygons

    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.random((size, size), dtype=np.float32), 6)
    field = (field - field.min()) / (field.max() - field.min())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prob.tif"
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32",
                           crs="EPSG:32645", transform=from_origin(300000, 3100000, 3, 3), nodata=-1.0,
                           tiled=True, blockxsize=256, blockysize=256, compress="deflate") as ds:
            ds.write(field, 1)
        del field
        start = time.perf_counter()
        layer = landslide_polygons(path, 2017, threshold, 200.0, "")
        seconds = time.perf_counter() - start
    return {"size": size, "seconds": round(seconds, 3), "mpx_per_s": round(size * size / seconds / 1e6, 2),
            "polygons": len(layer), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096])
    parser.add_argument("--threshold", type=float, default=0.62)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.threshold)))
        return
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--threshold", str(args.threshold)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
