"""One entry point that executes any job specification: a table from each job kind
(``jobs.JOB_TYPES``) to the function that runs it. To add a job: a spec class in
core/jobs/specs.py with its ``kind``, its function, and one row here (ARCHITECTURE.md)."""
from __future__ import annotations

import importlib

from ..errors import InputError
from .specs import JOB_TYPES
from ..progress import Reporter

# kind -> (module, function); imported only when such a job runs (TensorFlow, ONNX Runtime)
RUNNERS: dict[str, tuple[str, str]] = {
    "infer": ("..mapping.job", "run_inference"),
    "train": ("..training.loop", "run_training"),
    "subtract": ("..inventory.analysis", "run_subtract"),
    "analyse": ("..inventory.analysis", "run_analyse"),
    "assess": ("..inventory.analysis", "run_assess"),
}


def run_job(job, reporter: Reporter | None = None):
    """Execute ``job`` and return its result object (with ``to_dict``)."""
    kind = getattr(type(job), "kind", None)
    if kind not in RUNNERS or JOB_TYPES.get(kind) is not type(job):
        raise InputError(f"Unknown job type {type(job).__name__}.")
    module, function = RUNNERS[kind]
    return getattr(importlib.import_module(module, __package__), function)(job, reporter)
