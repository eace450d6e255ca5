"""The stored Pareto front of a study: recomputed as trials land, its hypervolume under the
study's reference point, and its members measured on the device at the end of a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nanosd_nas.search._front import hypervolume, pareto_mask, study_reference
from nanosd_nas.search._objectives import LATENCY_OBJECTIVE
from nanosd_nas.search._study_config import LATENCY_OBJECTIVES, StudyConfig
from nanosd_nas.search.run._device import StudyDevice
from nanosd_nas.search.run._optuna_study import OptunaStudy
from nanosd_nas.search.run._values import SpaceValues, latency_values
from nanosd_nas.search.store import ObjectiveValue, Store

#: The Optuna study's user attribute that keeps the study's reference point, fixed at its
#: first complete trial.
REFERENCE_ATTR = "reference_point"


@dataclass(frozen=True)
class FrontState:
    """The front after an update: feasible trials, front members, and its hypervolume (None
    while no trial is feasible)."""

    feasible: int
    size: int
    hypervolume: float | None


def stored_reference(store: Store, name: str) -> dict[str, float] | None:
    """The reference point study ``name`` measures its hypervolume against, by objective; None
    before its first complete trial."""
    storage = store.optuna_storage()
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    point = storage.get_study_user_attrs(study_id).get(REFERENCE_ATTR)
    if point is None:
        return None
    names = [o["name"] for o in store.get_study(name).config["objectives"]]
    return dict(zip(names, (float(v) for v in point), strict=True))


class FrontKeeper:
    """Keeps one study's stored front.

    Args:
        store: the service's database.
        name: the study.
        config: the study's configuration.
        values: the space's values, whose ranges place the reference point.
    """

    def __init__(self, *, store: Store, name: str, config: StudyConfig,
                 values: SpaceValues) -> None:
        self.store = store
        self.name = name
        self.config = config
        self.values = values

    def reference(self, optuna_study: OptunaStudy, first: dict[str, float]) -> list[float]:
        """The study's hypervolume reference point (:func:`search._front.study_reference`),
        fixed at its first complete trial (``first``) and kept with its Optuna study."""
        attrs = optuna_study.study.user_attrs
        if REFERENCE_ATTR in attrs:
            return list(attrs[REFERENCE_ATTR])
        point = study_reference(self.config.objective_names, self.config.directions,
                                ranges=self.values.ranges, first=first)
        reference = [float(v) for v in point]
        optuna_study.study.set_user_attr(REFERENCE_ATTR, reference)
        return reference

    def update(self, optuna_study: OptunaStudy, *, record: bool = True,
               phase: str = "search") -> FrontState:
        """Recompute the stored front from every complete feasible trial (and, if ``record``,
        append its hypervolume to the history as a point of ``phase``)."""
        complete = self.store.list_trials(self.name, state="complete")
        feasible = [t for t in complete if t.feasible is not False]
        if not feasible:
            self.store.replace_front(self.name, [], seen_complete=len(complete))
            return FrontState(0, 0, None)
        names, directions = self.config.objective_names, self.config.directions
        values = np.array([[t.value(n) for n in names] for t in feasible], dtype=float)
        mask = pareto_mask(values, directions)
        first = {n: float(values[0, i]) for i, n in enumerate(names)}
        volume = hypervolume(values[mask], directions, self.reference(optuna_study, first))
        self.store.replace_front(self.name, [t.id for t, m in zip(feasible, mask, strict=True)
                                             if m], hypervolume=volume if record else None,
                                 seen_complete=len(complete), phase=phase)
        return FrontState(len(feasible), int(mask.sum()), volume)

    def verifies(self) -> bool:
        """Whether the front's predicted latency is to be measured at the end of a run."""
        return (self.config.latency.verify_front and self.values.latency is not None
                and self._latency_is_objective())

    def _latency_is_objective(self) -> bool:
        """Whether an objective is a latency (the pipeline's or the photo's)."""
        return any(n in LATENCY_OBJECTIVES for n in self.config.objective_names)

    def verify(self, optuna_study: OptunaStudy, device: StudyDevice,
               progress: Callable[[str, int, int], None], *,
               stopped: bool) -> tuple[FrontState, int]:
        """Measure the front's members on the device (nothing else runs now), store the
        measured latency beside the predicted one, and update the front; again for members
        the measured values brought onto it, until every member of the front is measured
        (each round measures members never measured, so it ends). Returns the front and how
        many were measured."""
        state = self.update(optuna_study, record=False)
        verified = 0
        while self.verifies() and not stopped:
            measured = self._measure_front(optuna_study, device, progress)
            if not measured:
                break
            # Measured values can change the front: a new point of history only then.
            state = self.update(optuna_study, phase="verify")
            verified += measured
        return state, verified

    def unmeasured(self) -> int:
        """Members of the stored front whose latency was predicted and never measured."""
        if not self._latency_is_objective():
            return 0
        return sum(t.value(LATENCY_OBJECTIVE, "measured") is None
                   for t in self.store.front(self.name))

    def _measure_front(self, optuna_study: OptunaStudy, device: StudyDevice,
                       progress: Callable[[str, int, int], None]) -> int:
        front = [t for t in self.store.front(self.name)
                 if t.value(LATENCY_OBJECTIVE, "measured") is None]
        for i, trial in enumerate(front):
            progress("verify front", i, len(front))
            spec = self.store.get_architecture(str(trial.spec_id))
            measured = device.measure(spec)
            # The photo's latency is derived again from the measured one: measured too.
            self.store.add_values(trial.id, latency_values(ObjectiveValue(measured, "measured"),
                                                           spec, self.config.pipeline))
            if trial.optuna_trial_number is not None:
                optuna_study.record_measured({trial.optuna_trial_number: measured})
        progress("verify front", len(front), len(front))
        return len(front)
