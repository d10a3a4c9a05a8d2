"""Calibrate and check the change evidence (core.inventory.change_evidence) on scenes that are not the
held-out benchmark.

Not a test. Scenes: the validation places of the bundled cascade (the north and west of
the Everest scene, 3 m and 5 m), fresh seeds of two training places (western Dolomites,
NAIP; places the model has seen, scenes it has not), each also as an 8-bit RGB rendering
(mapped with the RGB checkpoint), a third western Dolomites seed with clouds every year
after the first, and the unseen procedural validation scene. Zion and the
eastern Dolomites, the benchmark's held-out scenes (bench/real_texture.py), are never
used here, so the thresholds are not tuned on what judges them.

Every scene is mapped once with the evidence on; the new_<year> and unconfirmed_<year>
layers together hold every part subtraction found, with its measures, so any thresholds
can be replayed. For each pair of thresholds the new-in-year object F1 (the benchmark's
matching rule) is averaged over all scene-years after the first; the table shows the
best pairs and the shipped pair, per scene, against no evidence at all.

    .venv/bin/python bench/change_evidence.py [--work bench_output/change_evidence]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from real_scoring import map_scene, object_scores  # noqa: E402

from landslide_mapper.core.inventory import change_evidence as ce  # noqa: E402
from landslide_mapper.core.training.corpus.backgrounds import missing_files  # noqa: E402
from landslide_mapper.core.mapping.bundled import AUTO  # noqa: E402
from landslide_mapper.core.training.corpus.composite import CompositeSpec, load_or_generate  # noqa: E402
from landslide_mapper.core.demo import load_or_generate as load_demo  # noqa: E402
from landslide_mapper.core.names import changes_layer, unconfirmed_layer  # noqa: E402
from landslide_mapper.core.training.corpus.pretrained import DOLOMITES_WEST, PROCEDURAL_VALIDATION, REAL_VALIDATION  # noqa: E402
from landslide_mapper.core.geodata.vector_io import list_layers, read_layer  # noqa: E402

YEARS = (2017, 2018, 2019)
SCENES = {
    "everest_val_3m": REAL_VALIDATION[0].spec,
    "everest_val_5m": REAL_VALIDATION[1].spec,
    "dolomites_west_3m": CompositeSpec("dolomites", 61, "planetscope", size=(1024, 1024), years=YEARS,
                                       event_year=2018, region=DOLOMITES_WEST, event_density=12.0),
    "naip_3m": CompositeSpec("naip", 15, "planetscope", size=(1024, 1024), years=YEARS, event_year=2018,
                             event_density=12.0),
    # clouds in every year after the first (3-15 % of the scene each): where they hide an
    # old scar the year before, the scar looks new (the cloud rule's own check)
    "dolomites_west_cloudy": CompositeSpec("dolomites", 62, "planetscope", size=(1024, 1024), years=YEARS,
                                           event_year=2018, region=DOLOMITES_WEST, event_density=12.0,
                                           cloud_probability=1.0),
}
VISUAL = ("dolomites_west_3m", "naip_3m")
GRID = {"brightness_change": (0.1, 0.2, 0.3, 0.5, np.inf), "colour_change": (0.05, 0.075, 0.1, 0.15, 0.2, np.inf),
        "ndvi_change": (0.05, 0.075, 0.1, 0.15, 0.2, np.inf)}


def parts_of(run) -> dict[int, dict]:
    """Per year after the first: every part subtraction found, with its evidence fields."""
    have = set(list_layers(run.geopackage))
    out = {}
    for y in [y.year for y in run.years][1:]:
        layers = [read_layer(run.geopackage, name) for name in (changes_layer(y), unconfirmed_layer(y)) if name in have]
        geoms = np.concatenate([lay.geometries for lay in layers])
        fields = {k: np.concatenate([np.asarray(lay.fields[k]) for lay in layers])
                  for k in ("seen_before", *ce.COVER_FIELDS, *ce.MEASURES, "evidence")}
        out[y] = {"geoms": geoms, **{k: np.asarray(v, float) if k != "evidence" else v for k, v in fields.items()}}
    return out


def keep(p: dict, thresholds: dict, clouds: bool = True) -> np.ndarray:
    """The verdict of core.inventory.change_evidence.measure replayed with other thresholds
    (``clouds``: with the rule that a part covered in T−1 and clear in T was not observed)."""
    measured = ~np.isnan(p["brightness_change"])
    observed = p["seen_before"] >= ce.MIN_OBSERVED
    if clouds:
        observed &= ~covered(p)
    return observed & (~measured | ce.changed(p, thresholds))


def covered(p: dict) -> np.ndarray:
    """The parts whose ring was under an opaque cover in T−1 that is gone in T."""
    return ce.covered_then(*(p[k] for k in ce.COVER_FIELDS))


def text(thresholds: dict) -> str:
    return "(" + ", ".join(f"{k.split('_')[0]} {v:g}" for k, v in thresholds.items() if np.isfinite(v)) + ")"


def f1(p: dict, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    geoms = p["geoms"] if mask is None else p["geoms"][mask]
    s = object_scores(geoms, truth)
    return 0.0 if s["f1"] is None else s["f1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="bench_output/change_evidence")
    ap.add_argument("--model", default=AUTO)
    args = ap.parse_args()
    missing = missing_files({s.background for s in SCENES.values()})
    if missing:
        sys.exit(f"Backgrounds missing ({', '.join(missing)}): run in a checkout with ../shared/data.")
    work = Path(args.work)
    runs = {}
    for name, spec in SCENES.items():
        scene = load_or_generate(work / name, spec)
        runs[name] = (map_scene(args.model, scene.rasters, work / "runs", name), scene.truth_path)
        if name in VISUAL:
            visual = load_or_generate(work / f"{name}_visual", replace(spec, sensor="visual"))
            runs[f"{name}_rgb"] = (map_scene(args.model, visual.rasters, work / "runs", f"{name}_rgb"),
                                   visual.truth_path)
    demo = load_demo(work / "procedural", PROCEDURAL_VALIDATION.spec)
    runs["procedural_val"] = (map_scene(args.model, demo.rasters, work / "runs", "procedural_val"), demo.truth_path)

    cases = []              # (run name, year, parts, truth new polygons)
    for name, (run, truth_path) in runs.items():
        for y, p in parts_of(run).items():
            cases.append((name, y, p, read_layer(truth_path, changes_layer(y)).geometries))
    report: dict = {"cases": [f"{n} {y}" for n, y, _, _ in cases]}
    for kind, names in (("with NIR", lambda n: not n.endswith("_rgb")), ("RGB", lambda n: n.endswith("_rgb"))):
        chosen = [c for c in cases if names(c[0])]
        grid = []
        for values in itertools.product(*(GRID[k] if kind == "with NIR" or k != "ndvi_change" else (np.inf,)
                                          for k in ce.MEASURES)):
            thresholds = dict(zip(ce.MEASURES, values))
            scores = [f1(p, t, keep(p, thresholds)) for _, _, p, t in chosen]
            grid.append((float(np.mean(scores)), thresholds, scores))
        grid.sort(key=lambda g: -g[0])
        none = [f1(p, t) for _, _, p, t in chosen]
        shipped = [f1(p, t, keep(p, ce.THRESHOLDS)) for _, _, p, t in chosen]
        cloudless = [f1(p, t, keep(p, ce.THRESHOLDS, clouds=False)) for _, _, p, t in chosen]
        n_covered = [int(covered(p).sum()) for _, _, p, _ in chosen]
        print(f"\n### {kind}: new-in-year object F1 per scene-year\n")
        print(f"| scene | year | parts | covered in T−1 | no evidence | shipped without the cloud rule | "
              f"shipped {text(ce.THRESHOLDS)} | best thresholds |")
        print("|---|---|---|---|---|---|---|---|")
        for k, (n, y, p, _) in enumerate(chosen):
            print(f"| {n} | {y} | {len(p['geoms'])} | {n_covered[k]} | {none[k]:.3f} | {cloudless[k]:.3f} | "
                  f"{shipped[k]:.3f} | {grid[0][2][k]:.3f} |")
        print(f"| **mean** | | | {sum(n_covered)} | {np.mean(none):.3f} | {np.mean(cloudless):.3f} | "
              f"{np.mean(shipped):.3f} | {grid[0][0]:.3f} |")
        print("\nBest thresholds (mean F1):", "; ".join(f"{g[0]:.3f} {text(g[1])}" for g in grid[:8]))
        report[kind] = {"none": none, "shipped": shipped, "shipped_without_cloud_rule": cloudless,
                        "grid": [{"mean_f1": g[0], **g[1], "scores": g[2]}
                                 for g in grid]}
    (work / "result.json").write_text(json.dumps(report, indent=2, default=float))
    print(f"\nWritten {work / 'result.json'}")


if __name__ == "__main__":
    main()
