"""How much does the pixel size matter? A held-out scene's event year, resampled.

Not a test. The event year of a held-out real-texture scene (3 m; by default the
eastern Dolomites, which the bundled model maps well, so that a loss shows) is resampled to
pixel sizes from 1 m to 12 m (average when coarsening, bilinear when refining) and mapped
twice: as it is (``resample off``) and with the default (``auto``: resampled back to
the model's training pixel sizes when more than ``RESAMPLE_TOLERANCE`` away). The pixel
F1 of the mapped polygons against the truth shows where the model starts to fail and
whether resampling recovers it; the factor in ``core/mapping/job.py`` comes from here.

    .venv/bin/python bench/pixel_size.py [--model auto] [--sizes 1,1.5,2,3,4.5,6,9,12]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402
from rasterio.warp import reproject  # noqa: E402

from real_scoring import map_scene, pixel_scores  # noqa: E402

from landslide_mapper.core.geodata.raster import compose  # noqa: E402
from landslide_mapper.core.mapping.bundled import AUTO  # noqa: E402
from landslide_mapper.core.training.corpus.composite import load_or_generate  # noqa: E402
from landslide_mapper.core.mapping.job import RESAMPLE_TOLERANCE  # noqa: E402
from landslide_mapper.core.training.corpus.pretrained import HELD_OUT, HELD_OUT_PLACE  # noqa: E402
from landslide_mapper.core.geodata.vector_io import read_layer  # noqa: E402


def resampled(src_path: str, px: float, out: Path) -> str:
    with rasterio.open(src_path) as src:
        f = px / src.res[0]
        w, h = int(round(src.width / f)), int(round(src.height / f))
        t = compose(src.transform, src.transform.scale(src.width / w, src.height / h))
        data = np.zeros((src.count, h, w), src.dtypes[0])
        reproject(src.read(), data, src_transform=src.transform, src_crs=src.crs, dst_transform=t,
                  dst_crs=src.crs, src_nodata=0, dst_nodata=0,
                  resampling=Resampling.average if f > 1 else Resampling.bilinear)
        profile = src.profile | dict(width=w, height=h, transform=t)
    path = out / f"event_{px:g}m.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("Blue", "Green", "Red", "NIR")
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=AUTO)
    ap.add_argument("--sizes", default="1,1.5,2,3,4.5,6,9,12")
    ap.add_argument("--work", default="bench_output/pixel_size")
    ap.add_argument("--scene", default="dolomites_east", choices=["dolomites_east", "zion"],
                    help="held-out scene (default: the one the bundled model maps, so a loss shows)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    spec = {"dolomites_east": HELD_OUT_PLACE, "zion": HELD_OUT}[args.scene]
    held = load_or_generate(Path("bench_output/real_texture") / args.scene, spec)
    year = spec.resolved_event_year
    truth = read_layer(held.truth_path, f"landslides_{year}").geometries
    rows = []
    for px in (float(v) for v in args.sizes.split(",")):
        path = resampled(held.rasters[year], px, work)
        row = {"pixel_size_m": px}
        for mode in ("off", "auto"):
            run = map_scene(args.model, {year: path}, work / "runs", f"px{px:g}_{mode}", resample=mode)
            y = run.years[0]
            row[mode] = pixel_scores(Path(run.run_dir) / y.probability,
                                     read_layer(run.geopackage, y.layer).geometries, truth)
            row[f"{mode}_mapped_at"] = y.pixel_size_m
        rows.append(row)
        print(json.dumps(row), flush=True)
    (work / "result.json").write_text(json.dumps(rows, indent=2))
    print(f"\nResampling tolerance in core/mapping/job.py: {RESAMPLE_TOLERANCE}\n")
    print("| image pixel | F1 mapped as it is | F1 with resample auto (mapped at) |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['pixel_size_m']:g} m | {r['off']['f1']:.3f} | {r['auto']['f1']:.3f} ({r['auto_mapped_at']:g} m) |")


if __name__ == "__main__":
    main()
