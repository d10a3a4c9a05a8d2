"""Training throughput of the networks (patches per second), CPU and, if present, GPU.

Not a test. Each configuration trains for a few warm-up steps and is then timed over
``--steps`` batches of random 5-channel patches with the ADSMS deep-supervision losses.
Reported: patches/s, the ratio to the plain U-Net of the same width in the same run
(the baseline), and the process' peak resident memory.

    .venv/bin/python bench/train.py                       # CPU: adsms_unet and unet, f=8/16/32
    .venv/bin/python bench/train.py --mixed both          # on a GPU: float32 and mixed_float16
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(arch: str, filters: int, batch: int, size: int, steps: int, mixed: bool, augment: bool) -> dict:
    """Runs in its own process so that precision policies and peak memory do not mix."""
    import keras
    import numpy as np
    import tensorflow as tf

    from landslide_mapper.core.training import losses
    from landslide_mapper.core.training import nets

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(0)
    model = nets.build_model(arch, 5, filters)
    names = list(model.output_names)
    loss, weights = losses.losses_for(names, "adsms")
    model.compile(keras.optimizers.Adam(1e-4), loss=losses.in_output_order(loss, names),
                  loss_weights=losses.in_output_order(weights, names))
    rng = np.random.default_rng(0)
    n = batch * 8
    x = rng.normal(size=(n, size, size, 5)).astype(np.float32)
    y = (rng.random((n, size, size, 1)) < 0.1).astype(np.float32)
    if augment:
        from landslide_mapper.core.training.augment import make_augmenter

        aug = make_augmenter(0)

        def gen():
            while True:
                for i in range(n):
                    a, m = aug(x[i], y[i, ..., 0].astype(np.uint8))
                    yield a, m.astype(np.float32)[..., None]
        ds = tf.data.Dataset.from_generator(gen, output_signature=(
            tf.TensorSpec((size, size, 5), tf.float32), tf.TensorSpec((size, size, 1), tf.float32)))
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    ds = ds.batch(batch).map(lambda a, m: (a, losses.targets_in_order(m, names))).prefetch(2)
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # warm-up: tracing, autotuning
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    dt = time.perf_counter() - t
    return {"arch": arch, "filters": filters, "batch": batch, "size": size, "mixed": mixed,
            "augment": augment, "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
            "params": model.count_params(), "patches_per_s": steps * batch / dt,
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filters", default="8,16,32")
    ap.add_argument("--archs", default="adsms_unet,unet")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--mixed", default="off", choices=["off", "on", "both"])
    ap.add_argument("--augment", action="store_true", help="also time the full input pipeline with augmentation")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(**json.loads(args.one))))
        return
    mixes = {"off": [False], "on": [True], "both": [False, True]}[args.mixed]
    rows = []
    for f in [int(v) for v in args.filters.split(",")]:
        for mixed in mixes:
            for arch in args.archs.split(","):
                for augment in ([False, True] if args.augment and arch == "adsms_unet" else [False]):
                    cfg = dict(arch=arch, filters=f, batch=args.batch, size=args.size, steps=args.steps,
                               mixed=mixed, augment=augment)
                    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)],
                                         capture_output=True, text=True)
                    if out.returncode:
                        print(out.stderr[-2000:], file=sys.stderr)
                        continue
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    r = rows[-1]
                    print(f"{r['device']} {r['arch']:<12} f={f:<3} mixed={str(mixed):<5} aug={str(augment):<5} "
                          f"{r['params']:>10,} params  {r['patches_per_s']:8.1f} patches/s  "
                          f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    print("\nratio ADSMS / plain U-Net (same width, precision, run):")
    for r in rows:
        if r["arch"] == "adsms_unet" and not r["augment"]:
            base = [b for b in rows if b["arch"] == "unet" and b["filters"] == r["filters"]
                    and b["mixed"] == r["mixed"] and not b["augment"]]
            if base:
                print(f"  f={r['filters']:<3} mixed={r['mixed']!s:<5} {r['patches_per_s'] / base[0]['patches_per_s']:.2f}×")
    for r in rows:
        if r["augment"]:
            bare = [b for b in rows if b["arch"] == r["arch"] and b["filters"] == r["filters"]
                    and b["mixed"] == r["mixed"] and not b["augment"]]
            if bare:
                print(f"  f={r['filters']} with augmentation pipeline: "
                      f"{r['patches_per_s'] / bare[0]['patches_per_s']:.2f}× of the in-memory pipeline")
    os.makedirs("bench_output", exist_ok=True)
    with open("bench_output/train.json", "w") as f:
        json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
