"""The latency phase of a run: the device's predictor for the study's space and scale, from
the database, or calibrated there first (:func:`latency_models.load_or_calibrate`: a
predictor made under another host's fingerprint is named and calibrated again, never used).

Calibration of one (device, space, scale) is serialised across runners with the store's lock
(``Store.exclusive``: an advisory lock on PostgreSQL, a lock file beside a SQLite database): the
first runner calibrates, the others wait and then load what it saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from nanosd_nas.latency_models import (
    CalibrationPlan,
    LatencyPredictor,
    load_or_calibrate,
    profiler_for,
)
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import Space

logger = logging.getLogger(__name__)

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
    """The study's predictor, calibrating the device first if the database holds none made on
    this host; None when the study takes no latency from a predictor (no latency objective,
    or every trial measured).

    Args:
        store: the service's database: the home of the device's latency facts (the
            calibration's measurements, the predictor, the reference timing).
        config: the study.
        space: the study's space.
        plan: how to calibrate, if the device needs it (the calibration's defaults if None).
        on_progress: the calibration's progress.
        waiting: a context manager held while waiting for another runner's calibration (the
            runner keeps holding its study meanwhile).
    """
    if not config.predicts_latency:
        return None

    @contextmanager
    def exclusive() -> Iterator[None]:
        with waiting(), store.exclusive(calibration_lock(config.device, space,
                                                         config.latency_scale)):
            yield

    outcome = load_or_calibrate(space, config.latency_scale,
                                profiler_for(config.device, store=store),
                                store=store, plan=plan, on_progress=on_progress,
                                exclusive=exclusive)
    for notice in outcome.notices:
        logger.warning("%s", notice)
    if outcome.action != "loaded":
        logger.warning("%s", outcome.message)
    if outcome.stored.id is None:
        raise RuntimeError(f"the database gave no id to the predictor at "
                           f"{outcome.stored.location}")
    return LatencyModel(predictor=outcome.predictor, predictor_id=outcome.stored.id)
