"""Running a study, in parts: :class:`StudyRunner` puts the phases of a run together
(recover -> initial design -> latency -> search loop -> verify); each part is a module.

- ``_optuna_study``: the study's Optuna study (sampler, encoding of choices, initial design).
- ``_trials``: a trial's life, in the store first and in Optuna second.
- ``_recovery``: what dead runners left, and waiting out a lost database.
- ``_latency``: the device's predictor, loaded or calibrated (once across runners).
- ``_values`` and ``_device``: what the runner computes and measures for a trial.
- ``_front_upkeep``: the stored front, its hypervolume and its verification.
- ``_loop``: the search loop over a pool of evaluators.
- ``_lease``: the runner's hold on its study, and the study's status.
"""

from __future__ import annotations

from nanosd_nas.search.run._device import (
    DEVICE_FAILED,
    MAX_DEVICE_FAILURES,
    DeviceLost,
    StudyDevice,
)
from nanosd_nas.search.run._front_upkeep import FrontKeeper, FrontState, stored_reference
from nanosd_nas.search.run._latency import LatencyModel, calibration_lock, ensure_latency_model
from nanosd_nas.search.run._lease import HOLD_EVERY_S, StudyLease
from nanosd_nas.search.run._loop import RunProgress, SearchLoop, evaluation_pool
from nanosd_nas.search.run._optuna_study import OptunaStudy
from nanosd_nas.search.run._recovery import (
    DATABASE_LOST,
    DATABASE_WAIT_S,
    MAX_RECONNECTS,
    STALE_AFTER_S,
    Recovery,
    run_reconnecting,
)
from nanosd_nas.search.run._study_runner import RunSummary, StudyRunner
from nanosd_nas.search.run._trials import (
    ASKED_AGAIN,
    MAX_REASKS,
    RERUN_REASON,
    StartedTrial,
    TrialLifecycle,
    asked_again,
)
from nanosd_nas.search.run._values import (
    InfeasibleConstraints,
    SpaceValues,
    latency_values,
    space_ranges,
)

__all__ = [
    "ASKED_AGAIN", "DATABASE_LOST", "DATABASE_WAIT_S", "DEVICE_FAILED", "HOLD_EVERY_S",
    "MAX_DEVICE_FAILURES", "MAX_REASKS", "MAX_RECONNECTS", "RERUN_REASON", "STALE_AFTER_S",
    "DeviceLost", "FrontKeeper", "FrontState", "InfeasibleConstraints", "LatencyModel",
    "OptunaStudy", "Recovery", "RunProgress", "RunSummary", "SearchLoop", "SpaceValues",
    "StartedTrial", "StudyDevice", "StudyLease", "StudyRunner", "TrialLifecycle", "asked_again",
    "calibration_lock", "ensure_latency_model", "evaluation_pool", "latency_values",
    "run_reconnecting", "space_ranges", "stored_reference",
]
