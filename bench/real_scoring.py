"""Scoring helpers shared by the real-texture benchmarks (not a benchmark itself).

Pixel scores are counted on the probability raster's grid, valid pixels only, from the
*polygons* a user gets (after the minimum area and hole filling), against the scene's
truth polygons; object scores match new-in-year polygons to the truth's new ones.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import shapely

from landslide_mapper.core.mapping import probability
from landslide_mapper.core.inventory.fad import fit_power_law
from landslide_mapper.core.jobs.specs import InferenceJob, YearInput
from landslide_mapper.core.mapping.job import run_inference
from landslide_mapper.core.progress import Reporter
from landslide_mapper.core.geodata.vector_io import list_layers, read_layer

OBJECT_OVERLAP = 0.1     # share of the smaller polygon two objects must share to match


def _burn(geoms, shape, transform) -> np.ndarray:
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms:
        return np.zeros(shape, bool)
    return rasterio.features.rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform,
                                       dtype="uint8").astype(bool)


def pixel_scores(prob_path, predicted, truth, x_range=None) -> dict:
    """Precision, recall, F1 and predicted/true area ratio on the valid pixels whose map x
    lies in ``x_range`` (None: all)."""
    with rasterio.open(prob_path) as ds:
        valid = ds.read(1) != probability.nodata_of(ds)
        shape, t = (ds.height, ds.width), ds.transform
    if x_range is not None:
        xs = t.c + (np.arange(shape[1]) + 0.5) * t.a
        valid &= ((xs >= x_range[0]) & (xs < x_range[1]))[None, :]
    p, r = _burn(predicted, shape, t) & valid, _burn(truth, shape, t) & valid
    tp, fp, fn = int((p & r).sum()), int((p & ~r).sum()), int((~p & r).sum())
    return {"precision": round(tp / max(tp + fp, 1), 3), "recall": round(tp / max(tp + fn, 1), 3),
            "f1": round(2 * tp / max(2 * tp + fp + fn, 1), 3), "area_ratio": round((tp + fp) / max(tp + fn, 1), 2)}


def _inside(geoms, x_range):
    if x_range is None or not len(geoms):
        return geoms
    xs = shapely.get_x(shapely.centroid(geoms))
    return geoms[(xs >= x_range[0]) & (xs < x_range[1])]


def object_scores(predicted, truth, x_range=None) -> dict:
    """Objects match when they share at least OBJECT_OVERLAP of the smaller one's area."""
    pred, ref = _inside(np.asarray(predicted, object), x_range), _inside(np.asarray(truth, object), x_range)
    if not len(pred) or not len(ref):
        return {"precision": None, "recall": 0.0 if len(ref) else None, "f1": 0.0 if len(ref) else None,
                "predicted": len(pred), "truth": len(ref)}
    tree = shapely.STRtree(ref)
    pi, ri = tree.query(pred, predicate="intersects")
    inter = shapely.area(shapely.intersection(pred[pi], ref[ri]))
    ok = inter >= OBJECT_OVERLAP * np.minimum(shapely.area(pred[pi]), shapely.area(ref[ri]))
    mp, mr = len(np.unique(pi[ok])), len(np.unique(ri[ok]))
    prec, rec = mp / len(pred), mr / len(ref)
    return {"precision": round(prec, 3), "recall": round(rec, 3),
            "f1": round(2 * prec * rec / (prec + rec), 3) if prec + rec else 0.0,
            "predicted": len(pred), "truth": len(ref)}


def alpha(geoms) -> float | None:
    """Power-law tail exponent (Clauset et al.) of the polygons' areas; None if it cannot be fitted."""
    areas = shapely.area(np.asarray(geoms, object)) if len(geoms) else np.empty(0)
    try:
        fit = fit_power_law(areas)
    except Exception:
        return None
    a = getattr(fit, "alpha", None)
    return None if a is None or not math.isfinite(a) else round(float(a), 2)


def map_scene(model: str, rasters: dict[int, str], out: Path, name: str, **kw):
    job = InferenceJob(years=[YearInput(y, p) for y, p in sorted(rasters.items())], model=str(model),
                       output_dir=str(out), run_name=name, **kw)
    return run_inference(job, Reporter())


def halves(raster: str):
    """The scene's bounds, CRS (WKT) and the x range of its eastern half."""
    with rasterio.open(raster) as ds:
        x0, y0, x1, y1 = ds.bounds
        wkt = ds.crs.to_wkt()
    return (x0, y0, x1, y1), wkt, ((x0 + x1) / 2, x1 + 1)


def finetune_west(base, scene, work: Path, name: str, region: str, log_prefixes: tuple[str, ...], **job) -> tuple:
    """Fine-tune ``base`` as a user would: the truth of the western half of every year as
    the corrected polygons, the western half as the reviewed area, the job defaults (but
    ``job``). Returns (the TrainResult, its wall time in seconds)."""
    from landslide_mapper.core.geodata.vector_io import VectorLayer, write_geopackage
    from landslide_mapper.core.jobs.specs import TrainingSource, TrainJob
    from landslide_mapper.core.training.loop import run_training

    (x0, y0, x1, y1), wkt, _ = halves(scene.rasters[min(scene.rasters)])
    work.mkdir(parents=True, exist_ok=True)
    reviewed = work / f"{name}_reviewed_west.gpkg"
    reviewed.unlink(missing_ok=True)
    write_geopackage(reviewed, {"reviewed": VectorLayer(np.array([shapely.box(x0, y0, (x0 + x1) / 2, y1)],
                                                                 dtype=object), {}, wkt)})
    sources = [TrainingSource(raster=scene.rasters[y], labels=scene.truth_path, labels_layer=f"landslides_{y}",
                              reviewed=str(reviewed), region=f"{region}, western half", year=y)
               for y in sorted(scene.rasters)]
    log = Reporter(on_log=lambda m: print("   ", m, flush=True) if m.startswith(log_prefixes) else None)
    t = time.time()
    tuned = run_training(TrainJob(sources=sources, output_dir=str(work / "checkpoints"), name=f"{name}_west",
                                  base_checkpoint=str(base), **job), log)
    return tuned, round(time.time() - t, 1)


def score_run(result, truth_path: str, x_range=None) -> dict:
    """Per-year pixel scores, new-in-year object scores and FAD exponents of a mapping run."""
    layers = set(list_layers(result.geopackage))
    truth_layers = set(list_layers(truth_path))
    out = {}
    for y in result.years:
        pred = read_layer(result.geopackage, y.layer).geometries
        truth = read_layer(truth_path, f"landslides_{y.year}").geometries
        row = {"pixel": pixel_scores(Path(result.run_dir) / y.probability, pred, truth, x_range),
               "alpha_pred": alpha(_inside(pred, x_range)), "alpha_truth": alpha(_inside(truth, x_range))}
        if f"new_{y.year}" in layers and f"new_{y.year}" in truth_layers:
            row["new_objects"] = object_scores(read_layer(result.geopackage, f"new_{y.year}").geometries,
                                               read_layer(truth_path, f"new_{y.year}").geometries, x_range)
        out[y.year] = row
    return out
