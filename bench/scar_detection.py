"""Which scars does a model miss? Detection per scar of a composited scene, by the scar's
brightness, its contrast to the ground around it and its colour.

Not a test. For one year of a scene made by ``core.training.corpus.composite`` (its
``truth.gpkg``) and a mapping run of that year (its probability raster), each true
landslide polygon of at least 20 px gets the share of its pixels at or above the run's
threshold; the shares are averaged per class of

* visible brightness: the mean of B, G, R inside the scar;
* contrast: that brightness over the brightness of a 4-px ring around the scar;
* colour: Fmask's whiteness inside the scar (``change_evidence.whiteness``;
  below 0.3 a neutral grey or white, above 0.5 a strongly coloured soil).

It also prints the ground's median B, G, R, NIR and NDVI. Used to find why the bundled
cascade fails on Zion's ground (README, "The bundled checkpoints").

    .venv/bin/python bench/scar_detection.py SCENE_DIR RUN_DIR YEAR
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
from scipy import ndimage

from landslide_mapper.core.geodata.bands import ndvi
from landslide_mapper.core.geodata.vector_io import read_layer
from landslide_mapper.core.inventory.change_evidence import whiteness
from landslide_mapper.core.names import landslides_layer

CLASSES = {
    "visible brightness": [0.0, 0.1, 0.15, 0.2, 0.3, 2.0],
    "contrast to the ring": [1.0, 1.5, 2.5, 4.0, 100.0],
    "whiteness": [0.0, 0.3, 0.5, 0.7, 3.0],
}


def per_scar(scene: Path, run: Path, year: int) -> dict:
    manifest = json.loads((scene / "scene.json").read_text())
    raster = scene / manifest["rasters"][str(year)]
    names = manifest["band_names"]
    summary = json.loads((run / "summary.json").read_text())
    entry = next(y for y in summary["years"] if y["year"] == year)
    with rasterio.open(raster) as src:
        img = src.read().astype(np.float32) / 10000.0
        transform = src.transform
    with rasterio.open(run / entry["probability"]) as src:
        raw = src.read(1)
        scale = 254.0 if src.dtypes[0] == "uint8" else 1.0
    mapped = (raw != 255 if scale == 254.0 else np.isfinite(raw)) & (raw / scale >= summary["threshold"])
    truth = read_layer(scene / manifest["truth"], landslides_layer(year)).geometries
    labels = rasterio.features.rasterize([(g, i + 1) for i, g in enumerate(truth)], out_shape=raw.shape,
                                         transform=transform, dtype="int32")
    b, g, r, nir = (img[names.index(c)] for c in ("B", "G", "R", "NIR"))
    vis = (b + g + r) / 3
    ring = ndimage.grey_dilation(labels, size=9) * (labels == 0)
    index = np.arange(1, len(truth) + 1)
    size = ndimage.sum(np.ones_like(vis), labels, index)
    keep = size >= 20
    brightness = ndimage.mean(vis, labels, index)
    with np.errstate(invalid="ignore"):      # a scar wholly covered by its neighbours has no ring
        around = ndimage.mean(vis, ring, index)
    measures = {"visible brightness": brightness, "contrast to the ring": brightness / np.maximum(around, 1e-3),
                "whiteness": ndimage.mean(np.nan_to_num(whiteness(b, g, r)), labels, index)}
    found = ndimage.mean(mapped, labels, index)
    out = {"scars": int(keep.sum()), "found": round(float(found[keep].mean()), 3), "classes": {}}
    for name, edges in CLASSES.items():
        rows = []
        for lo, hi in zip(edges, edges[1:]):
            sel = keep & (measures[name] >= lo) & (measures[name] < hi)
            rows.append({"from": lo, "to": hi, "scars": int(sel.sum()),
                         "found": round(float(found[sel].mean()), 3) if sel.any() else None})
        out["classes"][name] = rows
    valid = b > 0
    out["ground_median"] = {k: round(float(np.median(v[valid])), 3)
                            for k, v in (("B", b), ("G", g), ("R", r), ("NIR", nir), ("NDVI", ndvi(r, nir)))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", type=Path, help="folder of a composited scene (scene.json, truth.gpkg)")
    ap.add_argument("run", type=Path, help="run folder of a mapping of that scene (summary.json)")
    ap.add_argument("year", type=int)
    args = ap.parse_args(argv)
    result = per_scar(args.scene, args.run, args.year)
    print(f"{result['scars']} scars of at least 20 px; mean share of a scar's pixels mapped: {result['found']:.2f}")
    for name, rows in result["classes"].items():
        for row in rows:
            share = "–" if row["found"] is None else f"{row['found']:.2f}"
            print(f"  {name} {row['from']:g}-{row['to']:g}: {row['scars']:4d} scars, found {share}")
    print("ground (median):", ", ".join(f"{k} {v}" for k, v in result["ground_median"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
