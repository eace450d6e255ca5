"""Rescoring a finished study for another device: each complete trial's latency predicted by
that device's predictor for the study's space and scale, or measured there, and stored beside
the trial's own values (:meth:`Store.replace_rescored`). The study's own values, front and
history stay as they are; :func:`search.device_fronts` then draws its front on every device.

The values are made by the run's own pieces, with the device swapped: the predictor comes from
:func:`search.run.ensure_latency_model` (loaded, or calibrated under the run's lock), the values
from :class:`search.run.SpaceValues` and a measurement from :class:`search.run.StudyDevice`, so
that a rescored value is what a run of the study on that device would have stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nanosd_nas.latency_models import CalibrationPlan, DeviceRegistry
from nanosd_nas.search._device_fronts import DeviceFront, device_fronts
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.run import (
    LatencyModel,
    SpaceValues,
    StudyDevice,
    ensure_latency_model,
    latency_values,
)
from nanosd_nas.search.store import ObjectiveValue
from nanosd_nas.spaces import ArchSpec

if TYPE_CHECKING:
    from nanosd_nas.search.store import PredictorRecord, Store, StudyRecord, TrialRecord

logger = logging.getLogger(__name__)

#: The statuses of a study whose trials are settled: it may be rescored.
RESCORABLE = ("completed", "failed", "stopped")

#: ``(phase, done, total)`` of a calibration or of the measurements.
Progress = Callable[[str, int, int], None]
#: Each trial's values on a device, by trial id, then by name.
Values = dict[int, dict[str, ObjectiveValue]]


class RescoreError(ValueError):
    """A study that cannot be rescored for that device, as asked: the user's to fix."""


@dataclass(frozen=True)
class LatencySource:
    """Where rescored latencies come from: a stored predictor, or measurements."""

    provenance: str
    predictor_id: int | None
    #: How the device's predictor was had: ``loaded``, ``calibrated`` (it had none) or
    #: ``recalibrated`` (it had one that could not be used); None when measured.
    action: str | None
    #: One line for the user: how the values were made.
    message: str


@dataclass(frozen=True)
class RescoreOutcome:
    """What :func:`rescore_study` stored.

    Attributes:
        study: the study.
        study_device: the study's own device.
        device: the device it was rescored for.
        source: where the values come from.
        trials: the study's complete trials, by number.
        values: each trial's values on the device, by trial id.
        front: the study's front on the device.
    """

    study: str
    study_device: str
    device: str
    source: LatencySource
    trials: tuple[TrialRecord, ...]
    values: Values
    front: DeviceFront

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON: the summary, then each trial's values on the device beside
        the study's own."""
        on_front = {m.trial.id for m in self.front.members}
        trials = []
        for trial in self.trials:
            rescored = self.values[trial.id]
            trials.append({
                "number": trial.number, "spec_id": trial.spec_id, "on_front": trial.id in on_front,
                "values": {n: {"value": v.value, "provenance": v.provenance,
                               "predictor_id": v.predictor_id} for n, v in rescored.items()},
                "study_values": {n: trial.value(n) for n in rescored}})
        return {"study": self.study, "study_device": self.study_device, "device": self.device,
                "provenance": self.source.provenance, "predictor_id": self.source.predictor_id,
                "action": self.source.action, "message": self.source.message,
                "n_trials": len(self.trials), "feasible": self.front.feasible,
                "front_size": len(self.front.members), "trials": trials}


def rescore_study(store: Store, name: str, device: str, *, measure: bool = False,
                  plan: CalibrationPlan | None = None,
                  on_progress: Progress | None = None) -> RescoreOutcome:
    """Predict (or, with ``measure``, measure) the latency of every complete trial of study
    ``name`` on ``device`` and store it, with a photo study's ``photo_latency_ms``, beside the
    trials' own values; a device rescored before has its values replaced.

    Args:
        store: the service's database.
        name: a study that has finished or was stopped.
        device: a registered device other than the study's.
        measure: measure each trial's model on the device (every measurement is kept in the
            store) instead of predicting it.
        plan: how to calibrate the device, if it has no predictor for the study's space and
            scale made on this host (the calibration's defaults if None).
        on_progress: ``(phase, done, total)`` while calibrating or measuring.

    Raises:
        StudyNotFound: no such study.
        DeviceNotFound: the device is not registered.
        RescoreError: the study is running or has not run, ``device`` is its own, it has no
            latency objective or constraint, or no complete trial.
    """
    record = store.get_study(name)
    config = rescorable(record, device)
    registered = DeviceRegistry().get(device)
    trials = tuple(store.list_trials(name, state="complete"))
    if not trials:
        raise RescoreError(f"study {name!r} has no complete trial to rescore")
    specs = [store.get_architecture(_spec_id(t)) for t in trials]
    store.upsert_device(registered)
    progress = on_progress or (lambda phase, done, total: None)
    on_device = config.model_copy(update={"device": device})
    if measure:
        values, source = _measured(store, name, on_device, trials, specs, progress)
    else:
        values, source = _predicted(store, on_device, trials, specs, plan, progress)
    store.replace_rescored(name, device, values)
    front = next(f for f in device_fronts(store, name) if f.device == device and not f.own)
    logger.info("study %s rescored on %s: %d trials, a front of %d", name, device, len(trials),
                len(front.members))
    return RescoreOutcome(study=name, study_device=config.device, device=device, source=source,
                          trials=trials, values=values, front=front)


