"""Run by the base Python of a new worker (tasks/worker_env): its prefix, version, numpy and
scipy versions, and which host packages it has (argv[1]: JSON list of their names). Standard
library only."""
import importlib.util
import json
import sys
from importlib import metadata

HOST = json.loads(sys.argv[1])
out = {"prefix": sys.prefix, "base_prefix": getattr(sys, "base_prefix", sys.prefix), "versions": {},
       "python": list(sys.version_info[:2]), "has": {}}
for name in ("numpy", "scipy"):
    try:
        out["versions"][name] = metadata.version(name)
    except Exception:
        pass
for name in HOST:
    try:
        out["has"][name] = importlib.util.find_spec(name) is not None
    except Exception:
        out["has"][name] = False
print(json.dumps(out))
