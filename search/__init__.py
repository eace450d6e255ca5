"""Accuracy evaluators, studies (Optuna), execution (Ray) and storage (SQLAlchemy + Alembic).

The study configuration and the Pareto utilities load quickly; the runner, the report and the
evaluators (which load PyTorch, Optuna, Ray or Plotly) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nanosd_nas.search import study_views
from nanosd_nas.search._accuracy_config import BUILTIN, AccuracyConfig
from nanosd_nas.search._study_config import StudyConfig, StudyConfigError
from nanosd_nas.search._study_document import parse_document
from nanosd_nas.search._study_sections import DEFAULT_ENCODING, ENCODINGS

if TYPE_CHECKING:
    from nanosd_nas.search._bench_accuracy import bench_accuracy
    from nanosd_nas.search._bench_samplers import bench_search
    from nanosd_nas.search._bench_search import BenchSearchError, check_samplers
    from nanosd_nas.search._device_fronts import (
        DeviceFront,
        FrontMember,
        device_fronts,
        fronts_document,
    )
    from nanosd_nas.search._execution import RayUnavailable, WorkerPool, ray_session
    from nanosd_nas.search._export import WEIGHTS, ExportRequestError, export_trial
    from nanosd_nas.search._front import (
        FrontTracker,
        hypervolume,
        pareto_mask,
        reference_point,
        study_reference,
    )
    from nanosd_nas.search._real_objective import check_fixed
    from nanosd_nas.search._report import history_figure, write_report
    from nanosd_nas.search._rescore import RescoreError, RescoreOutcome, rescore_study
    from nanosd_nas.search._space_front import SpaceTooLarge, check_sweepable, find_backdrop
    from nanosd_nas.search._worker import StudyWorker, WorkerOutcome
    from nanosd_nas.search.run import RunSummary, StudyRunner

_LAZY: dict[str, str] = {
    **dict.fromkeys(("RayUnavailable", "WorkerPool", "ray_session"),
                    "nanosd_nas.search._execution"),
    **dict.fromkeys(("FrontTracker", "hypervolume", "pareto_mask", "reference_point",
                     "study_reference"), "nanosd_nas.search._front"),
    "write_report": "nanosd_nas.search._report",
    "history_figure": "nanosd_nas.search._report",
    "bench_accuracy": "nanosd_nas.search._bench_accuracy",
    **dict.fromkeys(("WEIGHTS", "ExportRequestError", "export_trial"),
                    "nanosd_nas.search._export"),
    **dict.fromkeys(("RunSummary", "StudyRunner"), "nanosd_nas.search.run"),
    **dict.fromkeys(("StudyWorker", "WorkerOutcome"), "nanosd_nas.search._worker"),
    **dict.fromkeys(("BenchSearchError", "check_samplers"), "nanosd_nas.search._bench_search"),
    "bench_search": "nanosd_nas.search._bench_samplers",
    "check_fixed": "nanosd_nas.search._real_objective",
    **dict.fromkeys(("DeviceFront", "FrontMember", "device_fronts", "fronts_document"),
                    "nanosd_nas.search._device_fronts"),
    **dict.fromkeys(("RescoreError", "RescoreOutcome", "rescore_study"),
                    "nanosd_nas.search._rescore"),
    **dict.fromkeys(("SpaceTooLarge", "check_sweepable", "find_backdrop"),
                    "nanosd_nas.search._space_front"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nanosd_nas.search' has no attribute {name!r}")


__all__ = [
    "BUILTIN", "DEFAULT_ENCODING", "ENCODINGS", "AccuracyConfig", "BenchSearchError",
    "DeviceFront", "ExportRequestError", "FrontMember", "FrontTracker", "RayUnavailable",
    "RescoreError", "RescoreOutcome", "RunSummary", "SpaceTooLarge", "StudyConfig",
    "StudyConfigError", "StudyRunner", "StudyWorker", "WEIGHTS", "WorkerOutcome", "WorkerPool",
    "bench_accuracy", "bench_search", "check_fixed", "check_samplers", "check_sweepable",
    "device_fronts", "export_trial", "find_backdrop", "fronts_document", "history_figure",
    "hypervolume", "parse_document", "pareto_mask", "ray_session", "reference_point",
    "rescore_study", "study_reference", "study_views", "write_report",
]
