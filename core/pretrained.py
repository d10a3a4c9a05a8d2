"""How the bundled cascade checkpoint is made: stage after stage over procedural regions.

Like the papers' cascade, each stage fine-tunes the previous one on a new region (plus a
rehearsal of the earlier regions' event years, against forgetting). Our
"regions" are demo scenes with different terrain, sun, sensor (3 m PlanetScope-like and
5 m RapidEye-like), haze and clouds. Every year of every region is used, with the truth
minus what clouds hide as labels. ``python -m landslide_mapper build-pretrained`` reruns it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import shapely

from .demo_scene import SceneSpec, cloud_cover_polygons, load_or_generate
from .errors import InputError
from .jobs import TrainingSource, TrainJob
from .progress import Reporter
from .vector_io import VectorLayer, read_layer, write_geopackage

NAME = "landslide_cascade_v1"


@dataclass(frozen=True)
class Region:
    name: str
    spec: SceneSpec
    trigger: str


# Seeds differ from the demo's (7) and from anything the tests use, so the demo scene is unseen.
REGIONS = (
    Region("Alpha: 3 m, rugged, morning sun, dense event", SceneSpec(
        size=1024, pixel_size=3.0, seed=101, relief=900.0, sun_azimuth=120.0, sun_elevation=45.0,
        landslide_density=18.0), "earthquake"),
    Region("Bravo: 5 m RapidEye-like, high relief, low sun", SceneSpec(
        size=768, pixel_size=5.0, seed=202, relief=1500.0, sun_azimuth=160.0, sun_elevation=30.0,
        cloud_cover=0.10), "monsoon rainfall"),
    Region("Charlie: 3 m, gentle hills, high sun, cloudy", SceneSpec(
        size=1024, pixel_size=3.0, seed=303, relief=450.0, hurst=0.7, sun_azimuth=200.0, sun_elevation=65.0,
        cloud_years=(2017, 2019), cloud_cover=0.12), "typhoon rainfall"),
    Region("Delta: 5 m, steep, afternoon sun", SceneSpec(
        size=768, pixel_size=5.0, seed=404, relief=1200.0, hurst=0.85, sun_azimuth=240.0, sun_elevation=40.0,
        landslide_density=16.0), "earthquake"),
    Region("Echo: 3 m, very dense event, hazy", SceneSpec(
        size=1024, pixel_size=3.0, seed=505, relief=1100.0, sun_azimuth=150.0, sun_elevation=55.0,
        landslide_density=22.0, powerlaw_alpha=2.1), "earthquake"),
)


def region_sources(region: Region, workdir: Path, reporter: Reporter) -> list[TrainingSource]:
    """One training source per year of the region's scene, labels = visible truth."""
    scene_dir = workdir / f"region_{region.spec.seed}"
    manifest = load_or_generate(scene_dir, region.spec, progress=reporter.progress)
    sources = []
    for year, raster in sorted(manifest.rasters.items()):
        truth = read_layer(manifest.truth_path, f"landslides_{year}")
        clouds = cloud_cover_polygons(region.spec, year)
        geoms = truth.geometries
        if not clouds.is_empty:
            geoms = shapely.difference(geoms, clouds)
            geoms = geoms[~shapely.is_empty(geoms)]
        labels = scene_dir / f"labels_{year}.gpkg"
        labels.unlink(missing_ok=True)  # our own scratch file, derived from the (re)generated scene
        write_geopackage(labels, {"landslides": VectorLayer(geoms, {"year": np.full(len(geoms), year)},
                                                             truth.crs_wkt)})
        sources.append(TrainingSource(raster=str(raster), labels=str(labels), region=region.name, year=year))
    return sources


def build_pretrained(output_dir: str, workdir: str, epochs: int = 24, base_filters: int = 16,
                     finetune_epochs: int = 8, batch_size: int = 16, max_steps: int | None = None,
                     regions: int = len(REGIONS), reporter: Reporter | None = None) -> str:
    """Train the cascade; returns the final checkpoint folder (earlier stages stay in workdir)."""
    from .training import run_training

    reporter = reporter or Reporter()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    if not 1 <= regions <= len(REGIONS):
        raise InputError(f"The cascade has 1 to {len(REGIONS)} regions, not {regions}.")
    chosen = REGIONS[:regions]
    checkpoint = None
    replay: list[TrainingSource] = []
    for k, region in enumerate(chosen):
        sub = reporter.sub(k / len(chosen), (k + 1) / len(chosen))
        reporter.log(f"Stage {k + 1}/{len(chosen)}: {region.name}")
        own = region_sources(region, work, sub.sub(0.0, 0.1))
        # Rehearsal: each stage also sees the event year of every earlier region. Without
        # it a stage on 5 m imagery erased most of what the 3 m stage had learnt (unseen
        # 3 m co-event F1 0.88 -> 0.33): sequential fine-tuning forgets.
        sources = own + replay
        replay += [replace(s, region=f"{s.region} (rehearsal)") for s in own if s.year == region.spec.event_year]
        last = k == len(chosen) - 1
        job = TrainJob(
            sources=sources, output_dir=str(output_dir if last else work / "stages"),
            name=NAME if last else f"stage{k + 1}", base_checkpoint=checkpoint,
            base_filters=base_filters, epochs=epochs if checkpoint is None else finetune_epochs,
            batch_size=batch_size, learning_rate=1e-3 if checkpoint is None else 3e-4,
            loss="adsms", patience=6, seed=k, trigger=region.trigger, max_steps_per_epoch=max_steps,
            description=("Bundled Landslide Mapper cascade checkpoint, trained only on procedural demo "
                         "scenes (no real imagery): five synthetic regions, stage after stage. A starting "
                         "point to fine-tune on real, corrected polygons, not a validated model for real "
                         "Planet data." if checkpoint is None else ""))
        result = run_training(job, sub.sub(0.1, 1.0))
        f1 = result.validation.get("f1")
        reporter.log(f"Stage {k + 1}: validation F1 {'–' if f1 is None else f'{f1:.3f}'} ({result.checkpoint})")
        checkpoint = result.checkpoint
    return str(checkpoint)