def rescorable(record: StudyRecord, device: str) -> StudyConfig:
    """The configuration of a study that may be rescored for ``device``.

    Raises:
        RescoreError: it may not, saying why.
    """
    name = record.name
    if record.status in ("running", "stopping"):
        raise RescoreError(f"study {name!r} is {record.status}: rescore it once its run has "
                           f"finished or been stopped ('nanosd-nas study show {name}')")
    if record.status not in RESCORABLE:
        raise RescoreError(f"study {name!r} has not run yet ({record.status}): it has no "
                           f"trials to rescore ('nanosd-nas study run {name}')")
    config = StudyConfig.from_document(record.config, source=f"study {name!r}")
    if device == config.device:
        raise RescoreError(f"device {device!r} is the device study {name!r} ran on: its values "
                           "there are the study's own; name another device")
    if not config.latency_objectives:
        raise RescoreError(f"study {name!r} has no latency objective or constraint: its values "
                           "are the same on every device")
    return config


def _spec_id(trial: TrialRecord) -> str:
    if trial.spec_id is None:  # every trial a runner completes has its architecture stored
        raise RescoreError(f"trial {trial.number} of study {trial.study!r} has no architecture "
                           "stored")
    return trial.spec_id


def _predicted(store: Store, config: StudyConfig, trials: tuple[TrialRecord, ...],
               specs: list[ArchSpec], plan: CalibrationPlan | None, progress: Progress,
               ) -> tuple[Values, LatencySource]:
    """Each trial's latency values (``config`` names the device) predicted as a run predicts
    them, by the device's predictor, loaded or calibrated first."""
    space = config.load_space()
    before = store.predictors(config.device)
    predicting = config.model_copy(update={
        "latency": config.latency.model_copy(update={"source": "predictor"})})
    model = ensure_latency_model(store, predicting, space, plan=plan, on_progress=progress,
                                 waiting=nullcontext)
    if model is None:  # only a study without latency values, which is refused before
        raise RescoreError(f"study has no latency to predict on {config.device!r}")
    source = _predictor_source(model, before)
    count = SpaceValues(config=predicting, space=space, latency=model)
    values = {}
    for trial, spec in zip(trials, specs, strict=True):
        every = count.of(spec, space.choices(spec, config.scale))
        values[trial.id] = {n: v for n, v in every.items() if config.source_of(n) == "latency"}
    return values, source


def _predictor_source(model: LatencyModel, before: list[PredictorRecord]) -> LatencySource:
    """Where predicted values come from, and whether the predictor was loaded, calibrated or
    calibrated again (the device had one for this space and scale that could not be used)."""
    identity = model.predictor.identity
    if any(p.id == model.predictor_id for p in before):
        action = "loaded"
    elif any((p.space_digest, p.scale) == (identity.space_digest, identity.scale)
             for p in before):
        action = "recalibrated"
    else:
        action = "calibrated"
    return LatencySource(
        provenance="predicted", predictor_id=model.predictor_id, action=action,
        message=f"{action} the predictor of {identity.device} for {identity.space} at "
                f"{identity.scale} (predictor {model.predictor_id} of the database)")


def _measured(store: Store, name: str, config: StudyConfig, trials: tuple[TrialRecord, ...],
              specs: list[ArchSpec], progress: Progress) -> tuple[Values, LatencySource]:
    """Each trial's latency values measured on the device ``config`` names, as a run
    measures its front (each whole measurement kept in the store, a photo's latency derived
    from it); a failed measurement fails the rescoring."""
    on_device = StudyDevice(store=store, study=name, config=config)
    values = {}
    for i, (trial, spec) in enumerate(zip(trials, specs, strict=True)):
        progress("measure", i, len(specs))
        values[trial.id] = latency_values(ObjectiveValue(on_device.measure(spec), "measured"),
                                          spec, config.pipeline)
    progress("measure", len(specs), len(specs))
    return values, LatencySource(
        provenance="measured", predictor_id=None, action=None,
        message=f"measured {len(specs)} trial(s) of study {name!r} on {config.device}")
