"""One entry point that executes any job specification."""
from __future__ import annotations

from .errors import InputError
from .jobs import AnalyseJob, AssessJob, InferenceJob, SubtractJob, TrainJob
from .progress import Reporter


def run_job(job, reporter: Reporter | None = None):
    """Execute ``job`` and return its result object (with ``to_dict``)."""
    if isinstance(job, InferenceJob):
        from .mapping import run_inference

        return run_inference(job, reporter)
    if isinstance(job, TrainJob):
        from .training import run_training

        return run_training(job, reporter)
    if isinstance(job, SubtractJob):
        from .analysis import run_subtract

        return run_subtract(job, reporter)
    if isinstance(job, AnalyseJob):
        from .analysis import run_analyse

        return run_analyse(job, reporter)
    if isinstance(job, AssessJob):
        from .analysis import run_assess

        return run_assess(job, reporter)
    raise InputError(f"Unknown job type {type(job).__name__}.")
