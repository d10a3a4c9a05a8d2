"""Fine-tuning where the model is already good: augmentation strength and keeping the base on
unreviewed ground. Measured on a place that is not the held-out benchmark.

Not a test. The scene: a fresh seed (61) of the western Dolomites, a training place of the
bundled cascade (a scene it has not seen; the same one bench/change_evidence.py uses).
As a user would: the truth of its western half in every year is the corrected polygons,
the western half the reviewed area, the fine-tuning defaults; the eastern half, which
fine-tuning never sees, is scored before and after, per year (pixel F1 and mapped / true
area). ``--augment strong`` or ``normal`` forces the augmentation strength that the loop
otherwise picks by the number of training patches (``STRONG_AUGMENT_BELOW``); ``--distill
W`` sets ``TrainJob.distill_weight`` (the base's mapping of the unreviewed eastern half as
weighted targets, core/training/anchors.py).

    .venv/bin/python bench/finetune_augment.py [--augment strong|normal] [--distill W] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))


from change_evidence import SCENES  # noqa: E402
from real_scoring import finetune_west, halves, map_scene, score_run  # noqa: E402

from landslide_mapper.core.mapping.bundled import AUTO  # noqa: E402
from landslide_mapper.core.training import loop  # noqa: E402
from landslide_mapper.core.training.corpus.composite import load_or_generate  # noqa: E402

SCENE = "dolomites_west_3m"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--augment", choices=("auto", "strong", "normal"), default="auto")
    ap.add_argument("--distill", type=float, default=0.0, help="TrainJob.distill_weight (default 0: off)")
    ap.add_argument("--work", default="bench_output/finetune_augment")
    args = ap.parse_args()
    if args.augment != "auto":
        loop.STRONG_AUGMENT_BELOW = 10**9 if args.augment == "strong" else 0
    tag = args.augment + (f"_distill{args.distill:g}" if args.distill else "")
    work = Path(args.work)
    scene = load_or_generate(work / SCENE, SCENES[SCENE])
    _, _, east = halves(scene.rasters[min(scene.rasters)])
    out: dict = {"augment": args.augment, "distill_weight": args.distill}
    zero = map_scene(AUTO, scene.rasters, work / "runs", f"zero_{tag}")
    out["zero_shot_east"] = score_run(zero, scene.truth_path, east)
    tuned, seconds = finetune_west(zero.model, scene, work, f"{SCENE}_{tag}", SCENE,
                                   ("Augmentation", "Threshold", "The new", "Base", "On ", "Anchors"),
                                   distill_weight=args.distill)
    out.update(seconds=seconds, validation=tuned.validation, base_validation=tuned.base_validation,
               unreviewed=tuned.unreviewed)
    after = map_scene(tuned.checkpoint, scene.rasters, work / "runs", f"tuned_{tag}")
    out["finetuned_east"] = score_run(after, scene.truth_path, east)
    for key in ("zero_shot_east", "finetuned_east"):
        print(tag, key, "F1 / area ratio per year:",
              ", ".join(f"{y} {v['pixel']['f1']:.3f} / {v['pixel']['area_ratio']:.2f}" for y, v in out[key].items()))
    print(f"{tag}: {out['seconds']:.0f} s; validation F1 {tuned.validation.get('f1')} "
          f"(base {(tuned.base_validation or {}).get('f1')})")
    (work / f"result_{tag}.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
