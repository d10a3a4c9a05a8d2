"""The multi-year mapping job: every year through tiled inference and vectorising.

All inputs are opened and checked before the first tile is predicted, so a bad third
year fails in seconds rather than after the first two have run.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import rasterio
from rasterio.transform import array_bounds

from ..geodata import crs as crs_rules
from ..geodata.bands import required_spectral
from ..inventory.analysis import analyse_series, change_layers
from ..inventory.change_evidence import confirm_changes
from ..geodata.area import area_of_interest
from .bundled import pick_model
from .cluster import map_years, parse_cluster
from ..errors import InputError
from .inference import GDAL_CACHE_BYTES, predict_raster
from ..jobs.specs import InferenceJob, job_to_json, pixels_text
from .model import OnnxModel
from ..names import (GEOPACKAGE, landslides_layer, probability_file, review_layer, uncertainty_file,
                    unconfirmed_layer)
from ..progress import WARNING_PREFIX, Reporter
from ..geodata.raster import YearRaster, target_crs_for
from ..inventory.series import from_layer
from .review import suggest_review_areas
from ..jobs.run_folder import RunFolder
from ..inventory.subtraction import SubtractionSettings, subtract_series
from .tiling import TileGrid
from ..geodata.vector_io import write_geopackage
from .vectorize import landslide_polygons, min_pixels_for, polygon_layer



@dataclass
class YearResult:
    year: int
    raster: str
    probability: str          # file name inside the run folder
    layer: str                # layer name inside the GeoPackage
    polygons: int
    total_area_m2: float
    mapped_area_km2: float    # valid (non-nodata) area that was mapped
    reprojected_from: str | None = None
    resampled_from_m: float | None = None      # the image's own pixel size when resampled
    pixel_size_m: float | None = None          # the pixel size it was mapped at
    uncertainty: str | None = None             # file name inside the run folder
    review_layer: str | None = None            # layer name inside the GeoPackage


@dataclass
class InferenceResult:
    run_dir: str
    geopackage: str
    model: str
    model_kind: str
    provider: str
    crs: str
    tile_size: int
    threshold: float
    years: list[YearResult] = field(default_factory=list)
    statistics: list[dict] = field(default_factory=list)   # per year, with the FAD fits
    changes: list[dict] = field(default_factory=list)      # per year after the first
    charts: list[str] = field(default_factory=list)        # relative to run_dir

    def to_dict(self) -> dict:
        return asdict(self)


# The bundled cascade (trained at 3-5 m) mapped a held-out scene resampled from 3 m to
# 1-12 m (bench/pixel_size.py, README): within 1.5 times of its pixel sizes F1 moved by
# at most 0.02 and resampling gained nothing; at 1-1.5 m resampling to 3 m gained 0.01-0.02,
# at 9 m and 12 m resampling to 5 m gained 0.07 and 0.16. Images further than this factor
# from the pixel sizes a model was trained on are resampled.
RESAMPLE_TOLERANCE = 1.5


def _target_resolution(px: float, trained: list[float]) -> float | None:
    """The pixel size to resample an image of ``px`` to, or None to keep it."""
    if not trained:
        return None
    lo, hi = min(trained), max(trained)
    if px < lo / RESAMPLE_TOLERANCE:
        return lo
    if px > hi * RESAMPLE_TOLERANCE:
        return hi
    return None


def open_years(job: InferenceJob, channels: list[str], log, trained_px: list[float] | None = None
               ) -> list[YearRaster]:
    """Open and check every year, in the CRS of the first one (see raster.target_crs_for),
    resampled to the model's pixel size where it is far off (``job.resample``)."""
    years = sorted(job.years, key=lambda y: y.year)
    target = target_crs_for(years[0].path, log) if Path(years[0].path).is_file() else None
    opened: list[YearRaster] = []
    spectral = required_spectral(channels)
    aoi = None
    try:
        for y in years:
            r = YearRaster(y.path, y.year, y.bands, y.reflectance_scale, target, log, nodata=y.nodata)
            px = math.sqrt(r.pixel_area)
            to = _target_resolution(px, trained_px or [])
            if to is not None and job.resample == "auto":
                r.close()
                r = YearRaster(y.path, y.year, y.bands, y.reflectance_scale, target, lambda _m: None, resolution=to,
                               nodata=y.nodata)
                log(f"Year {y.year}: {px:.3g} m pixels resampled to {to:g} m, the pixel size the model was "
                    f"trained on ({_trained_text(trained_px)}); set resample to 'off' to map them as they are.")
            elif to is not None:
                log(f"{WARNING_PREFIX}year {y.year} has {px:.3g} m pixels, more than {RESAMPLE_TOLERANCE:g} times "
                    f"off the pixel size the model was trained on ({_trained_text(trained_px)}), and resampling "
                    "is off: expect fewer and worse delineated landslides.")
            opened.append(r)
            if len(opened) == 1 and (job.area or job.bounds is not None):
                aoi = area_of_interest(job.area, job.bounds, job.bounds_crs, r.crs, log)
            if aoi is not None:
                r.clip(aoi)
            r.source_indexes(spectral)
            for text in r.inspect(spectral):
                log(f"{WARNING_PREFIX}{text}")
            if not r.has_valid_pixels(spectral):
                where = " inside the area of interest" if aoi is not None else ""
                raise InputError(f"Year {y.year}: {y.path} contains no valid pixels{where} (everything is "
                                 "nodata or masked); nothing can be mapped.")
        _check_overlap(opened, job.analyse, log)
    except BaseException:
        for r in opened:
            r.close()
        raise
    return opened


