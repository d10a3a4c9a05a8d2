"""Command line: ``python -m landslide_mapper <command>``.

People get a progress bar and a summary table; ``--jsonl`` (and ``run-job``) print
machine-readable events instead, for the QGIS task that drives this as a worker. This
module parses arguments into job specs; running a job as a process (output, signals,
exit codes, the worker's ``run-job``) is core/worker_entry.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .bundled import AUTO, BASELINE_MODEL, default_model
from .errors import InputError, LandslideMapperError
from .names import landslides_layer
from . import faults
from .cluster import CLUSTER_HELP
from .jobs import (DEFAULT_LOSS, RESAMPLE_CHOICES, InferenceJob, TrainingSource, TrainJob, YearInput, split_layer)
from .worker_entry import EXIT_FAILED, EXIT_OK, EXIT_USER_ERROR, execute, run_job_command

# -- infer ---------------------------------------------------------------------------
def _per_year(values: list[str] | None, default, convert=str) -> tuple[dict[int, object], object]:
    """``[YEAR:]VALUE`` options: the per-year values and the value for the other years."""
    per_year = {}
    for value in values or []:
        head, sep, tail = value.partition(":")
        if sep and head.strip().isdigit():
            per_year[int(head)] = convert(tail)
        else:
            default = convert(value)
    return per_year, default


def _nodata_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LandslideMapperError(f"--nodata expects a number (optionally YEAR:NUMBER), got {text!r}.") from None


def _parse_years(pairs: list[str], bands: list[str], scale: float | None,
                 nodata: list[str] | None = None) -> list[YearInput]:
    per_year, default_bands = _per_year(bands, "auto")
    nodata_per_year, default_nodata = _per_year(nodata, None, _nodata_value)
    years = []
    for pair in pairs:
        year, sep, path = pair.partition("=")
        if not sep or not year.strip().isdigit() or not path:
            raise LandslideMapperError(f"Expected YEAR=PATH, got {pair!r} (e.g. 2017=planet_2017.tif).")
        y = int(year)
        years.append(YearInput(y, path, per_year.get(y, default_bands), scale,
                               nodata_per_year.get(y, default_nodata)))
    return years


def _print_inference_table(result, scores: dict | None = None) -> None:
    head = f"{'year':>6} {'polygons':>9} {'area (m²)':>13} {'mapped km²':>11}"
    if scores:
        head += f" {'precision':>10} {'recall':>8} {'F1':>6}"
    print(head)
    for y in result.years:
        line = f"{y.year:>6} {y.polygons:>9} {y.total_area_m2:>13,.0f} {y.mapped_area_km2:>11.3f}"
        if scores and y.year in scores:
            s = scores[y.year]
            line += f" {s.precision:>10.3f} {s.recall:>8.3f} {s.f1:>6.3f}"
        print(line)


def cmd_infer(args) -> int:
    from .mapping import run_inference

    def job_fn(reporter):
        job = InferenceJob(
            years=_parse_years(args.years, args.bands, args.reflectance_scale, args.nodata),
            model=str(args.model or AUTO), output_dir=args.output, run_name=args.run_name,
            tile_size=args.tile, overlap=args.overlap, batch_size=args.batch,
            threshold=args.threshold, min_area_m2=args.min_area, device=args.device, tta=args.tta,
            uncertainty=args.uncertainty, review_areas=args.review_areas, resample=args.resample,
            area=args.area, bounds=args.bounds, bounds_crs=args.bounds_crs,
            max_pixels=None if args.yes else args.max_pixels, cluster=args.cluster,
            confirm_changes=not args.keep_unconfirmed)
        return run_inference(job, reporter)

    code, result = execute(job_fn, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None and not args.jsonl:
        print(f"Run folder: {result.run_dir}")
        print(f"Polygons:   {result.geopackage}")
        _print_inference_table(result)
    return code


# -- train / finetune ---------------------------------------------------------------
def _parse_source(text: str, defaults: dict) -> TrainingSource:
    fields = dict(defaults)
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("raster", "labels", "reviewed", "bands", "region", "year", "reflectance_scale",
                                  "split"):
            raise InputError(f"--source: expected key=value pairs separated by ';' with keys raster, labels, "
                             f"reviewed, bands, region, year, reflectance_scale, split; got {part!r}.")
        fields[key] = value.strip()
    return _make_source(fields)


def _make_source(f: dict) -> TrainingSource:
    if not f.get("raster") or not f.get("labels"):
        raise InputError("Each training source needs a raster and a label layer (--raster and --labels, "
                         "or --source 'raster=...;labels=...').")
    labels, labels_layer = split_layer(f["labels"])
    reviewed, reviewed_layer = split_layer(f["reviewed"]) if f.get("reviewed") else (None, None)
    try:
        year = int(f["year"]) if f.get("year") not in (None, "") else None
        scale = float(f["reflectance_scale"]) if f.get("reflectance_scale") not in (None, "") else None
    except ValueError as exc:
        raise InputError(f"Training source {f['raster']}: {exc}.") from None
    return TrainingSource(raster=f["raster"], labels=labels, labels_layer=labels_layer, reviewed=reviewed,
                          reviewed_layer=reviewed_layer, bands=f.get("bands") or "auto",
                          reflectance_scale=scale, region=f.get("region") or "", year=year,
                          split=f.get("split") or "auto")


def _train_job(args, base: str | None) -> TrainJob:
    defaults = {"bands": args.bands, "region": args.region, "year": args.year,
                "reflectance_scale": args.reflectance_scale}
    sources = [_parse_source(s, defaults) for s in args.source or []]
    if args.raster or args.labels:
        sources.insert(0, _make_source({**defaults, "raster": args.raster, "labels": args.labels,
                                        "reviewed": args.reviewed}))
    extra = {"channels": [c.strip() for c in args.channels.split(",")] if args.channels else None}
    if base is None:
        extra.update(architecture=args.architecture, base_filters=args.base_filters)
    else:
        extra.update(hard_negative_weight=args.hard_negative_weight)
    return TrainJob(
        sources=sources, output_dir=args.output, name=args.name, base_checkpoint=base,
        patch_size=args.patch_size, stride=args.stride, drop_empty=args.drop_empty,
        validation=args.validation, validation_fraction=args.val_fraction, augment=not args.no_augment,
        epochs=args.epochs, batch_size=args.batch, learning_rate=args.lr, loss=args.loss,
        freeze=args.freeze, patience=args.patience, mixed_precision=args.mixed_precision, seed=args.seed,
        trigger=args.trigger, description=args.description, max_steps_per_epoch=args.max_steps,
        calibrate_threshold=not args.fixed_threshold, steps=args.steps,
        device=args.device, **extra)


def cmd_train(args) -> int:
    from .checkpoint import improvement_text
    from .training import run_training

    base = getattr(args, "checkpoint", None)
    code, result = execute(lambda reporter: run_training(_train_job(args, base), reporter),
                            args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None and not args.jsonl:
        print(f"{'round':>5} {'loss':>8} {'val loss':>9} {'precision':>10} {'recall':>7} {'F1':>6} {'IoU':>6}")
        for h in result.history:
            mark = " *" if h["epoch"] == result.best_epoch else ""
            s = {k: "–" if h[k] is None else f"{h[k]:.3f}" for k in ("val_precision", "val_recall", "val_f1", "val_iou")}
            print(f"{h['epoch']:>5} {h['loss']:>8.4f} {h['val_loss']:>9.4f} {s['val_precision']:>10} "
                  f"{s['val_recall']:>7} {s['val_f1']:>6} {s['val_iou']:>6}{mark}")
        print(f"\nCheckpoint: {result.checkpoint}  (stage {result.stage}, id {result.id}, best round "
              f"{result.best_epoch} marked *, threshold {result.threshold:g}, {result.seconds:.0f} s on "
              f"{result.device})")
        verdict = improvement_text(result.to_dict())
        if verdict:
            print(verdict)
    return code


# -- run-job (worker): core/worker_entry.py ---------------------------------------------
def cmd_run_job(args) -> int:
    return run_job_command(args.spec, args.control)


# -- scene / demo ---------------------------------------------------------------------
def _scene_spec(args):
    from .demo_scene import SceneSpec

    kw = dict(size=args.size, pixel_size=args.pixel_size, seed=args.seed)
    if getattr(args, "years_list", None):
        years = tuple(int(y) for y in args.years_list.split(","))
        kw.update(years=years, event_year=years[min(1, len(years) - 1)])
    return SceneSpec(**kw)


def cmd_scene(args) -> int:
    from .demo_scene import load_or_generate

    def job_fn(reporter):
        return load_or_generate(args.output, _scene_spec(args), progress=reporter.progress)

    code, manifest = execute(job_fn, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if manifest is not None and not args.jsonl:
        for year, path in sorted(manifest.rasters.items()):
            print(f"{year}: {path}")
        print(f"truth: {manifest.truth_path}")
    return code


def cmd_demo(args) -> int:
    from .demo_scene import load_or_generate
    from .mapping import run_inference
    from .metrics import pixel_scores
    from .vector_io import read_layer

    spec = _scene_spec(args)
    scene_dir = Path(args.data_dir) / f"scene_{spec.size}px_{spec.pixel_size:g}m_seed{spec.seed}"
    scores: dict = {}
    true_alpha: list[float] = []

    def job_fn(reporter):
        manifest = load_or_generate(scene_dir, spec, progress=reporter.sub(0.0, 0.3).progress)
        job = InferenceJob(
            years=[YearInput(y, p, "auto") for y, p in sorted(manifest.rasters.items())],
            model=str(args.model or default_model()), output_dir=args.output,
            reference_exponent=manifest.true_powerlaw_alpha)
        true_alpha.append(manifest.true_powerlaw_alpha)
        result = run_inference(job, reporter.sub(0.3, 1.0))
        for y in result.years:
            predicted = read_layer(result.geopackage, y.layer).geometries
            truth = read_layer(manifest.truth_path, landslides_layer(y.year)).geometries
            scores[y.year] = pixel_scores(Path(result.run_dir) / y.probability, predicted, truth)
        return result

    t0 = time.time()
    code, result = execute(job_fn, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None:
        (Path(result.run_dir) / "accuracy.json").write_text(json.dumps(
            {str(y): s.to_dict() for y, s in scores.items()}, indent=2) + "\n")
        if not args.jsonl:
            print(f"\nDemo scene: {scene_dir} ({spec.size}×{spec.size} px, {spec.pixel_size:g} m)")
            print(f"Model:      {result.model} ({result.model_kind}, on {result.provider})")
            print(f"Run folder: {result.run_dir}  ({time.time() - t0:.1f} s)")
            print(f"Polygons:   {result.geopackage}\n")
            _print_inference_table(result, scores)
            print("\nPixel precision/recall/F1 against the scene's true landslide polygons "
                  "(accuracy.json in the run folder).")
            _print_exponents(result, true_alpha[0])
    return code


def _print_exponents(result, true_alpha: float) -> None:
    """The demo's check of the FAD fits: per-year power-law exponents against the truth."""
    print(f"\nTemporal subtraction and frequency-area distributions (statistics.csv, charts/ in the "
          f"run folder). The scene's landslide areas were drawn with exponent α = {true_alpha:.2f}.")
    print(f"{'year':>6} {'mapped':>7} {'new':>5} {'enl.':>5} {'α mapped':>13} {'x_min m²':>9} "
          f"{'α new+enlarged':>15} {'mLS':>5}")
    for s in result.statistics:
        a = f"{s['alpha']:.2f}±{s['alpha_se']:.2f}" if s.get("alpha") is not None else "-"
        na = f"{s['new_alpha']:.2f}" if s.get("new_alpha") is not None else "-"
        xm = f"{s['x_min_m2']:,.0f}" if s.get("x_min_m2") is not None else "-"
        mls = f"{s['mls']:.2f}" if s.get("mls") is not None else "-"
        new = "-" if s.get("new") is None else str(s["new"])
        enl = "-" if s.get("enlarged") is None else str(s["enlarged"])
        print(f"{s['year']:>6} {s['count']:>7} {new:>5} {enl:>5} {a:>13} {xm:>9} {na:>15} {mls:>5}")


