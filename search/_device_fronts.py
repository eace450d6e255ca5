"""A study's Pareto front on each device it has values for: its own device's (the stored front)
and every device the study was rescored for (``study rescore``), how the Pareto set moves from
one device to another.

The front on a rescored device is the service's front rule (:func:`search._front.pareto_mask`,
as the runner's) over the study's objectives, each trial's values with the device's rescored
ones (its latency, and its photo's) in place of the study's, and feasibility judged again by
the study's constraints on those values: a trial too slow for a latency bound on one device may
meet it on another. A trial without values on the device (one completed after the device was
rescored) is left out of its front.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nanosd_nas.search._front import pareto_mask
from nanosd_nas.search._study_sections import NATURAL_DIRECTIONS
from nanosd_nas.search.study_views import objectives, preferred, value_document

if TYPE_CHECKING:
    from nanosd_nas.search.store import Store, StudyRecord, TrialRecord, TrialValue


@dataclass(frozen=True)
class FrontMember:
    """A trial on a device's front, with every value as it reads on that device."""

    trial: TrialRecord
    values: dict[str, TrialValue]


@dataclass(frozen=True)
class DeviceFront:
    """A study's front on one device.

    Attributes:
        device: the device.
        own: whether it is the study's own device (the front is then the stored one).
        scored: complete trials with values on the device.
        feasible: of those, the ones that meet the study's constraints there.
        members: the front, by trial number.
    """

    device: str
    own: bool
    scored: int
    feasible: int
    members: tuple[FrontMember, ...]


def own_values(trial: TrialRecord) -> dict[str, TrialValue]:
    """Each value of ``trial`` as the study shows it (measured, else computed, else
    predicted)."""
    names = dict.fromkeys(v.name for v in trial.values)
    return {name: value for name in names if (value := preferred(trial, name)) is not None}


def study_objectives(record: StudyRecord) -> list[tuple[str, str]]:
    """(name, direction) of each objective of a stored study; a document stored without a
    direction has the objective's natural one, as the study's parser gives it."""
    return [(name, direction or NATURAL_DIRECTIONS.get(name, "maximize"))
            for name, direction in objectives(record)]


def study_device(record: StudyRecord) -> str:
    """The device a stored study ran on."""
    return record.device or str(record.config.get("device"))


def device_fronts(store: Store, name: str) -> list[DeviceFront]:
    """Study ``name``'s front on its own device first, then on each device it was rescored
    for, by name.

    Raises:
        StudyNotFound: no such study.
    """
    record = store.get_study(name)
    complete = store.list_trials(name, state="complete")
    stored = {t.id for t in store.front(name)}
    fronts = [DeviceFront(
        device=study_device(record), own=True, scored=len(complete),
        feasible=sum(t.feasible is not False for t in complete),
        members=tuple(FrontMember(t, own_values(t)) for t in complete if t.id in stored))]
    rescored: dict[str, dict[int, dict[str, TrialValue]]] = {}
    for value in store.rescored_values(name):
        rescored.setdefault(value.device, {}).setdefault(value.trial_id, {})[value.name] = (
            value.as_trial_value())
    fronts += [front_on(record, complete, device, values)
               for device, values in rescored.items()]
    return fronts


def front_on(record: StudyRecord, complete: list[TrialRecord], device: str,
             rescored: Mapping[int, Mapping[str, TrialValue]]) -> DeviceFront:
    """The front of ``record``'s ``complete`` trials on ``device``, whose values there are
    ``rescored`` (by trial id, then name)."""
    names = [n for n, _ in study_objectives(record)]
    directions = [d for _, d in study_objectives(record)]
    constraints = record.config.get("constraints") or {}
    scored = [FrontMember(t, {**own_values(t), **rescored[t.id]}) for t in complete
              if t.id in rescored]
    feasible = [m for m in scored
                if meets(m.values, constraints) and all(n in m.values for n in names)]
    members: tuple[FrontMember, ...] = ()
    if feasible:
        values = np.array([[m.values[n].value for n in names] for m in feasible], dtype=float)
        mask = pareto_mask(values, directions)
        members = tuple(m for m, keep in zip(feasible, mask, strict=True) if keep)
    return DeviceFront(device=device, own=False, scored=len(scored), feasible=len(feasible),
                       members=members)


def meets(values: Mapping[str, TrialValue], constraints: Mapping[str, Any]) -> bool:
    """Whether ``values`` meet every bound of a stored study's ``constraints`` (a value that
    is missing meets none)."""
    for name, bound in constraints.items():
        found = values.get(name)
        if found is None:
            return False
        low, high = (bound or {}).get("min"), (bound or {}).get("max")
        if (low is not None and found.value < low) or (high is not None and found.value > high):
            return False
    return True


def fronts_document(record: StudyRecord, fronts: list[DeviceFront]) -> dict[str, Any]:
    """The fronts as JSON (``GET /api/studies/NAME/fronts``): per device, the members' numbers,
    spec ids and objective values, each with its provenance."""
    names = [n for n, _ in study_objectives(record)]
    return {
        "study": record.name,
        "objectives": [{"name": n, "direction": d} for n, d in study_objectives(record)],
        "fronts": [{
            "device": front.device, "own": front.own, "scored": front.scored,
            "feasible": front.feasible,
            "front": [{"number": m.trial.number, "spec_id": m.trial.spec_id,
                       "objectives": {n: value_document(m.values[n]) if n in m.values else None
                                      for n in names}}
                      for m in front.members],
        } for front in fronts],
    }