def _bounds(r: YearRaster) -> tuple[float, float, float, float]:
    return array_bounds(r.height, r.width, r.transform)


def _check_overlap(rasters: list[YearRaster], analyse: bool, log) -> None:
    """Every year must cover ground of the year before: subtracting disjoint years would call
    every landslide new. Refused when the analysis is on, a warning otherwise."""
    for before, after in zip(rasters, rasters[1:]):
        a, b = _bounds(before), _bounds(after)
        if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
            continue
        gap = math.hypot(max(0.0, b[0] - a[2], a[0] - b[2]), max(0.0, b[1] - a[3], a[1] - b[3]))
        text = (f"Year {after.year} ({after.path}) does not overlap year {before.year} ({before.path}): they are "
                f"{gap / 1000:,.1f} km apart")
        if analyse:
            raise InputError(f"{text}, so subtracting them would call every landslide new. Check that the files "
                             "show the same area, or map them in separate runs (or with the analysis off).")
        log(f"{WARNING_PREFIX}{text}; they are mapped, but are they the same area?")


# Memory one tile in flight takes, per pixel of the tile: the input batch and ONNX Runtime's
# activations. Measured with the bundled cascade on the CPU at 256-1024 px tiles: 480-580
# bytes (peak resident size over a batch of two).
BYTES_PER_TILE_PIXEL = 600
DEFAULT_MEMORY_BUDGET = 4 * 2**30          # when the free memory cannot be read