def cmd_build_pretrained(args) -> int:
    from .pretrained import (CASCADE_DESCRIPTION, REAL_LOSS, REAL_NAME, RGB_NAME, build_pretrained,
                             build_real_stages, build_rgb)
    from .weight_storage import compact_checkpoint

    loss = args.loss or REAL_LOSS

    def job(reporter):
        work = Path(args.workdir)
        base = args.start_from
        if args.skip_real and not base:
            raise InputError("--skip-real needs --start-from: the checkpoint of the real-texture stages "
                             "that are not trained again.")
        if not base:      # stages 1-5, procedural
            base = build_pretrained(str(work / "procedural"), args.workdir, epochs=args.epochs,
                                    finetune_epochs=args.finetune_epochs, base_filters=args.base_filters,
                                    max_steps=args.max_steps, regions=args.regions, reporter=reporter.sub(0, 0.4))
        stages = str(work / "stages")
        cascade = build_real_stages(base, stages, args.workdir, steps=args.steps, max_steps=args.max_steps,
                                    loss=loss, data_root=args.data, reporter=reporter.sub(0.4, 0.8),
                                    skip=args.skip_real, consolidation_steps=args.consolidation_steps)
        rgb = build_rgb(cascade, stages, args.workdir, steps=args.steps, max_steps=args.max_steps,
                        loss=loss, data_root=args.data, reporter=reporter.sub(0.8, 0.99))
        # the bundled copies store float16 weights (core.weight_storage: the plugin ZIP's size)
        return [str(compact_checkpoint(cascade, args.output, REAL_NAME, CASCADE_DESCRIPTION)),
                str(compact_checkpoint(rgb, args.output, RGB_NAME))]

    code, result = execute(job, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None and not args.jsonl:
        print(f"Bundled checkpoints: {', '.join(result)}")
    return code


def cmd_compact_checkpoint(args) -> int:
    from .weight_storage import compact_checkpoint

    def job(reporter):
        reporter.progress(0.0, f"Storing the weights of {args.checkpoint} as float16")
        folder = compact_checkpoint(args.checkpoint, args.output, args.name)
        reporter.progress(1.0, "Done")
        return str(folder)

    code, result = execute(job, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None and not args.jsonl:
        print(f"Compact checkpoint: {result}")
    return code


def cmd_build_baseline(args) -> int:
    from .baseline import write_baseline

    print(write_baseline(args.output))
    return EXIT_OK


# -- subtract / fad / assess ------------------------------------------------------------
def _print_statistics(result) -> None:
    print(f"{'year':>6} {'count':>7} {'total m²':>14} {'median m²':>10} {'alpha':>12} "
          f"{'x_min m²':>10} {'mLS':>6} {'new':>6} {'enlarged':>8}")
    for s in result.statistics:
        alpha = f"{s['alpha']:.2f}±{s['alpha_se']:.2f}" if s.get("alpha") is not None else "-"
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        print(f"{s['year']:>6} {s['count']:>7} {s['total_area_m2']:>14,.0f} "
              f"{fmt(s['median_area_m2'], ',.0f'):>10} {alpha:>12} {fmt(s.get('x_min_m2'), ',.0f'):>10} "
              f"{fmt(s.get('mls'), '.2f'):>6} {fmt(s.get('new'), 'd'):>6} {fmt(s.get('enlarged'), 'd'):>8}")


def _layers(items: list[str]):
    from .inventory import parse_layer_refs

    return parse_layer_refs(items)


def cmd_subtract(args) -> int:
    from .analysis import run_subtract
    from .jobs import SubtractJob

    def job_fn(reporter):
        job = SubtractJob(years=_layers(args.sources), output_dir=args.output, run_name=args.run_name,
                          pixel_size_m=args.pixel_size, sliver_px=args.sliver_px,
                          min_remnant_px=args.min_remnant_px)
        return run_subtract(job, reporter)

    code, result = execute(job_fn, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None and not args.jsonl:
        print(f"Run folder: {result.run_dir}")
        print(f"New and enlarged polygons: {result.geopackage}")
        _print_statistics(result)
    return code


def cmd_fad(args) -> int:
    from .analysis import run_analyse
    from .jobs import AnalyseJob

    def job_fn(reporter):
        job = AnalyseJob(years=_layers(args.sources), output_dir=args.output, run_name=args.run_name,
                         min_area_m2=args.min_area, mapped_area_km2=args.mapped_area_km2,
                         extent=args.extent, bootstrap=args.bootstrap)
        return run_analyse(job, reporter)

    code, result = execute(job_fn, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None and not args.jsonl:
        print(f"Run folder: {result.run_dir}  (statistics.csv, statistics.json, charts/)")
        _print_statistics(result)
    return code


def cmd_assess(args) -> int:
    from .analysis import run_assess
    from .jobs import AssessJob, GridRaster

    def job_fn(reporter):
        grids = []
        for item in args.grid or []:
            year, sep, path = item.partition("=")
            if not sep or not year.strip().isdigit():
                raise InputError(f"--grid expects YEAR=RASTER, got {item!r}.")
            grids.append(GridRaster(int(year), path))
        job = AssessJob(predicted=_layers(args.predicted), reference=_layers(args.reference),
                        output_dir=args.output, run_name=args.run_name, grids=grids, area=args.area,
                        pixel_size_m=args.pixel_size)
        return run_assess(job, reporter)

    code, result = execute(job_fn, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None and not args.jsonl:
        print(f"Run folder: {result.run_dir}  (accuracy.json, accuracy.csv, assessment.gpkg, charts/)")
        print(f"{'year':>6} {'precision':>9} {'recall':>7} {'F1':>6} {'MCC':>6} {'IoU':>6} "
              f"{'ref n':>6} {'pred n':>6} {'ref km²':>8} {'pred km²':>8}")
        def num(value, width: int, digits: int = 3, scale: float = 1.0) -> str:
            """A score, or a dash where there is none (e.g. no pixel to count)."""
            return f"{value / scale:>{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'–':>{width}}"

        for row in result.rows:
            print(f"{row['year']:>6} {num(row['precision'], 9)} {num(row['recall'], 7)} {num(row['f1'], 6)} "
                  f"{num(row['mcc'], 6)} {num(row['iou'], 6)} {row['reference_count']:>6} "
                  f"{row['predicted_count']:>6} {num(row['reference_area_m2'], 8, scale=1e6)} "
                  f"{num(row['predicted_area_m2'], 8, scale=1e6)}")
    return code


# -- parser ---------------------------------------------------------------------------
def _common(p) -> None:
    p.add_argument("--jsonl", action="store_true", help="print JSON-lines events instead of a progress bar")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m landslide_mapper",
                                     description="Multi-temporal landslide mapping from yearly satellite images.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("infer", help="map landslides in one raster per year")
    p.add_argument("years", nargs="+", metavar="YEAR=PATH", help="one raster per year, e.g. 2017=planet_2017.tif")
    p.add_argument("--model", help="ONNX model or checkpoint folder (default auto: the bundled cascade, or the "
                                   "bundled RGB checkpoint when an image has no NIR band)")
    p.add_argument("--output", "-o", required=True, help="folder in which a new run folder is created")
    p.add_argument("--run-name", help="name of the run folder (a suffix is added if it exists)")
    p.add_argument("--bands", action="append", metavar="[YEAR:]MAPPING",
                   help="band mapping: auto, planetscope4, rapideye5, rgbnir, superdove8, rgb or 'B=3,G=2,R=1,NIR=4'; "
                        "prefix with YEAR: for one year only (repeatable)")
    p.add_argument("--reflectance-scale", type=float,
                   help="value of reflectance 1.0 in the files (default: 10000 for 16-bit, 255 for 8-bit)")
    p.add_argument("--nodata", action="append", metavar="[YEAR:]VALUE",
                   help="pixel value that means 'no data', for images that declare none (e.g. 0 for a "
                        "black collar); prefix with YEAR: for one year only (repeatable)")
    p.add_argument("--area", metavar="PATH[|LAYER]",
                   help="map only inside these polygons (a catchment, a study area); any OGR source")
    p.add_argument("--bounds", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                   help="map only inside this rectangle (with --area: where both overlap)")
    p.add_argument("--bounds-crs", metavar="CRS", help="CRS of --bounds, e.g. EPSG:4326 (default: the first year's)")
    p.add_argument("--max-pixels", type=int, default=InferenceJob.max_pixels, metavar="N",
                   help=f"refuse a job of more pixels, all years together (default {InferenceJob.max_pixels:,})")
    p.add_argument("--yes", action="store_true", help="map however large the job is (no --max-pixels limit)")
    p.add_argument("--cluster", default=InferenceJob.cluster, metavar="WHERE",
                   help=f"{CLUSTER_HELP} (default {InferenceJob.cluster}); workers of a scheduler must see the "
                        "input, model and output paths")
    p.add_argument("--tile", type=int, help="tile size in pixels (default: the model's)")
    p.add_argument("--overlap", type=int, default=InferenceJob.overlap,
                   help=f"tile overlap in pixels (default {InferenceJob.overlap})")
    p.add_argument("--batch", type=int, default=InferenceJob.batch_size,
                   help=f"tiles per inference batch (default {InferenceJob.batch_size})")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--min-area", type=float, default=InferenceJob.min_area_m2,
                   help=f"minimum polygon area in m² (default {InferenceJob.min_area_m2:g})")
    p.add_argument("--device", default=InferenceJob.device, choices=["auto", "cpu", "gpu"],
                   help="where to run the model")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the four flips of every tile (4x the network time)")
    p.add_argument("--keep-unconfirmed", action="store_true",
                   help="keep every new or enlarged part subtraction finds, also where the two images show no "
                        "change (default: those go to unconfirmed_<year>)")
    p.add_argument("--uncertainty", action="store_true",
                   help="write uncertainty_<year>.tif and a review_<year> layer of suggested review areas")
    p.add_argument("--review-areas", type=int, default=InferenceJob.review_areas,
                   help=f"suggested review areas per year (default {InferenceJob.review_areas})")
    p.add_argument("--resample", default=InferenceJob.resample, choices=list(RESAMPLE_CHOICES),
                   help="auto (default): resample images whose pixel size is far from the model's; off: warn only")
    _common(p)
    p.set_defaults(func=cmd_infer)

    for name, func, help_ in (("demo", cmd_demo, "generate the demo scene, map it and score it"),
                              ("scene", cmd_scene, "generate a procedural demo scene")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--size", type=int, default=1024, help="scene side in pixels (default 1024)")
        p.add_argument("--pixel-size", type=float, default=3.0, choices=[3.0, 5.0],
                       help="3 (PlanetScope-like, 4 bands) or 5 (RapidEye-like, 5 bands)")
        p.add_argument("--seed", type=int, default=7)
        p.add_argument("--years", dest="years_list", help="comma-separated years (default 2016-2019)")
        if name == "demo":
            p.add_argument("--data-dir", default="demo_data", help="where the scene is generated or reused")
            p.add_argument("--output", "-o", default="demo_output", help="where run folders are written")
            p.add_argument("--model", help="model to use (default: the bundled model)")
        else:
            p.add_argument("--output", "-o", required=True, help="folder for the scene")
        _common(p)
        p.set_defaults(func=func)

    for name, help_ in (("train", "train a new cascade checkpoint from scratch"),
                        ("finetune", "fine-tune a cascade checkpoint into a new stage")):
        p = sub.add_parser(name, help=help_)
        if name == "finetune":
            p.add_argument("--checkpoint", required=True, help="the base checkpoint (folder); it is not modified")
        p.add_argument("--raster", help="image of one training source")
        p.add_argument("--labels", help="landslide polygons for --raster (file, or file|layername=NAME)")
        p.add_argument("--reviewed", help="reviewed-area polygons: negatives are taken only inside them "
                                          "(default: the whole raster is taken as reviewed)")
        p.add_argument("--source", action="append", metavar="'raster=..;labels=..[;reviewed=..;region=..;year=..]'",
                       help="a further training source (repeatable)")
        p.add_argument("--bands", default="auto", help="band mapping of the rasters (default auto)")
        p.add_argument("--reflectance-scale", type=float, help="value of reflectance 1.0 (default from dtype)")
        p.add_argument("--region", default="", help="region name recorded in the lineage")
        p.add_argument("--year", type=int, help="year recorded in the lineage")
        p.add_argument("--trigger", default="", help="triggering event recorded in the lineage")
        p.add_argument("--description", default="", help="text for the model card")
        p.add_argument("--output", "-o", required=True, help="folder in which the new checkpoint folder is created")
        p.add_argument("--name", required=True, help="name of the new checkpoint (a suffix is added if taken)")
        if name == "train":
            p.add_argument("--architecture", default="adsms_unet",
                           choices=["adsms_unet", "unet", "resunet", "attention_unet"])
            p.add_argument("--base-filters", type=int, default=32, help="filters of the first block (default 32)")
            p.add_argument("--channels", help="input channels, default B,G,R,NIR,NDVI")
        else:
            p.add_argument("--channels", help="keep only these input channels of the checkpoint, e.g. R,G,B "
                                              "(to fine-tune for colour-only imagery)")
            p.add_argument("--hard-negative-weight", type=float, default=TrainJob.hard_negative_weight,
                           help="loss weight of pixels the base maps as landslide but the labels do not "
                                f"(deleted false alarms; default {TrainJob.hard_negative_weight:g})")
        p.add_argument("--steps", type=int, help="optimisation steps in all (default: epochs × rounds of at "
                                                  "least 25 steps); validated after every round")
        p.add_argument("--epochs", type=int, default=30, help="validation rounds (default 30): each one pass over "
                                                               "the training patches, or 25 steps if that is more")
        p.add_argument("--batch", type=int, default=16)
        p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
        p.add_argument("--patch-size", type=int, default=128)
        p.add_argument("--stride", type=int, help="patch stride (default half a patch)")
        p.add_argument("--loss", choices=["adsms", "tversky", "focal_tversky", "dice", "bce", "bce_focal_tversky"],
                       help=f"default: {DEFAULT_LOSS}")
        p.add_argument("--freeze", default="none", help="none, encoder, or upto:<block> (e.g. upto:enc3)")
        p.add_argument("--patience", type=int, default=8, help="early-stopping patience in rounds")
        p.add_argument("--validation", default="blocked", choices=["blocked", "random"])
        p.add_argument("--val-fraction", type=float, default=0.2)
        p.add_argument("--no-augment", action="store_true")
        p.add_argument("--drop-empty", action="store_true", help="drop patches without landslide pixels")
        p.add_argument("--mixed-precision", default="auto", choices=["auto", "on", "off"])
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--max-steps", type=int, help="cap on batches per epoch (quick runs)")
        p.add_argument("--fixed-threshold", action="store_true",
                       help="keep threshold 0.5 instead of the one with the best validation F1")
        _common(p)
        p.set_defaults(func=cmd_train)

    source_help = ("YEAR=PATH[|LAYER] per year (GeoPackage, shapefile, zipped shapefile, any OGR "
                   "source), or a multi-layer source whose layer names carry the years "
                   "(a run GeoPackage, a zip of YEAR.shp files)")
    p = sub.add_parser("subtract", help="new and enlarged landslides of every year (E_T = P_T - P_T-1)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help=source_help)
    p.add_argument("--output", "-o", required=True, help="folder in which a new run folder is created")
    p.add_argument("--run-name", help="name of the run folder (a suffix is added if it exists)")
    p.add_argument("--pixel-size", type=float, default=3.0,
                   help="pixel size (m) of the imagery the inventories come from (default 3)")
    p.add_argument("--sliver-px", type=float, default=1.0,
                   help="sliver buffer in pixels: strips narrower than twice it are removed (default 1)")
    p.add_argument("--min-remnant-px", type=float, default=9.0,
                   help="smallest new or enlarged part kept, in pixels (default 9, ~3×3 px)")
    _common(p)
    p.set_defaults(func=cmd_subtract)

    p = sub.add_parser("fad", help="per-year statistics, frequency-area distributions, power-law fits, charts")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help=source_help)
    p.add_argument("--output", "-o", required=True, help="folder in which a new run folder is created")
    p.add_argument("--run-name", help="name of the run folder (a suffix is added if it exists)")
    p.add_argument("--min-area", type=float, default=0.0, help="leave out polygons below this area in m² (default 0)")
    p.add_argument("--mapped-area-km2", type=float, help="area that was mapped, for densities per km²")
    p.add_argument("--extent", help="polygon layer of the mapped area (PATH[|LAYER]), for densities per km²")
    p.add_argument("--bootstrap", type=int, default=0,
                   help="bootstrap resamples for the uncertainty of x_min and the exponent (default 0)")
    _common(p)
    p.set_defaults(func=cmd_fad)

    p = sub.add_parser("assess", help="accuracy of predicted against reference inventories, per year")
    p.add_argument("--predicted", nargs="+", required=True, metavar="SOURCE", help=source_help)
    p.add_argument("--reference", nargs="+", required=True, metavar="SOURCE", help=source_help)
    p.add_argument("--grid", action="append", metavar="YEAR=RASTER",
                   help="raster whose grid and nodata the pixel scores of a year use (repeatable; "
                        "e.g. the probability GeoTIFF); default: a --pixel-size grid over both inventories")
    p.add_argument("--area", help="assessment-area polygons (PATH[|LAYER]): only pixels inside count")
    p.add_argument("--pixel-size", type=float, default=3.0, help="grid pixel size in m without --grid (default 3)")
    p.add_argument("--output", "-o", required=True, help="folder in which a new run folder is created")
    p.add_argument("--run-name", help="name of the run folder (a suffix is added if it exists)")
    _common(p)
    p.set_defaults(func=cmd_assess)

    p = sub.add_parser("run-job", help="run a JSON job specification, printing JSON-lines events (worker mode)")
    p.add_argument("spec", nargs="?", default="-", help="job JSON file, or - for stdin (default)")
    p.add_argument("--control", action="store_true",
                   help="read the job as one JSON line from stdin, then keep reading it: a 'cancel' "
                        "line or the end of stdin stops the job and removes its partial outputs "
                        "(how the plugin drives its worker on every platform)")
    p.set_defaults(func=cmd_run_job)

    p = sub.add_parser("build-pretrained", help="retrain the bundled checkpoints: the cascade over procedural, then "
                                                "real-texture regions, and the RGB checkpoint (needs ../shared/data)")
    p.add_argument("--output", default=str(Path(__file__).resolve().parent.parent / "models"))
    p.add_argument("--workdir", default="build/pretrained", help="scenes and intermediate stages")
    p.add_argument("--epochs", type=int, default=24, help="epochs of the first stage (default 24)")
    p.add_argument("--finetune-epochs", type=int, default=8, help="epochs of each later stage (default 8)")
    p.add_argument("--base-filters", type=int, default=16)
    p.add_argument("--regions", type=int, default=5, help="number of regions (stages), at most 5")
    p.add_argument("--max-steps", type=int, help="cap on batches per epoch")
    p.add_argument("--start-from", help="an existing procedural stage-5 checkpoint (e.g. landslide_cascade_v1 of "
                                        "release 0.3) instead of training stages 1-5 again")
    p.add_argument("--skip-real", type=int, default=0, metavar="K",
                   help="--start-from is the checkpoint of the first K real-texture stages: train only the rest")
    p.add_argument("--steps", type=int, default=1500, help="optimisation steps of each real-texture stage")
    p.add_argument("--consolidation-steps", type=int, default=0, metavar="N",
                   help="end with a consolidation stage of N steps over every region's event year (default: none)")
    p.add_argument("--loss", help="loss of the real-texture stages (default: core.pretrained.REAL_LOSS)")
    p.add_argument("--data", help="the real data folder (default ../shared/data or $LANDSLIDE_MAPPER_DATA)")
    _common(p)
    p.set_defaults(func=cmd_build_pretrained)

    p = sub.add_parser("compact-checkpoint", help="copy a checkpoint with its weights stored as float16 "
                                                   "(half the size, still computed in float32)")
    p.add_argument("checkpoint", help="the checkpoint folder (or a file in it)")
    p.add_argument("--output", required=True, help="folder to write the copy into")
    p.add_argument("--name", help="the copy's folder name (default: the source's)")
    _common(p)
    p.set_defaults(func=cmd_compact_checkpoint)

    p = sub.add_parser("build-baseline", help="rebuild the bundled spectral baseline ONNX model")
    p.add_argument("--output", default=str(BASELINE_MODEL))
    p.set_defaults(func=cmd_build_baseline)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LandslideMapperError as exc:  # raised before a job started (argument parsing)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 — outside a job (e.g. printing its result): still no traceback
        message, known, _report = faults.failure(exc, getattr(args, "output", None))
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR if known else EXIT_FAILED
