"""How the bundled checkpoints are made: a cascade, stage after stage, region after region.

Like the papers' cascade, each stage fine-tunes the previous one on a new region, plus a
rehearsal of the earlier regions' event years against forgetting.

* Stages 1-5 (``REGIONS``, the first release): procedural demo scenes with different
  terrain, sun, sensor (3 m PlanetScope-like, 5 m RapidEye-like), haze and clouds.
* Stages 6-8 (``REAL_STAGES``): scenes composited from real imagery and real landslide
  outlines (:mod:`composite`): the NAIP aerial tile (7 real years: fields, ponds, roads),
  the western part of the Sentinel-2 Dolomites (forest, scree, debris channels, a town),
  the south-eastern part of the Landsat Everest scene (sparse vegetation, rock, snow).
  Validation is by place, on crops of the Everest scene that no training crop overlaps,
  plus an unseen procedural scene, so the calibrated threshold is judged on unseen
  ground. The Zion background, the Dolomites' eastern part and the benchmark outline set
  are never used: they are ``bench/real_texture.py``'s held-out test. Two optional
  stages are not part of the default build: ``OTHER_GROUNDS`` (the training places dried
  and tinted) and a consolidation (:func:`consolidate`).
* The RGB checkpoint fine-tunes the final cascade stage to R, G, B inputs (the input
  layers keep the weights of those bands) on the same scenes plus 8-bit "visual" RGB
  renderings of them.

Every year of every scene is used, with the truth minus what clouds hide as labels.
``python -m landslide_mapper build-pretrained`` reruns it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import shapely

from .composite import CompositeSpec
from .composite import load_or_generate as load_or_generate_composite
from ...demo import SceneSpec, cloud_cover_polygons, load_or_generate
from ...names import landslides_layer
from ...errors import InputError
from ...jobs.specs import TrainingSource, TrainJob
from ...progress import Reporter
from ...geodata.vector_io import VectorLayer, read_layer, write_geopackage

NAME = "landslide_cascade_v1"      # the procedural stages 1-5 alone (the first release)
REAL_NAME = "landslide_cascade_v2"
RGB_NAME = "landslide_rgb_v1"
REAL_LOSS = "dice"                  # chosen by bench/loss_choice.py (README, "Loss")


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
        truth = read_layer(manifest.truth_path, landslides_layer(year))
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
    from ..loop import run_training

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



# -- real-texture stages ------------------------------------------------------------------

@dataclass(frozen=True)
class RealScene:
    name: str
    spec: CompositeSpec


DOLOMITES_WEST = (0.0, 0.0, 0.55, 1.0)      # training scenes are cut from here,
DOLOMITES_EAST = (0.56, 0.0, 1.0, 1.0)     # the second benchmark scene from here
# Everest's validation scenes are crops (by their seeds) of its northern and western parts;
# this south-eastern part overlaps neither, so the sparsely vegetated high mountains can be
# trained on while the validation places stay unseen.
EVEREST_SOUTH_EAST = (0.45, 0.555, 1.0, 1.0)
REAL_STAGES = (
    ("NAIP aerial (composited, 3 m and 5 m)", "composited real outlines", (
        RealScene("NAIP 3 m", CompositeSpec("naip", 11, "planetscope", size=(1024, 1024), event_density=10.0)),
        RealScene("NAIP 3 m b", CompositeSpec("naip", 13, "planetscope", size=(1024, 1024), event_density=16.0,
                                              cloud_probability=0.4)),
        RealScene("NAIP 5 m", CompositeSpec("naip", 12, "rapideye", size=None, event_density=14.0)),
    )),
    ("Sentinel-2 Dolomites, western part (composited, 3 m and 5 m)", "composited real outlines", (
        RealScene("Dolomites W 3 m", CompositeSpec("dolomites", 51, "planetscope", size=(1024, 1024),
                                                   region=DOLOMITES_WEST, event_density=14.0)),
        RealScene("Dolomites W 3 m b", CompositeSpec("dolomites", 53, "planetscope", size=(1024, 1024),
                                                     region=DOLOMITES_WEST, event_density=10.0,
                                                     cloud_probability=0.4)),
        RealScene("Dolomites W 5 m", CompositeSpec("dolomites", 52, "rapideye", size=(1024, 1024),
                                                   region=DOLOMITES_WEST, event_density=16.0)),
    )),
    ("Landsat Everest, south-eastern part (composited, 3 m and 5 m)", "composited real outlines", (
        RealScene("Everest SE 3 m", CompositeSpec("everest", 33, "planetscope", size=(1024, 864),
                                                  region=EVEREST_SOUTH_EAST, event_density=14.0)),
        RealScene("Everest SE 5 m", CompositeSpec("everest", 34, "rapideye", size=(1024, 864),
                                                  region=EVEREST_SOUTH_EAST, event_density=14.0,
                                                  cloud_probability=0.4)),
    )),
)
# Optional stage (``build-pretrained --other-grounds``, not in the default build): the same
# training places with their vegetation stripped to arid soil and rock
# (CompositeSpec.bare_ground) and with the ground's colour changed (CompositeSpec.ground_tint),
# so that a scar is told by its contrast to its own ground, validated also on a dried and
# tinted crop of a validation place. It rehearses the event years of all five procedural
# regions, not only two: with two it halved the procedural demo's co-event recall
# (0.89 -> 0.46). Its held-out gains were mixed and it lowered the demo's F1 (README, "The
# bundled checkpoints"), so it is left out of the shipped cascade.
OTHER_GROUNDS = (
    "Other grounds: the training places dried and tinted (composited, 3 m and 5 m)", "composited real outlines", (
        RealScene("Dolomites W 3 m, dry", CompositeSpec("dolomites", 55, "planetscope", size=(1024, 1024),
                                                        region=DOLOMITES_WEST, event_density=14.0,
                                                        bare_ground=1.0, ground_tint=0.2)),
        RealScene("Dolomites W 5 m, half dry", CompositeSpec("dolomites", 56, "rapideye", size=(1024, 1024),
                                                             region=DOLOMITES_WEST, event_density=14.0,
                                                             cloud_probability=0.4, bare_ground=0.7,
                                                             ground_tint=0.2)),
        RealScene("Dolomites W 3 m, tinted", CompositeSpec("dolomites", 57, "planetscope", size=(1024, 1024),
                                                           region=DOLOMITES_WEST, event_density=14.0,
                                                           ground_tint=0.35)),
        RealScene("Everest SE 3 m, dry", CompositeSpec("everest", 35, "planetscope", size=(1024, 864),
                                                       region=EVEREST_SOUTH_EAST, event_density=14.0,
                                                       bare_ground=1.0, ground_tint=0.2)),
        RealScene("NAIP 3 m, tinted", CompositeSpec("naip", 15, "planetscope", size=(1024, 1024),
                                                    event_density=12.0, ground_tint=0.35)),
    ))
REAL_VALIDATION = (
    RealScene("Everest 3 m (validation)", CompositeSpec("everest", 31, "planetscope", size=(768, 768))),
    RealScene("Everest 5 m (validation)", CompositeSpec("everest", 32, "rapideye", size=(640, 640))),
)
# with the other-grounds stage: the first validation place (a crop depends on seed and size
# only), dried and tinted
OTHER_GROUNDS_VALIDATION = RealScene("Everest 3 m, dry (validation)", CompositeSpec(
    "everest", 31, "planetscope", size=(768, 768), bare_ground=1.0, ground_tint=0.2))
PROCEDURAL_VALIDATION = Region("Foxtrot: 3 m, unseen (validation)", SceneSpec(
    size=512, pixel_size=3.0, seed=606, relief=1000.0, sun_azimuth=135.0, sun_elevation=50.0,
    landslide_density=18.0), "")
# The benchmark's held-out scenes (bench/real_texture.py), three years as a user would map
# them, with the benchmark outline set: Zion, a background no training or validation scene
# uses (its forested northern plateau and canyons), and the Dolomites' eastern part, a
# place the training scenes (cut from the western part) never show.
HELD_OUT = CompositeSpec("zion", 41, "planetscope", size=(1600, 1200), years=(2017, 2018, 2019),
                         event_year=2018, outlines="benchmark", event_density=12.0, region=(0.25, 0.0, 1.0, 0.6))
HELD_OUT_PLACE = CompositeSpec("dolomites", 42, "planetscope", size=(880, 1200), years=(2017, 2018, 2019),
                               event_year=2018, outlines="benchmark", event_density=12.0, region=DOLOMITES_EAST)
VISUAL_SCENES = (
    RealScene("NAIP 3 m, 8-bit RGB", CompositeSpec("naip", 14, "visual", size=(1024, 1024), event_density=14.0)),
    RealScene("Dolomites W 3 m, 8-bit RGB", CompositeSpec("dolomites", 54, "visual", size=(1024, 1024),
                                                          region=DOLOMITES_WEST, event_density=14.0)),
)


def scene_folder_name(spec: CompositeSpec) -> str:
    """The work folder of a composited scene: background and seed, and how its ground was
    changed (a dried crop shares its plain twin's seed, so that it is the same place)."""
    changed = (f"_dry{spec.bare_ground:g}" if spec.bare_ground else "") + \
        (f"_tint{spec.ground_tint:g}" if spec.ground_tint else "")
    return f"composite_{spec.background}_{spec.seed}{changed}"


def composite_sources(scene: RealScene, workdir: Path, reporter: Reporter, split: str = "auto",
                      years=None, data_root=None) -> list[TrainingSource]:
    """One training source per year of a composited scene: its raster and its labels layer."""
    folder = workdir / scene_folder_name(scene.spec)
    m = load_or_generate_composite(folder, scene.spec, data_root, progress=reporter.progress)
    return [TrainingSource(raster=m.rasters[y], labels=m.truth_path, labels_layer=f"labels_{y}",
                           region=scene.name, year=y, split=split)
            for y in sorted(m.rasters) if years is None or y in years]


def validation_sources(workdir: Path, reporter: Reporter, data_root=None,
                       other_grounds: bool = False) -> list[TrainingSource]:
    out = []
    for scene in REAL_VALIDATION + ((OTHER_GROUNDS_VALIDATION,) if other_grounds else ()):
        out += composite_sources(scene, workdir, reporter, "validation", data_root=data_root)
    out += [replace(s, split="validation") for s in region_sources(PROCEDURAL_VALIDATION, workdir, reporter)]
    return out


CASCADE_DESCRIPTION = (
    "Bundled Landslide Mapper cascade checkpoint: five procedural stages, then stages on scenes composited "
    "from real imagery (NAIP aerial, North Dakota; Sentinel-2, the western Dolomites; Landsat, the south-east "
    "of an Everest scene) and real landslide outlines (Wenchuan, Rasuwa), each rehearsing the event years of "
    "the earlier regions, all validated on places no stage trains on (the north and west of that Everest "
    "scene, an unseen procedural scene). It has never seen real landslides in real imagery, Zion or the "
    "eastern Dolomites (the benchmark), or PlanetScope/RapidEye data itself.")


def _rehearsal(sources: list[TrainingSource]) -> list[TrainingSource]:
    return [replace(s, region=f"{s.region} (rehearsal)") for s in sources]


def build_real_stages(base: str, output_dir: str, workdir: str, steps: int = 1500, batch_size: int = 16,
                      loss: str = REAL_LOSS, reporter: Reporter | None = None, data_root=None,
                      max_steps: int | None = None, consolidation_steps: int = 0, skip: int = 0,
                      other_grounds: bool = False, colour_jitter: float = 0.0, seed: int = 100) -> str:
    """The real-texture stages (``REAL_STAGES``, with ``other_grounds`` also ``OTHER_GROUNDS``)
    on top of ``base`` (the procedural cascade), their patches' colours jittered by
    ``colour_jitter`` (``TrainJob.colour_jitter``), stage k seeded ``seed`` + k (another
    seed repeats a setting with other random draws), and with ``consolidation_steps`` a
    consolidation stage (:func:`consolidate`); returns the final checkpoint. With ``skip`` = k,
    ``base`` is the checkpoint of the first k real-texture stages, which are not trained
    again (their event years are still rehearsed)."""
    from ..loop import run_training

    reporter = reporter or Reporter()
    work = Path(workdir)
    val = validation_sources(work, reporter.sub(0, 0.02), data_root, other_grounds)
    # rehearsal of the procedural regions: the event year of a 3 m and of a 5 m one (of all
    # five in the other-grounds stage)
    procedural = [_rehearsal([s for s in region_sources(r, work, reporter.sub(0, 0.02))
                              if s.year == r.spec.event_year]) for r in REGIONS[:5 if other_grounds else 2]]
    replay = [s for sources in procedural[:2] for s in sources]
    stages = _real_stages(other_grounds)
    checkpoint = base
    for k, (region, trigger, scenes) in enumerate(stages):
        sub = reporter.sub(0.02 + 0.8 * k / len(stages), 0.02 + 0.8 * (k + 1) / len(stages))
        own = [s for scene in scenes for s in composite_sources(scene, work, sub.sub(0, 0.05), data_root=data_root)]
        if k >= skip:
            wide = [s for sources in procedural[2:] for s in sources] if k >= len(REAL_STAGES) else []
            reporter.log(f"Real-texture stage {k + 1}/{len(stages)}: {region} ({len(own)} scene-years, "
                         f"{len(replay) + len(wide)} rehearsed)")
            job = TrainJob(
                sources=own + replay + wide + val, output_dir=str(work / "stages"), name=f"real{k + 1}",
                base_checkpoint=checkpoint, steps=steps, batch_size=batch_size, learning_rate=3e-4, loss=loss,
                patience=4, seed=seed + k, trigger=trigger, hard_negative_weight=2.0, max_steps_per_epoch=max_steps,
                colour_jitter=colour_jitter)
            result = run_training(job, sub.sub(0.05, 1.0))
            reporter.log(f"Stage {result.stage}: validation F1 {result.validation.get('f1')} (base "
                         f"{result.base_validation and result.base_validation.get('f1')}), {result.checkpoint}")
            checkpoint = result.checkpoint
        replay += _rehearsal([s for s in own if s.year == scenes[0].spec.resolved_event_year])
    if not consolidation_steps:
        return checkpoint
    return consolidate(checkpoint, output_dir, workdir, consolidation_steps, batch_size, loss,
                       reporter.sub(0.82, 1.0), data_root, max_steps, other_grounds, colour_jitter)


def _real_stages(other_grounds: bool) -> tuple:
    return REAL_STAGES + ((OTHER_GROUNDS,) if other_grounds else ())


def consolidate(base: str, output_dir: str, workdir: str, steps: int = 800, batch_size: int = 16,
                loss: str = REAL_LOSS, reporter: Reporter | None = None, data_root=None,
                max_steps: int | None = None, other_grounds: bool = False, colour_jitter: float = 0.0) -> str:
    """A last cascade stage, kept only when it is better than ``base`` on the validation
    patches (else ``base`` is returned): a gentle pass (lower learning rate, no hard-negative
    weight) over the event year of every region, procedural and real, against forgetting.
    Not part of the default build: after the Everest stage it raised the procedural demo's
    co-event F1 from 0.84 to 0.91 but lowered F1 on the real validation places (README,
    "The bundled checkpoints")."""
    from ..loop import run_training

    reporter = reporter or Reporter()
    work = Path(workdir)
    val = validation_sources(work, reporter.sub(0, 0.05), data_root, other_grounds)
    sources = _rehearsal([s for r in REGIONS for s in region_sources(r, work, reporter.sub(0, 0.05))
                          if s.year == r.spec.event_year])
    sources += _rehearsal([s for _, _, scenes in _real_stages(other_grounds) for scene in scenes
                           for s in composite_sources(scene, work, reporter.sub(0, 0.05), data_root=data_root)
                           if s.year == scene.spec.resolved_event_year])
    reporter.log(f"Consolidation: {len(sources)} event years of every region.")
    job = TrainJob(
        sources=sources + val, output_dir=output_dir, name=REAL_NAME, base_checkpoint=base, steps=steps,
        batch_size=batch_size, learning_rate=1e-4, loss=loss, patience=4, seed=150, trigger="every region's event",
        hard_negative_weight=1.0, max_steps_per_epoch=max_steps, description=CASCADE_DESCRIPTION,
        colour_jitter=colour_jitter)
    result = run_training(job, reporter.sub(0.05, 1.0))
    if result.improved is False:
        reporter.log(f"The consolidation is not better than its base on the validation places: the cascade "
                     f"ends with {base}.")
        return base
    return result.checkpoint


def build_rgb(base: str, output_dir: str, workdir: str, steps: int = 1500, batch_size: int = 16,
              loss: str = REAL_LOSS, reporter: Reporter | None = None, data_root=None,
              max_steps: int | None = None, other_grounds: bool = False, colour_jitter: float = 0.0) -> str:
    """The RGB checkpoint: ``base`` (the final cascade) reduced to R, G, B and fine-tuned."""
    from ..loop import run_training

    reporter = reporter or Reporter()
    work = Path(workdir)
    val = validation_sources(work, reporter.sub(0, 0.05), data_root, other_grounds)
    sources = [s for _, _, scenes in _real_stages(other_grounds) for scene in scenes
               for s in composite_sources(scene, work, reporter.sub(0, 0.05), data_root=data_root)]
    sources += [s for scene in VISUAL_SCENES
                for s in composite_sources(scene, work, reporter.sub(0, 0.05), data_root=data_root)]
    sources += [replace(s, region=f"{s.region} (rehearsal)") for s in region_sources(REGIONS[0], work, reporter)
                if s.year == REGIONS[0].spec.event_year]
    job = TrainJob(
        sources=sources + val, output_dir=output_dir, name=RGB_NAME, base_checkpoint=base,
        channels=["R", "G", "B"], steps=steps, batch_size=batch_size, learning_rate=5e-4, loss=loss, patience=4,
        seed=200, trigger="composited real outlines", max_steps_per_epoch=max_steps, colour_jitter=colour_jitter,
        description=("Bundled Landslide Mapper RGB checkpoint for 3-band imagery (orthophotos, drone mosaics, "
                     "visual products): the cascade reduced to R, G, B and fine-tuned on scenes composited "
                     "from real imagery and real outlines, in surface reflectance and as 8-bit stretched "
                     "RGB. Without NIR it separates bare scars from bare fields and rock less well than "
                     "the 4-band cascade."))
    return run_training(job, reporter.sub(0.05, 1.0)).checkpoint
