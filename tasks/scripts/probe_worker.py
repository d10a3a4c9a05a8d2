"""Run by a candidate worker Python (tasks/worker_env.probe): which of the modules it can import,
their versions, ONNX Runtime's providers and, when asked, TensorFlow's GPUs; one JSON line after a
marker. argv[1]: JSON [modules, slow modules, check_gpu, marker]. Standard library only."""
import importlib
import importlib.util
import json
import sys
modules, slow, check_gpu, marker = json.loads(sys.argv[1])
out = {"python_version": sys.version.split()[0], "versions": {}, "missing": [], "import_errors": {},
       "providers": [], "gpus": None}
try:
    from importlib.metadata import packages_distributions, version as dist_version
    dists = packages_distributions()
except Exception:
    dists, dist_version = {}, None
def meta_version(module):
    for dist in dists.get(module.split(".")[0], []):
        try:
            return dist_version(dist)
        except Exception:
            pass
    return None
for name in modules:
    deep = check_gpu or name not in slow
    try:
        found = importlib.util.find_spec(name) is not None
    except Exception:
        found = False
    if not found:
        out["missing"].append(name)
        continue
    version = None
    if deep:
        try:
            module = importlib.import_module(name)
            version = getattr(module, "__version__", None)
        except BaseException as exc:
            out["missing"].append(name)
            out["import_errors"][name] = (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300]
            continue
    out["versions"][name] = str(version or meta_version(name) or "?")
if "onnxruntime" in out["versions"]:
    try:
        import onnxruntime
        out["providers"] = list(onnxruntime.get_available_providers())
    except Exception:
        pass
if check_gpu and "tensorflow" in out["versions"]:
    try:
        import tensorflow as tf
        out["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:
        out["gpus"] = []
sys.stdout.write("\n" + marker + json.dumps(out) + "\n")
sys.stdout.flush()