def memory_budget() -> int:
    """Half the memory free now (the rest for GDAL, the writers and the system)."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):        # Windows, macOS: no such sysconf names
        try:
            import psutil

            free = psutil.virtual_memory().available
        except ImportError:
            return DEFAULT_MEMORY_BUDGET
    return max(256 * 2**20, free // 2)


def plan_tiles(tile: int, overlap: int, batch: int, model: OnnxModel, rasters: list[YearRaster], log,
               budget: int | None = None) -> tuple[int, int, int]:
    """Tile size, overlap and batch size that fit the images and the memory: a tile larger
    than the largest image shrinks to it, a tile or batch that would not fit the memory
    budget shrinks to what does, a batch larger than the tiles that exist shrinks to them;
    each change is logged with its reason."""
    budget = memory_budget() if budget is None else budget
    multiple = max(1, model.metadata.size_multiple)
    if model.fixed_size is None:
        largest = max(max(r.height, r.width) for r in rasters)
        fit = max(multiple, math.ceil(largest / multiple) * multiple)
        if tile > fit:
            log(f"Tile size {tile} is larger than the largest image ({largest} px): using {fit}.")
            tile = fit
        most = int(math.sqrt(budget / BYTES_PER_TILE_PIXEL)) // multiple * multiple
        if tile > most >= multiple:
            log(f"Tile size {tile} would need {tile * tile * BYTES_PER_TILE_PIXEL / 2**30:.1f} GiB of memory for "
                f"one tile, more than the {budget / 2**30:.1f} GiB budget (half the free memory): using {most}.")
            tile = most
    if overlap >= tile:
        log(f"Overlap {overlap} is not smaller than the tile size {tile}: using {tile // 4}.")
        overlap = tile // 4
    tiles = max(len(TileGrid(r.height, r.width, tile, overlap)) for r in rasters)
    if batch > tiles:
        log(f"Batch size {batch} is more than the {tiles} tile(s) of the largest image: using {tiles}.")
        batch = tiles
    fits = max(1, budget // (tile * tile * BYTES_PER_TILE_PIXEL))
    if batch > fits:
        need = batch * tile * tile * BYTES_PER_TILE_PIXEL / 2**30
        log(f"A batch of {batch} tiles of {tile} px would need {need:.1f} GiB of memory, more than the "
            f"{budget / 2**30:.1f} GiB budget: using batches of {fits}.")
        batch = fits
    return tile, overlap, batch


def _check_size(job: InferenceJob, rasters: list[YearRaster], tile: int, log) -> None:
    """Say how large the job is; refuse one above ``job.max_pixels`` unless confirmed."""
    pixels = sum(r.width * r.height for r in rasters)
    tiles = sum(len(TileGrid(r.height, r.width, tile, job.overlap)) for r in rasters)
    log(f"This job maps {pixels_text(pixels)} in {tiles:,} tile(s) of {tile} px ({len(rasters)} year(s)).")
    if job.max_pixels is not None and pixels > job.max_pixels:
        raise InputError(f"This job would map {pixels_text(pixels)} in {tiles:,} tile(s), more than the "
                         f"{pixels_text(job.max_pixels)} allowed without confirmation: that can take many "
                         "hours. Map an area of interest (area or bounds), or confirm that you want it all "
                         "(--yes on the command line, max_pixels null in a job file, Yes in the dock).")


def _trained_text(px) -> str:
    lo, hi = min(px), max(px)
    return f"{lo:g} m" if lo == hi else f"{lo:g}-{hi:g} m"


def run_inference(job: InferenceJob, reporter: Reporter | None = None) -> InferenceResult:
    reporter = reporter or Reporter()
    job.validate()
    model = OnnxModel(pick_model(job.model, job.years, reporter.log), job.device, log=reporter.log)
    meta = model.metadata
    tile = job.tile_size or model.fixed_size or meta.tile_size
    if model.fixed_size is not None and tile != model.fixed_size:
        raise InputError(f"The model {model.path.name} takes fixed {model.fixed_size}×{model.fixed_size} "
                         f"tiles; tile size {tile} cannot be used.")
    threshold = job.threshold if job.threshold is not None else meta.threshold
    if not 0 <= job.overlap < tile and job.tile_size is not None:
        raise InputError(f"Overlap {job.overlap} must be smaller than the tile size ({tile}).")
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        rasters = open_years(job, meta.channels, reporter.log, meta.pixel_size)
        try:
            tile, overlap, batch = plan_tiles(tile, job.overlap, job.batch_size, model, rasters, reporter.log)
            job = replace(job, overlap=overlap, batch_size=batch)
            _check_size(job, rasters, tile, reporter.log)
            return _map_years(job, model, rasters, tile, threshold, reporter)
        finally:
            for r in rasters:
                r.close()


def _map_here(job, model, rasters, tile, threshold, run, reporter, share) -> list[tuple[int, object]]:
    """Every year in this process, one after another: (valid pixels, landslide layer) each."""
    out = []
    n = len(rasters)
    for i, raster in enumerate(rasters):
        part = reporter.sub(i / n * share, (i + 1) / n * share)
        part.log(f"Year {raster.year}: {raster.path} ({raster.width}×{raster.height} px, "
                 f"bands {raster.mapping.describe()})")
        prob = run.path(probability_file(raster.year))
        unc = run.path(uncertainty_file(raster.year)) if job.uncertainty else None
        stats = predict_raster(raster, model, prob, tile, job.overlap, job.batch_size, threshold,
                               part.sub(0.0, 0.9), tta=job.tta, uncertainty_path=unc)
        layer = landslide_polygons(prob, raster.year, threshold, job.min_area_m2, raster.crs.to_wkt(),
                                   part.sub(0.9, 1.0))
        out.append((stats.valid_pixels, layer))
    return out


def _map_years(job, model, rasters, tile, threshold, reporter) -> InferenceResult:
    crs = rasters[0].crs
    result_years: list[YearResult] = []
    layers = {}
    execution = parse_cluster(job.cluster)
    with RunFolder(job.output_dir, job.run_name, reporter.log) as run:
        (run.path("job.json")).write_text(job_to_json(job, absolute=True) + "\n")
        mapping_share = 0.95 if job.analyse else 1.0
        if execution.distributed:
            min_pixels = [min_pixels_for(r.pixel_area, job.min_area_m2) for r in rasters]
            outcomes = map_years(execution, job, model, rasters, tile, threshold, run,
                                 reporter.sub(0.0, mapping_share), min_pixels)
            mapped = [(o.valid_pixels, polygon_layer(o.regions[0], o.regions[2], r.year, job.min_area_m2,
                                                     crs.to_wkt())) for o, r in zip(outcomes, rasters)]
        else:
            mapped = _map_here(job, model, rasters, tile, threshold, run, reporter, mapping_share)
        for raster, (valid_pixels, layer) in zip(rasters, mapped):
            prob_name = probability_file(raster.year)
            unc_name = uncertainty_file(raster.year) if job.uncertainty else None
            name = landslides_layer(raster.year)
            layers[name] = layer
            review = None
            if unc_name and job.review_areas:
                review = review_layer(raster.year)
                layers[review] = suggest_review_areas(run.path(unc_name), run.path(prob_name), raster.year,
                                                      threshold, count=job.review_areas, crs_wkt=crs.to_wkt())
                reporter.log(f"Year {raster.year}: {len(layers[review])} suggested review areas ({review}).")
            result_years.append(YearResult(
                year=raster.year, raster=raster.path, probability=prob_name, layer=name,
                polygons=len(layer), total_area_m2=round(float(layer.fields["area_m2"].sum()), 2),
                mapped_area_km2=round(valid_pixels * raster.pixel_area / 1e6, 4),
                reprojected_from=raster.reprojected_from,
                resampled_from_m=None if raster.resampled_from is None else round(raster.resampled_from, 4),
                pixel_size_m=round(math.sqrt(raster.pixel_area), 4), uncertainty=unc_name, review_layer=review))
            reporter.log(f"Year {raster.year}: {len(layer)} landslide polygons, "
                         f"{result_years[-1].total_area_m2:,.0f} m².")
        reporter.check_cancelled()
        analysis = None
        if job.analyse:
            series = [from_layer(y.year, y.layer, layers[y.layer], crs, ("mean_prob",))
                      for y in result_years]
            changes = subtract_series(series, SubtractionSettings.for_pixel_size(
                math.sqrt(rasters[0].pixel_area)), reporter.sub(0.95, 0.955))
            aside = []
            if job.confirm_changes:
                changes, aside = confirm_changes(changes, {r.year: r for r in rasters},
                                                 {y.year: layers[y.layer].geometries for y in result_years},
                                                 reporter.sub(0.955, 0.96))
            layers.update(change_layers(changes, crs.to_wkt()))
            layers.update({unconfirmed_layer(c.year): c.to_layer(crs.to_wkt()) for c in aside if len(c)})
        write_geopackage(run.path(GEOPACKAGE), layers)
        if job.analyse:
            analysis = analyse_series(series, run, reporter.sub(0.96, 0.995),
                                      {y.year: y.mapped_area_km2 for y in result_years},
                                      "valid pixels", changes, true_exponent=job.reference_exponent)
        result = InferenceResult(
            run_dir=".", geopackage=GEOPACKAGE, model=str(model.path), model_kind=model.metadata.kind,
            provider=model.provider, crs=crs_rules.describe(crs), tile_size=tile, threshold=threshold,
            years=result_years)
        if analysis is not None:
            result.statistics, result.changes, result.charts = \
                analysis.statistics, analysis.changes, analysis.charts
        run.path("summary.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        reporter.progress(1.0, "done")  # the last cancellation point: after it, the run stands
        final = run.commit()
    result.run_dir = str(final)
    result.geopackage = str(final / GEOPACKAGE)
    return result
