"""Which loss makes the default: short fine-tunes with each candidate, judged on held-out real texture.

Not a test. Each candidate loss fine-tunes the same base checkpoint for the same number
of steps on the first 3 m scene of each real-texture stage (all years), with the
threshold calibrated on the validation places (Everest and an unseen procedural scene);
then the held-out scene (``core.training.corpus.pretrained.HELD_OUT``: a background and outlines no
training scene uses) is mapped, and pixel precision/recall/F1 and the predicted/true
area ratio are reported per year. A loss that over-predicts shows an area ratio well
above 1 even after calibration. (The README's table was measured with an earlier corpus:
NAIP and Zion for training, the Dolomites held out.)

    .venv/bin/python bench/loss_choice.py [--steps 400] [--losses adsms,bce,dice,bce_focal_tversky]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_scoring import map_scene, score_run  # noqa: E402

from landslide_mapper.core.mapping.bundled import CASCADE_CHECKPOINT  # noqa: E402
from landslide_mapper.core.training.corpus.composite import load_or_generate  # noqa: E402
from landslide_mapper.core.jobs.specs import TrainJob  # noqa: E402
from landslide_mapper.core.training.corpus.pretrained import (HELD_OUT, REAL_STAGES, composite_sources,  # noqa: E402
                                              validation_sources)
from landslide_mapper.core.progress import Reporter  # noqa: E402
from landslide_mapper.core.training.loop import run_training  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=str(CASCADE_CHECKPOINT))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--losses", default="adsms,bce,dice,bce_focal_tversky")
    ap.add_argument("--work", default="bench_output/loss_choice")
    args = ap.parse_args()
    work = Path(args.work)
    quiet = Reporter()
    scenes = [stage[2][0] for stage in REAL_STAGES]              # the first 3 m scene of each stage
    sources = [s for sc in scenes for s in composite_sources(sc, work / "scenes", quiet)]
    sources += validation_sources(work / "scenes", quiet)
    held = load_or_generate(work / "held_out", HELD_OUT)
    results = {}
    for loss in args.losses.split(","):
        t = time.time()
        log = Reporter(on_log=lambda m: print("   ", m) if m.startswith(("round", "Threshold")) else None)
        res = run_training(TrainJob(sources=sources, output_dir=str(work / "checkpoints"), name=f"loss_{loss}",
                                    base_checkpoint=args.base, steps=args.steps, loss=loss, learning_rate=3e-4,
                                    patience=50, seed=1), log)
        run = map_scene(res.checkpoint, held.rasters, work / "runs", f"loss_{loss}")
        scores = score_run(run, held.truth_path)
        results[loss] = {"threshold": res.threshold, "validation": res.validation, "seconds": round(time.time() - t),
                         "held_out": scores}
        print(f"{loss}: threshold {res.threshold}, validation F1 {res.validation.get('f1')}", flush=True)
        for y, row in scores.items():
            print(f"   {y}: {row['pixel']}", flush=True)
    (work / "result.json").write_text(json.dumps(results, indent=2))
    print("\n| loss | threshold | val F1 | " + " | ".join(f"{y} F1 (area ratio)" for y in HELD_OUT.years) + " |")
    print("|---|---|---|" + "---|" * len(HELD_OUT.years))
    for loss, r in results.items():
        cells = " | ".join(f"{r['held_out'][y]['pixel']['f1']:.3f} ({r['held_out'][y]['pixel']['area_ratio']:.2f})"
                           for y in HELD_OUT.years)
        print(f"| {loss} | {r['threshold']:.4g} | {r['validation'].get('f1')} | {cells} |")


if __name__ == "__main__":
    main()
