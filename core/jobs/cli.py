"""Command line: ``python -m landslide_mapper <command>``.

People get a progress bar and a summary table; ``--jsonl`` (and ``run-job``) print
machine-readable events instead, for the QGIS task that drives this as a worker. This
module parses arguments into job specs; running a job as a process (output, signals,
exit codes, the worker's ``run-job``) is core/jobs/worker_entry.py.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..mapping.bundled import AUTO, default_model
from ..errors import InputError, LandslideMapperError
from ..names import landslides_layer
from . import faults
from .cli_parser import build_parser
from .specs import InferenceJob, TrainingSource, TrainJob, YearInput, check_colour_jitter, split_layer
from .worker_entry import EXIT_FAILED, EXIT_OK, EXIT_USER_ERROR, execute, run_job_command

def _run(args, job_fn, show: Callable[[Any], None]) -> int:
    """Run ``job_fn`` as a job (progress, cancel, messages and exit code:
    worker_entry.execute); for people (not ``--jsonl``) ``show`` prints its result."""
    code, result = execute(job_fn, args.jsonl, args.quiet, output=getattr(args, "output", None))
    if result is not None and not args.jsonl:
        show(result)
    return code


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
    from ..mapping.job import run_inference

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

    def show(result):
        print(f"Run folder: {result.run_dir}")
        print(f"Polygons:   {result.geopackage}")
        _print_inference_table(result)

    return _run(args, job_fn, show)


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
        extra.update(hard_negative_weight=args.hard_negative_weight, distill_weight=args.distill_weight)
    return TrainJob(
        sources=sources, output_dir=args.output, name=args.name, base_checkpoint=base,
        patch_size=args.patch_size, stride=args.stride, drop_empty=args.drop_empty,
        validation=args.validation, validation_fraction=args.val_fraction, augment=not args.no_augment,
        epochs=args.epochs, batch_size=args.batch, learning_rate=args.lr, loss=args.loss,
        freeze=args.freeze, patience=args.patience, mixed_precision=args.mixed_precision, seed=args.seed,
        trigger=args.trigger, description=args.description, max_steps_per_epoch=args.max_steps,
        calibrate_threshold=not args.fixed_threshold, steps=args.steps,
        device=args.device, colour_jitter=args.colour_jitter, **extra)


def cmd_train(args) -> int:
    from ..training.checkpoint import improvement_text, unreviewed_text
    from ..training.loop import run_training

    base = getattr(args, "checkpoint", None)
    def show(result):
        print(f"{'round':>5} {'loss':>8} {'val loss':>9} {'precision':>10} {'recall':>7} {'F1':>6} {'IoU':>6}")
        for h in result.history:
            mark = " *" if h["epoch"] == result.best_epoch else ""
            s = {k: "–" if h[k] is None else f"{h[k]:.3f}"
                 for k in ("val_precision", "val_recall", "val_f1", "val_iou")}
            print(f"{h['epoch']:>5} {h['loss']:>8.4f} {h['val_loss']:>9.4f} {s['val_precision']:>10} "
                  f"{s['val_recall']:>7} {s['val_f1']:>6} {s['val_iou']:>6}{mark}")
        print(f"\nCheckpoint: {result.checkpoint}  (stage {result.stage}, id {result.id}, best round "
              f"{result.best_epoch} marked *, threshold {result.threshold:g}, {result.seconds:.0f} s on "
              f"{result.device})")
        for text in (improvement_text(result.to_dict()), unreviewed_text(result.to_dict())):
            if text:
                print(text)

    return _run(args, lambda reporter: run_training(_train_job(args, base), reporter), show)


# -- run-job (worker): core/jobs/worker_entry.py ---------------------------------------------
def cmd_run_job(args) -> int:
    return run_job_command(args.spec, args.control)


# -- scene / demo ---------------------------------------------------------------------
def _scene_spec(args):
    from ..demo import SceneSpec

    kw = dict(size=args.size, pixel_size=args.pixel_size, seed=args.seed)
    if getattr(args, "years_list", None):
        years = tuple(int(y) for y in args.years_list.split(","))
        kw.update(years=years, event_year=years[min(1, len(years) - 1)])
    return SceneSpec(**kw)


def cmd_scene(args) -> int:
    from ..demo import load_or_generate

    def job_fn(reporter):
        return load_or_generate(args.output, _scene_spec(args), progress=reporter.progress)

    def show(manifest):
        for year, path in sorted(manifest.rasters.items()):
            print(f"{year}: {path}")
        print(f"truth: {manifest.truth_path}")

    return _run(args, job_fn, show)


def cmd_demo(args) -> int:
    from ..demo import load_or_generate
    from ..mapping.job import run_inference
    from ..inventory.metrics import pixel_scores
    from ..geodata.vector_io import read_layer

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

    def job_with_scores(reporter):
        result = job_fn(reporter)
        (Path(result.run_dir) / "accuracy.json").write_text(json.dumps(
            {str(y): s.to_dict() for y, s in scores.items()}, indent=2) + "\n")
        return result

    def show(result):
        print(f"\nDemo scene: {scene_dir} ({spec.size}×{spec.size} px, {spec.pixel_size:g} m)")
        print(f"Model:      {result.model} ({result.model_kind}, on {result.provider})")
        print(f"Run folder: {result.run_dir}  ({time.time() - t0:.1f} s)")
        print(f"Polygons:   {result.geopackage}\n")
        _print_inference_table(result, scores)
        print("\nPixel precision/recall/F1 against the scene's true landslide polygons "
              "(accuracy.json in the run folder).")
        _print_exponents(result, true_alpha[0])

    t0 = time.time()
    return _run(args, job_with_scores, show)


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
    from ..training.corpus.pretrained import (CASCADE_DESCRIPTION, REAL_LOSS, REAL_NAME, RGB_NAME, build_pretrained,
                             build_real_stages, build_rgb)
    from ..training.weight_storage import compact_checkpoint

    loss = args.loss or REAL_LOSS
    check_colour_jitter(args.colour_jitter)     # now, not after hours of procedural stages

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
                                    skip=args.skip_real, consolidation_steps=args.consolidation_steps,
                                    other_grounds=args.other_grounds, colour_jitter=args.colour_jitter)
        rgb = build_rgb(cascade, stages, args.workdir, steps=args.steps, max_steps=args.max_steps,
                        loss=loss, data_root=args.data, reporter=reporter.sub(0.8, 0.99),
                        other_grounds=args.other_grounds, colour_jitter=args.colour_jitter)
        # the bundled copies store float16 weights (core.training.weight_storage: the plugin ZIP's size)
        return [str(compact_checkpoint(cascade, args.output, REAL_NAME, CASCADE_DESCRIPTION)),
                str(compact_checkpoint(rgb, args.output, RGB_NAME))]

    def show(result):
        print(f"Bundled checkpoints: {', '.join(result)}")

    return _run(args, job, show)


def cmd_compact_checkpoint(args) -> int:
    from ..training.weight_storage import compact_checkpoint

    def job(reporter):
        reporter.progress(0.0, f"Storing the weights of {args.checkpoint} as float16")
        folder = compact_checkpoint(args.checkpoint, args.output, args.name)
        reporter.progress(1.0, "Done")
        return str(folder)

    def show(result):
        print(f"Compact checkpoint: {result}")

    return _run(args, job, show)


def cmd_build_baseline(args) -> int:
    from ..training.baseline import write_baseline

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
    from ..inventory.series import parse_layer_refs

    return parse_layer_refs(items)


def cmd_subtract(args) -> int:
    from ..inventory.analysis import run_subtract
    from .specs import SubtractJob

    def job_fn(reporter):
        job = SubtractJob(years=_layers(args.sources), output_dir=args.output, run_name=args.run_name,
                          pixel_size_m=args.pixel_size, sliver_px=args.sliver_px,
                          min_remnant_px=args.min_remnant_px)
        return run_subtract(job, reporter)

    def show(result):
        print(f"Run folder: {result.run_dir}")
        print(f"New and enlarged polygons: {result.geopackage}")
        _print_statistics(result)

    return _run(args, job_fn, show)


def cmd_fad(args) -> int:
    from ..inventory.analysis import run_analyse
    from .specs import AnalyseJob

    def job_fn(reporter):
        job = AnalyseJob(years=_layers(args.sources), output_dir=args.output, run_name=args.run_name,
                         min_area_m2=args.min_area, mapped_area_km2=args.mapped_area_km2,
                         extent=args.extent, bootstrap=args.bootstrap)
        return run_analyse(job, reporter)

    def show(result):
        print(f"Run folder: {result.run_dir}  (statistics.csv, statistics.json, charts/)")
        _print_statistics(result)

    return _run(args, job_fn, show)


def cmd_assess(args) -> int:
    from ..inventory.analysis import run_assess
    from .specs import AssessJob, GridRaster

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

    def show(result):
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

    return _run(args, job_fn, show)


# sub-command -> what runs it (the parser is core/jobs/cli_parser.py)
COMMANDS = {"infer": cmd_infer, "demo": cmd_demo, "scene": cmd_scene, "train": cmd_train, "finetune": cmd_train,
            "run-job": cmd_run_job, "subtract": cmd_subtract, "fad": cmd_fad, "assess": cmd_assess,
            "build-pretrained": cmd_build_pretrained, "compact-checkpoint": cmd_compact_checkpoint,
            "build-baseline": cmd_build_baseline}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LandslideMapperError as exc:  # raised before a job started (argument parsing)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 — outside a job (e.g. printing its result): still no traceback
        message, known, _report = faults.failure(exc, getattr(args, "output", None))
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR if known else EXIT_FAILED
