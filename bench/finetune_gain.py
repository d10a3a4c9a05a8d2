"""What the bundled checkpoint scores on an unseen demo scene, and what fine-tuning adds.

Not a test. A demo scene with a seed no stage of the cascade saw is mapped in its co-event
year with the bundled checkpoint alone; then the checkpoint is fine-tuned on that year's
truth inside a reviewed area covering the western half only, and the scene is mapped again.
Pixel precision/recall/F1 are reported for the whole scene and for the eastern half, which
fine-tuning never saw (the honest figure for "higher after fine-tuning").

    .venv/bin/python bench/finetune_gain.py [--seed 2026] [--size 1024] [--pixel-size 3]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import rasterio
import rasterio.features
import shapely

from landslide_mapper.core.mapping import probability
from landslide_mapper.core.mapping.bundled import default_model
from landslide_mapper.core.demo import SceneSpec, load_or_generate
from landslide_mapper.core.jobs.specs import InferenceJob, TrainingSource, TrainJob, YearInput
from landslide_mapper.core.mapping.job import run_inference
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.training.loop import run_training
from landslide_mapper.core.geodata.vector_io import VectorLayer, read_layer, write_geopackage


def scores(prob_path: Path, predicted, truth, cols: slice) -> dict:
    with rasterio.open(prob_path) as ds:
        valid = ds.read(1) != probability.nodata_of(ds)
        shape, t = (ds.height, ds.width), ds.transform
    burn = lambda g: rasterio.features.rasterize(((x, 1) for x in g if not x.is_empty), out_shape=shape,
                                                 transform=t, dtype="uint8").astype(bool) if len(g) else \
        np.zeros(shape, bool)
    p, r = burn(predicted)[:, cols], burn(truth)[:, cols]
    v = valid[:, cols]
    tp, fp, fn = (int(np.count_nonzero(a & v)) for a in (p & r, p & ~r, ~p & r))
    prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"precision": round(prec, 3), "recall": round(rec, 3),
            "f1": round(2 * tp / max(2 * tp + fp + fn, 1), 3)}


def evaluate(model: str, scene, year: int, out: Path, label: str) -> dict:
    res = run_inference(InferenceJob(years=[YearInput(year, scene.rasters[year])], model=model,
                                     output_dir=str(out), run_name=label))
    y = res.years[0]
    predicted = read_layer(res.geopackage, y.layer).geometries
    truth = read_layer(scene.truth_path, f"landslides_{year}").geometries
    prob = Path(res.run_dir) / y.probability
    half = scene.spec.size // 2
    return {"whole": scores(prob, predicted, truth, slice(None)),
            "east_half_unseen": scores(prob, predicted, truth, slice(half, None))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--pixel-size", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--model", default=str(default_model()))
    ap.add_argument("--loss", default=None, help="default: the fine-tuning default (core.jobs.specs.DEFAULT_LOSS)")
    ap.add_argument("--freeze", default="none")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--work", default="bench_output/finetune_gain")
    args = ap.parse_args()
    work = Path(args.work)
    spec = SceneSpec(size=args.size, pixel_size=args.pixel_size, seed=args.seed)
    scene = load_or_generate(work / f"scene_seed{args.seed}_{args.pixel_size:g}m", spec)
    year = spec.event_year
    before = evaluate(args.model, scene, year, work / "runs", "bundled")
    print("bundled checkpoint alone:", json.dumps(before))

    x0, y0, x1, y1 = spec.extent
    west = shapely.box(x0, y0, (x0 + x1) / 2, y1)
    with rasterio.open(scene.rasters[year]) as ds:
        wkt = ds.crs.to_wkt()
    reviewed = work / "reviewed_west.gpkg"
    write_geopackage(reviewed, {"reviewed": VectorLayer(np.array([west], dtype=object), {}, wkt)})
    t = time.time()
    log = Reporter(on_log=lambda m: print("  ", m) if m.startswith("epoch") else None)
    result = run_training(TrainJob(
        sources=[TrainingSource(raster=scene.rasters[year], labels=scene.truth_path,
                                labels_layer=f"landslides_{year}", reviewed=str(reviewed),
                                region=f"unseen demo scene seed {args.seed} (western half)", year=year)],
        output_dir=str(work / "checkpoints"), name="finetuned", base_checkpoint=args.model,
        epochs=args.epochs, learning_rate=args.lr, patience=4, loss=args.loss, freeze=args.freeze), log)
    after = evaluate(result.checkpoint, scene, year, work / "runs", "finetuned")
    print(f"fine-tuned ({time.time() - t:.0f} s, {result.patches['train']} patches):", json.dumps(after))
    (work / "result.json").write_text(json.dumps({"seed": args.seed, "year": year, "loss": args.loss,
                                                  "freeze": args.freeze, "lr": args.lr, "before": before,
                                                  "after": after, "checkpoint": result.checkpoint}, indent=2))


if __name__ == "__main__":
    main()
