"""The latency phase of a run: the device's predictor for the study's space and scale, loaded,
or calibrated first when the device has none (DESIGN.md section 4).

Calibration of one (device, space, scale) is serialised across runners with the store's lock
(``Store.exclusive``: an advisory lock on PostgreSQL, a lock file beside a SQLite database): the
first runner calibrates, the others wait and then load what it saved.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from nanosd_nas.latency_models import (
    CalibrationPlan,
    LatencyPredictor,
    MeasurementStore,
    PredictorNotFound,
    calibrate,
    load_predictor,
    predictor_folder,
    profiler_for,
)
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import Space

#: ``(phase, done, total)`` of a calibration.
CalibrationProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LatencyModel:
    """The predictor a study's trials take their latency from, and its id in the store (what
    each predicted value cites)."""

    predictor: LatencyPredictor
    predictor_id: int


def calibration_lock(device: str, space: Space, scale: str) -> str:
    """The name of the lock that serialises calibrating ``device`` for ``space`` at ``scale``."""
    return f"calibrate {device} for {space.name}-{space.digest} at {scale}"


def ensure_latency_model(store: Store, config: StudyConfig, space: Space, *,
                         plan: CalibrationPlan | None, on_progress: CalibrationProgress,
                         waiting: Callable[[], AbstractContextManager[Any]],
                         ) -> LatencyModel | None:
    """The study's predictor, calibrating the device first if it has none; None when the study
    takes no latency from a predictor (no latency objective, or every trial measured).

    Args:
        store: the service's database; the calibration's measurements and the predictor are
            recorded there too.
        config: the study.
        space: the study's space.
        plan: how to calibrate, if the device needs it (the calibration's defaults if None).
        on_progress: the calibration's progress.
        waiting: a context manager held while waiting for another runner's calibration (the
            runner keeps holding its study meanwhile).
    """
    if not config.predicts_latency:
        return None
    predictor = _load(config, space)
    if predictor is None:
        with waiting(), store.exclusive(calibration_lock(config.device, space, config.scale)):
            # Whoever held the lock before may have calibrated this very predictor.
            predictor = _load(config, space) or _calibrate(config, space, plan, on_progress)
    # The calibration's measurements (the file store's) move into the database too.
    store.import_measurements(MeasurementStore().records(config.device))
    record = store.record_predictor(
        device=config.device, space=space.name, space_digest=space.digest, scale=config.scale,
        version=str(predictor.metadata.get("created", "1")),
        statistic=str(predictor.metadata.get("statistic")),
        held_out=predictor.metadata.get("held_out", {}),
        path=str(predictor_folder(config.device, space, config.scale)))
    return LatencyModel(predictor=predictor, predictor_id=record.id)


def _load(config: StudyConfig, space: Space) -> LatencyPredictor | None:
    try:
        return load_predictor(config.device, space, config.scale)
    except PredictorNotFound:
        return None


def _calibrate(config: StudyConfig, space: Space, plan: CalibrationPlan | None,
               on_progress: CalibrationProgress) -> LatencyPredictor:
    result = calibrate(space, config.scale, profiler_for(config.device), plan=plan,
                       store=MeasurementStore(), on_progress=on_progress)
    result.predictor.save(predictor_folder(config.device, space, config.scale))
    return result.predictor
