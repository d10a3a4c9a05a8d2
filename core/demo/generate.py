"""Writing a scene: every year's GeoTIFF block by block, the truth GeoPackage and the manifest;
reusing a scene already on disk."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import shapely

from ..errors import InputError
from ..names import changes_layer, landslides_layer
from ..geodata.vector_io import write_geopackage
from .plan import plan_scene
from .render import _cloud_opacity, _window_transform, render_block
from .spec import DEFAULT_BLOCK, GENERATOR_VERSION, SCENE_JSON, TRUTH_NAME, ProgressFn, SceneManifest, SceneSpec


def _raster_path(directory: Path, year: int) -> Path:
    return directory / f"scene_{year}.tif"


def generate_scene(directory: str | os.PathLike, spec: SceneSpec, progress: ProgressFn | None = None, *,
                   years: Sequence[int] | None = None, block_size: int = DEFAULT_BLOCK,
                   workers: int | None = None) -> SceneManifest:
    """Write ``scene_<year>.tif`` per year, ``truth.gpkg`` and ``scene.json`` into ``directory``.

    ``years`` restricts the rasters written (e.g. a single year for benchmarks); the
    truth always covers all of ``spec.years``.  ``block_size`` changes memory use
    and nothing else: pixels do not depend on it.
    """
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    spec.validate()
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    years = list(spec.years if years is None else years)
    unknown = [y for y in years if y not in spec.years]
    if unknown:
        raise InputError(f"Years {unknown} are not in the scene's years {list(spec.years)}.")
    block_size = max(16, int(block_size))
    report = progress or (lambda f, m: None)
    report(0.0, "Planning terrain, rivers and landslides")
    plan = plan_scene(spec)
    _remove_outputs(directory, spec.years)

    report(0.05, "Writing truth polygons")
    layers = plan.truth()
    write_geopackage(directory / TRUTH_NAME, layers)

    names = spec.band_names()
    profile = dict(driver="GTiff", width=spec.size, height=spec.size, count=len(names), dtype="uint16",
                   crs=f"EPSG:{spec.epsg}", transform=from_origin(plan.ox, plan.oy, plan.px, plan.px),
                   nodata=0, tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=2,
                   zlevel=6, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", interleave="pixel")
    partial = {y: Path(str(_raster_path(directory, y)) + ".partial") for y in years}
    blocks = [(r, min(r + block_size, spec.size), c, min(c + block_size, spec.size))
              for r in range(0, spec.size, block_size) for c in range(0, spec.size, block_size)]
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    dsts = {}
    try:
        with rasterio.Env(GDAL_CACHEMAX=256 * 2**20):  # bytes, as rasterio passes it on
            for y in years:
                dsts[y] = rasterio.open(partial[y], "w", **profile)
                for i, n in enumerate(names, 1):
                    dsts[y].set_band_description(i, n)
                dsts[y].update_tags(YEAR=str(y), SENSOR=spec.resolved_sensor(), SCALE="reflectance x 10000",
                                    GENERATOR=f"landslide_mapper demo_scene v{GENERATOR_VERSION} seed {spec.seed}")
            with ThreadPoolExecutor(max_workers=workers) as pool:
                pending = []
                todo = iter(blocks)
                done = 0

                def submit():
                    b = next(todo, None)
                    if b is not None:
                        pending.append((b, pool.submit(render_block, plan, *b, years)))

                for _ in range(workers + 1):
                    submit()
                while pending:
                    (r0, r1, c0, c1), fut = pending.pop(0)
                    arrays = fut.result()
                    submit()
                    for y, arr in arrays.items():
                        dsts[y].write(arr, window=Window(c0, r0, c1 - c0, r1 - r0))
                    done += 1
                    report(0.05 + 0.93 * done / len(blocks), f"Rendered block {done}/{len(blocks)}")
            for y in years:
                dsts[y].close()
        for y in years:
            os.replace(partial[y], _raster_path(directory, y))
    except BaseException:
        for ds in dsts.values():
            try:
                ds.close()
            except Exception:
                pass
        # the previous scene is already gone: leave no half scene behind either
        for p in list(partial.values()) + [directory / TRUTH_NAME]:
            if p.exists():
                p.unlink()
        raise

    manifest = SceneManifest(
        directory=str(directory),
        spec=spec,
        rasters={y: str(_raster_path(directory, y)) for y in years},
        truth_path=str(directory / TRUTH_NAME),
        band_names=names,
        true_powerlaw_alpha=float(spec.powerlaw_alpha),
        landslide_counts={y: len(layers[landslides_layer(y)]) for y in spec.years},
        new_counts={y: len(layers[changes_layer(y)]) for y in spec.years},
        footprints={y: plan.years[y].footprint.wkt for y in spec.years},
    )
    tmp = directory / (SCENE_JSON + ".partial")
    tmp.write_text(manifest.to_json())
    os.replace(tmp, directory / SCENE_JSON)
    report(1.0, "Demo scene ready")
    return manifest


def _remove_outputs(directory: Path, years: Iterable[int]) -> None:
    """Delete a previous scene's files (only the names this module writes)."""
    old = directory / SCENE_JSON
    targets = {directory / TRUTH_NAME, old}
    targets |= {_raster_path(directory, y) for y in years}
    if old.exists():
        try:
            targets |= {Path(p) for p in SceneManifest.load(directory).rasters.values()}
        except Exception:
            pass
    for p in targets:
        if p.exists() and p.parent == directory:
            p.unlink()


def load_or_generate(directory: str | os.PathLike, spec: SceneSpec, progress: ProgressFn | None = None,
                     **kwargs) -> SceneManifest:
    """Reuse the scene in ``directory`` if it was made from exactly ``spec``, else generate it."""
    directory = Path(directory)
    try:
        m = SceneManifest.load(directory)
    except Exception:
        m = None
    if m is not None and m.generator_version == GENERATOR_VERSION and m.spec.to_dict() == spec.to_dict() \
            and Path(m.truth_path).exists() and set(m.rasters) >= set(kwargs.get("years") or spec.years) \
            and all(Path(p).exists() for p in m.rasters.values()):
        if progress:
            progress(1.0, "Reusing the existing demo scene")
        return m
    return generate_scene(directory, spec, progress, **kwargs)


def cloud_cover_polygons(spec: SceneSpec, year: int, opacity: float = 0.5):
    """Where clouds hide the ground in ``year`` (opacity above ``opacity``), as one geometry.

    The truth keeps landslides under clouds (a mapper should report them as unseen, not
    absent); training labels must not, or a network learns that clouds are landslides."""
    import rasterio.features
    from shapely.geometry import shape

    plan = plan_scene(spec)
    yr = plan.years[int(year)]
    cover = _cloud_opacity(plan, yr, 0, plan.size, 0, plan.size)
    if cover is None:
        return shapely.Polygon()
    mask = (cover > opacity).astype(np.uint8)
    parts = [shape(g) for g, v in rasterio.features.shapes(mask, mask=mask.astype(bool),
                                                            transform=_window_transform(plan, 0, 0)) if v]
    return shapely.union_all(parts) if parts else shapely.Polygon()
