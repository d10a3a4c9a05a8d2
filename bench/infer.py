"""Benchmark: tiled inference end to end vs the bare ONNX Runtime forward pass.

For each scene size, in fresh subprocesses (so peak RSS is per run):
  * pipeline: predict_raster (windowed reads, channels, normalisation, batched ONNX,
    block-aligned compressed writes) and then vectorising, on a generated demo scene;
  * bare: session.run over the same number of tiles, same batch, inputs already in memory.
Reports the overhead ratio (pipeline inference time / bare forward time), throughput
in Mpx/s and peak RSS, for the bundled baseline (almost free: its ratio measures pure
I/O cost), a small CNN, a small U-Net and (``--models unet32``) a U-Net sized like the
ADSMS U-Net, all with random weights: the ratio depends on how much the network costs.

    ./dev.sh bench                      # 2,048² and 16,384² (the issue's sizes)
    .venv/bin/python bench/infer.py --sizes 1024 4096 --models cnn
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _save_bench_model(nodes, inits, name: str, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    from landslide_mapper.core.mapping.model import METADATA_KEY, ModelMetadata

    graph = helper.make_graph(nodes, name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, "H", "W"])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 1, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = ModelMetadata(name=name, channels=["B", "G", "R", "NIR", "NDVI"], mean=[0.05, 0.07, 0.06, 0.25, 0.5],
                         std=[0.05, 0.05, 0.05, 0.1, 0.3], tile_size=256, threshold=0.5, size_multiple=8,
                         kind="benchmark")
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class _Graph:
    """Tiny ONNX graph builder with random, fixed weights (benchmarks only)."""

    def __init__(self):
        import numpy as np

        self.rng = np.random.default_rng(0)
        self.nodes, self.inits, self.n = [], [], 0

    def _name(self, stem):
        self.n += 1
        return f"{stem}{self.n}"

    def conv(self, x, cin, cout, k=3, relu=True):
        import numpy as np
        from onnx import helper, numpy_helper

        w, b, y = self._name("w"), self._name("b"), self._name("c")
        self.inits += [numpy_helper.from_array((self.rng.normal(0, 1, (cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32), w),
                       numpy_helper.from_array(np.zeros(cout, np.float32), b)]
        self.nodes.append(helper.make_node("Conv", [x, w, b], [y], pads=[k // 2] * 4))
        if relu:
            r = self._name("r")
            self.nodes.append(helper.make_node("Relu", [y], [r]))
            return r
        return y

    def op(self, kind, inputs, **attrs):
        from onnx import helper

        y = self._name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [y], **attrs))
        return y

    def upsample(self, x):
        import numpy as np
        from onnx import numpy_helper

        scales = self._name("scales")
        self.inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), scales))
        return self.op("Resize", [x, "", scales], mode="nearest")


def build_cnn(path: Path) -> Path:
    """A 3-layer 3×3 CNN (5→16→16→1): ~6 kFLOP/pixel."""
    g = _Graph()
    x = g.conv(g.conv("x", 5, 16), 16, 16)
    y = g.conv(x, 16, 1, relu=False)
    g.nodes.append(__import__("onnx").helper.make_node("Sigmoid", [y], ["p"]))
    return _save_bench_model(g.nodes, g.inits, "bench_cnn", path)


def build_unet(path: Path, base: int = 16, levels: int = 3) -> Path:
    """A U-Net with random weights: ``levels`` encoder levels of 2 convs starting at ``base``
    filters, max-pooling, nearest upsampling and skip connections. base=16/levels=3 costs
    ~60 kFLOP/pixel; base=32/levels=4 (~250 kFLOP/pixel) is sized like the ADSMS U-Net
    without its attention gates and side outputs."""
    g = _Graph()
    skips, x, cin = [], "x", 5
    for level in range(levels):
        width = base * 2 ** level
        if level:
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        x = g.conv(g.conv(x, cin, width), width, width)
        skips.append((x, width))
        cin = width
    for skip, width in reversed(skips[:-1]):
        x = g.op("Concat", [g.upsample(x), skip], axis=1)
        x = g.conv(g.conv(x, cin + width, width), width, width)
        cin = width
    y = g.conv(x, cin, 1, k=1, relu=False)
    g.nodes.append(__import__("onnx").helper.make_node("Sigmoid", [y], ["p"]))
    return _save_bench_model(g.nodes, g.inits, f"bench_unet{base}x{levels}", path)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across
    exec, so a child would report its parent's peak (here: the scene generator's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_pipeline(raster: str, model: str, tile: int, overlap: int, batch: int, out: str) -> dict:
    from landslide_mapper.core.mapping.inference import predict_raster
    from landslide_mapper.core.mapping.inference import GDAL_CACHE_BYTES
    from landslide_mapper.core.mapping.model import OnnxModel
    from landslide_mapper.core.geodata.raster import YearRaster
    from landslide_mapper.core.mapping.vectorize import landslide_polygons
    import rasterio

    import numpy as np

    m = OnnxModel(model)
    # warm-up outside the timing, as in the bare pass: both then time steady-state work
    m.predict(np.zeros((batch, len(m.metadata.channels), tile, tile), np.float32))
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), YearRaster(raster, 2017) as r:
        t0 = time.perf_counter()
        stats = predict_raster(r, m, out, tile, overlap, batch, m.metadata.threshold)
        t1 = time.perf_counter()
        rss_infer = peak_rss_mb()
        layer = landslide_polygons(out, 2017, m.metadata.threshold, 200.0, r.crs.to_wkt())
        t2 = time.perf_counter()
        pixels = r.width * r.height
    return {"tiles": stats.tiles, "pixels": pixels, "infer_s": t1 - t0, "vectorise_s": t2 - t1,
            "polygons": len(layer), "rss_after_infer_mb": rss_infer,
            "peak_rss_mb": peak_rss_mb()}


def child_bare(model: str, tiles: int, tile: int, batch: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).normal(0, 1, (batch, 5, tile, tile)).astype(np.float32)
    sess.run(None, {name: x[:1]})  # warm-up, as the pipeline's first batch is part of its time
    t0 = time.perf_counter()
    done = 0
    while done < tiles:
        n = min(batch, tiles - done)
        sess.run(None, {name: x[:n]})
        done += n
    return {"bare_s": time.perf_counter() - t0}


def run_child(kind: str, **kw) -> dict:
    code = (f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import infer; "
            f"print(json.dumps(infer.child_{kind}(**{kw!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 16384])
    ap.add_argument("--models", nargs="+", default=["baseline", "cnn", "unet"],
                    choices=["baseline", "cnn", "unet", "unet32"],
                    help="unet32 is ADSMS-sized: about 10 s per 2,048² on 2 cores, 11 min per 16,384²")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workdir", default=str(ROOT / "bench_output"))
    args = ap.parse_args()

    from landslide_mapper.core.mapping.bundled import BASELINE_MODEL
    from landslide_mapper.core.demo import SceneSpec, load_or_generate

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    models = {"baseline": str(BASELINE_MODEL), "cnn": str(build_cnn(work / "bench_cnn.onnx")),
              "unet": str(build_unet(work / "bench_unet.onnx")),
              "unet32": str(build_unet(work / "bench_unet32.onnx", base=32, levels=4))}
    rows = []
    for size in args.sizes:
        t = time.perf_counter()
        manifest = load_or_generate(work / f"scene_{size}", SceneSpec(size=size, years=(2017,), event_year=2017, seed=11))
        print(f"scene {size}²: ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        raster = manifest.rasters[2017]
        for name in args.models:
            out = work / f"prob_{size}_{name}.tif"
            out.unlink(missing_ok=True)
            pipe = run_child("pipeline", raster=raster, model=models[name], tile=args.tile, overlap=args.overlap,
                             batch=args.batch, out=str(out))
            bare = run_child("bare", model=models[name], tiles=pipe["tiles"], tile=args.tile, batch=args.batch)
            row = {"size": size, "model": name, **pipe, **bare,
                   "overhead_ratio": pipe["infer_s"] / bare["bare_s"],
                   "mpx_per_s": pipe["pixels"] / 1e6 / pipe["infer_s"],
                   "mpx_per_s_with_vectorising": pipe["pixels"] / 1e6 / (pipe["infer_s"] + pipe["vectorise_s"])}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            out.unlink(missing_ok=True)
    print(f"\n{'size':>6} {'model':>8} {'tiles':>6} {'infer s':>8} {'bare s':>7} {'ratio':>6} {'Mpx/s':>7} "
          f"{'vect s':>7} {'polys':>6} {'peak RSS MB':>11}")
    for r in rows:
        print(f"{r['size']:>6} {r['model']:>8} {r['tiles']:>6} {r['infer_s']:>8.2f} {r['bare_s']:>7.2f} "
              f"{r['overhead_ratio']:>6.2f} {r['mpx_per_s']:>7.2f} {r['vectorise_s']:>7.2f} {r['polygons']:>6} "
              f"{r['peak_rss_mb']:>11.0f}")
    for name in args.models:
        sized = {r["size"]: r for r in rows if r["model"] == name}
        if len(sized) >= 2:
            small, large = sized[min(sized)], sized[max(sized)]
            print(f"{name}: peak RSS {max(sized)}² / {min(sized)}² = {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
    (work / "bench_infer.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
