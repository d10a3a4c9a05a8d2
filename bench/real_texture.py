"""Does the bundled model find landslides on real ground it has never seen, and does one
corrected area make it better? The held-out real-texture benchmark.

Not a test. The held-out scenes (``core.training.corpus.pretrained.HELD_OUT``, ``HELD_OUT_PLACE``) are
real imagery with real landslide outlines of the benchmark set (Rasuwa, and the east of
Wenchuan) composited in over three years: Landsat Zion (a background no training or
validation scene uses) and the eastern Dolomites (a place of a background whose western
part is in training). For each:

1. Zero-shot: every year mapped with the model (``auto``: the bundled cascade), scored on
   the whole scene and on its eastern half.
2. Fine-tuning as a user would do it: the truth of the western half of every year as the
   corrected polygons, the western half as the reviewed area, the fine-tuning defaults
   (wall time measured); the scene is mapped again and scored on the eastern half, which
   fine-tuning never saw.
3. Test-time augmentation (flip averaging): the zero-shot mapping again with ``tta``,
   its F1 and its cost.
4. Once: the procedural demo scene (seed 7) as a regression check, co-event pixel F1.

Scores: pixel precision/recall/F1 of the mapped polygons (valid pixels), the object F1 of
the new-in-year polygons (temporal subtraction) against the truth's new landslides and
enlargements, and the power-law exponent of the mapped areas against the truth's.

    .venv/bin/python bench/real_texture.py [--model auto] [--scenes zion,dolomites_east]
        [--skip-finetune] [--finetuned SCENE=CHECKPOINT] [--skip-tta] [--work bench_output/real_texture]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))


from real_scoring import finetune_west, halves, map_scene, pixel_scores, score_run  # noqa: E402

from landslide_mapper.core.training.corpus.backgrounds import missing_files  # noqa: E402
from landslide_mapper.core.mapping.bundled import AUTO  # noqa: E402
from landslide_mapper.core.training.corpus.composite import load_or_generate  # noqa: E402
from landslide_mapper.core.demo import SceneSpec  # noqa: E402
from landslide_mapper.core.demo import load_or_generate as load_demo  # noqa: E402
from landslide_mapper.core.training.corpus.pretrained import HELD_OUT, HELD_OUT_PLACE  # noqa: E402
from landslide_mapper.core.geodata.vector_io import read_layer  # noqa: E402
from landslide_mapper.core.jobs.specs import TrainJob  # noqa: E402


def table(title: str, scores: dict, years) -> list[str]:
    lines = [f"**{title}**", "", "| year | precision | recall | F1 | area ratio | new-in-year object F1 | "
             "α mapped | α truth |", "|---|---|---|---|---|---|---|---|"]
    for y in years:
        r = scores[y]
        px, obj = r["pixel"], r.get("new_objects") or {}
        lines.append(f"| {y} | {px['precision']:.3f} | {px['recall']:.3f} | {px['f1']:.3f} | {px['area_ratio']:.2f} | "
                     f"{'–' if obj.get('f1') is None else format(obj['f1'], '.3f')} | "
                     f"{r['alpha_pred'] if r['alpha_pred'] is not None else '–'} | "
                     f"{r['alpha_truth'] if r['alpha_truth'] is not None else '–'} |")
    return lines + [""]


def bench_scene(name: str, spec, args, work: Path) -> dict:
    """Zero-shot, fine-tuned on the western half (scored on the eastern half), flip averaging."""
    report: dict = {"scene": spec.to_dict()}
    held = load_or_generate(work / name, spec)
    years = list(spec.years)
    _, _, east = halves(held.rasters[years[0]])
    t = time.time()
    zero = map_scene(args.model, held.rasters, work / "runs", f"{name}_zero_shot")
    report["model"] = zero.model
    report["zero_shot_seconds"] = round(time.time() - t, 1)
    report["zero_shot"] = score_run(zero, held.truth_path)
    report["zero_shot_east"] = score_run(zero, held.truth_path, east)
    print("\n".join(table(f"{name}: zero-shot, whole scene", report["zero_shot"], years)), flush=True)
    print("\n".join(table(f"{name}: zero-shot, eastern half", report["zero_shot_east"], years)), flush=True)
    reuse = dict(item.split("=", 1) for item in args.finetuned)
    if name in reuse:               # a checkpoint fine-tuned by an earlier run of this benchmark
        report["finetune"] = {"checkpoint": reuse[name], "reused": True}
        after = map_scene(reuse[name], held.rasters, work / "runs", f"{name}_finetuned")
        report["finetuned_east"] = score_run(after, held.truth_path, east)
        print("\n".join(table(f"{name}: fine-tuned on the western half (earlier run, {reuse[name]}), eastern half",
                              report["finetuned_east"], years)), flush=True)
    elif not args.skip_finetune:
        extra = ({"steps": args.steps} if args.steps else {}) | {"distill_weight": args.distill}
        tuned, seconds = finetune_west(zero.model, held, work, name, f"{name} (benchmark)",
                                       ("round", "Threshold", "The new", "Warning", "Base", "Blocked", "On ",
                                        "Anchors"), **extra)
        report["finetune"] = {"seconds": seconds, "checkpoint": tuned.checkpoint,
                              "patches": tuned.patches, "validation": tuned.validation,
                              "base_validation": tuned.base_validation, "improved": tuned.improved,
                              "threshold": tuned.threshold, "rounds": tuned.epochs_run,
                              "distill_weight": args.distill, "unreviewed": tuned.unreviewed}
        after = map_scene(tuned.checkpoint, held.rasters, work / "runs", f"{name}_finetuned")
        report["finetuned_east"] = score_run(after, held.truth_path, east)
        print("\n".join(table(f"{name}: fine-tuned on the western half ({report['finetune']['seconds']:.0f} s), "
                              "eastern half", report["finetuned_east"], years)), flush=True)
    if args.rgb:             # the same scene as an 8-bit RGB product: the automatic choice maps it
        visual = load_or_generate(work / f"{name}_visual", replace(spec, sensor="visual"))
        run = map_scene(args.model, visual.rasters, work / "runs", f"{name}_rgb", analyse=False)
        report["rgb_model"] = run.model
        report["rgb_zero_shot"] = score_run(run, visual.truth_path)
        print("\n".join(table(f"{name}: 8-bit RGB rendering, zero-shot ({Path(run.model).parent.name})",
                              report["rgb_zero_shot"], years)), flush=True)
    if not args.skip_tta:
        t = time.time()
        tta = map_scene(args.model, held.rasters, work / "runs", f"{name}_zero_shot_tta", tta=True)
        report["tta_seconds"] = round(time.time() - t, 1)
        report["zero_shot_tta"] = score_run(tta, held.truth_path)
        print("\n".join(table(f"{name}: zero-shot with flip averaging ({report['tta_seconds']:.0f} s against "
                              f"{report['zero_shot_seconds']:.0f} s)", report["zero_shot_tta"], years)), flush=True)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=AUTO, help="model to judge (default auto: the bundled cascade)")
    ap.add_argument("--work", default="bench_output/real_texture")
    ap.add_argument("--scenes", default="zion,dolomites_east", help="held-out scenes to run")
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the job default)")
    ap.add_argument("--distill", type=float, default=TrainJob.distill_weight,
                    help="the fine-tuning's weight of the base's mapping on the unreviewed half "
                         f"(TrainJob.distill_weight, default {TrainJob.distill_weight:g})")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--finetuned", action="append", default=[], metavar="SCENE=CHECKPOINT",
                    help="map with a checkpoint an earlier run fine-tuned for SCENE instead of training again")
    ap.add_argument("--skip-tta", action="store_true")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--rgb", action="store_true", help="also map an 8-bit RGB rendering of each scene")
    args = ap.parse_args()
    scenes = {"zion": HELD_OUT, "dolomites_east": HELD_OUT_PLACE}
    chosen = [n.strip() for n in args.scenes.split(",") if n.strip()]
    missing = missing_files({scenes[n].background for n in chosen})
    if missing:
        sys.exit(f"The held-out backgrounds are missing ({', '.join(missing)}): run in a checkout with ../shared/data.")
    work = Path(args.work)
    report = {n: bench_scene(n, scenes[n], args, work) for n in chosen}
    if not args.skip_demo:      # the procedural demo scene, as a regression check
        spec = SceneSpec(size=1024, pixel_size=3.0, seed=7)
        demo = load_demo(work / "demo_scene", spec)
        run = map_scene(args.model, {spec.event_year: demo.rasters[spec.event_year]}, work / "runs", "demo")
        y = run.years[0]
        report["demo_coevent"] = pixel_scores(Path(run.run_dir) / y.probability,
                                              read_layer(run.geopackage, y.layer).geometries,
                                              read_layer(demo.truth_path, f"landslides_{y.year}").geometries)
        print(f"Demo scene (seed 7), co-event year {y.year}: {report['demo_coevent']}", flush=True)
    (work / "result.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nWritten {work / 'result.json'}")


if __name__ == "__main__":
    main()
