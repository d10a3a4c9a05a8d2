"""Benchmark: one mapping job in one process and on Dask LocalClusters of 1 and 2 workers.

The same job (a generated scene, one year or ``--years`` N with the scene as each, the
free ``baseline`` model unless ``--model``) runs through ``python -m landslide_mapper
infer`` with ``--cluster local``, ``local:1`` and ``local:2`` (or ``--workers``), each in
a fresh process, in the same session. Reports
wall time (cluster start-up included), Mpx/s, the speed-up over one worker and the
slowdown of one worker against the single process, peak memory of the whole process tree
(client, scheduler and workers together, sampled every 0.2 s) and whether the outputs are
identical: the same probability pixels, the same number of polygons and the same areas.

    .venv/bin/python bench/cluster.py --size 8192
    .venv/bin/python bench/cluster.py --size 4096 --workers 1 2 --model path/to/checkpoint
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def tree_rss_mb(proc) -> float:
    import psutil

    try:
        p = psutil.Process(proc.pid)
        procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def run(raster: str, model: str, out: Path, cluster: str, tile: int | None, years: int = 1) -> dict:
    name = cluster.replace(":", "_")
    inputs = [f"{2017 + k}={raster}" for k in range(years)]       # the same scene as every year
    cmd = [sys.executable, "-m", "landslide_mapper", "infer", *inputs, "--model", model, "-o", str(out),
           "--run-name", name, "--cluster", cluster, "--yes", "--jsonl"]
    if tile:
        cmd += ["--tile", str(tile)]
    start, peak = time.perf_counter(), 0.0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{cluster} failed:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    result = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")][-1]["result"]
    return {"cluster": cluster, "seconds": round(seconds, 2), "peak_tree_rss_mb": round(peak),
            "run_dir": result["run_dir"], "polygons": result["years"][0]["polygons"],
            "area_m2": result["years"][0]["total_area_m2"]}


def identical(a: dict, b: dict) -> bool:
    import numpy as np
    import rasterio

    from landslide_mapper.core.geodata.vector_io import read_layer

    with rasterio.open(Path(a["run_dir"]) / "probability_2017.tif") as p, \
            rasterio.open(Path(b["run_dir"]) / "probability_2017.tif") as q:
        same = all((p.read(1, window=w) == q.read(1, window=w)).all() for _, w in p.block_windows(1))
    la = read_layer(Path(a["run_dir"]) / "landslides.gpkg", "landslides_2017").fields["area_m2"]
    lb = read_layer(Path(b["run_dir"]) / "landslides.gpkg", "landslides_2017").fields["area_m2"]
    return bool(same and len(la) == len(lb) and np.allclose(np.sort(la), np.sort(lb)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--model", default=None, help="default: the free baseline model")
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--years", type=int, default=1, help="map the scene as this many years (one job)")
    ap.add_argument("--workdir", default=str(ROOT / "bench_output"))
    args = ap.parse_args()

    import shutil

    from landslide_mapper.core.mapping.bundled import BASELINE_MODEL
    from landslide_mapper.core.demo import SceneSpec, load_or_generate

    work = Path(args.workdir)
    manifest = load_or_generate(work / f"scene_{args.size}", SceneSpec(size=args.size, years=(2017,),
                                                                         event_year=2017, seed=11))
    raster = manifest.rasters[2017]
    model = args.model or str(BASELINE_MODEL)
    out = work / f"cluster_{args.size}"
    shutil.rmtree(out, ignore_errors=True)
    rows = [run(raster, model, out, "local", args.tile, args.years)]
    rows += [run(raster, model, out, f"local:{n}", args.tile, args.years) for n in args.workers]
    pixels = args.size ** 2 * args.years
    base = rows[0]
    by = {r["cluster"]: r for r in rows}
    print(f"\n{'execution':>10} {'s':>7} {'Mpx/s':>7} {'peak tree RSS MB':>17} {'polygons':>9} identical")
    for r in rows:
        r["mpx_per_s"] = round(pixels / 1e6 / r["seconds"], 2)
        r["identical_to_local"] = r is base or identical(base, r)
        print(f"{r['cluster']:>10} {r['seconds']:>7.2f} {r['mpx_per_s']:>7.2f} {r['peak_tree_rss_mb']:>17} "
              f"{r['polygons']:>9} {r['identical_to_local']}")
    if "local:1" in by:
        one = by["local:1"]
        print(f"1 worker / one process: {one['seconds'] / base['seconds']:.2f}× the time")
        for n in args.workers:
            if n > 1 and f"local:{n}" in by:
                print(f"{n} workers: {one['seconds'] / by[f'local:{n}']['seconds']:.2f}× the speed of 1 worker")
    suffix = "" if args.years == 1 else f"x{args.years}"
    (work / f"bench_cluster_{args.size}{suffix}.json").write_text(json.dumps(rows, indent=2))
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
