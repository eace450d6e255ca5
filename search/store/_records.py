"""What the store hands out: plain frozen values, detached from any database session."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nanosd_nas.search.store._models import PROVENANCES

_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class ObjectiveValue:
    """A value to store for a trial, with where it comes from.

    Attributes:
        value: a finite number.
        provenance: ``measured`` (on a device, or evaluated on data), ``predicted`` (by a model)
            or ``computed`` (exactly, from the spec: parameters, MACs).
        predictor_id: the stored predictor (see :meth:`Store.save_predictor`) that predicted
            it, for ``predicted`` values.
    """

    value: float
    provenance: str = "measured"
    predictor_id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, int | float) or not math.isfinite(self.value):
            raise ValueError(f"objective value {self.value!r} must be a finite number")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"provenance {self.provenance!r} does not exist; provenances: "
                             f"{', '.join(PROVENANCES)}")
        if self.predictor_id is not None and self.provenance != "predicted":
            raise ValueError(f"a {self.provenance} value has no predictor "
                             f"(predictor_id={self.predictor_id})")


@dataclass(frozen=True)
class TrialValue:
    """A stored value of a trial."""

    name: str
    value: float
    provenance: str
    predictor_id: int | None
    recorded_at: datetime


#: Which value :meth:`TrialRecord.value` prefers when a name has several.
_PREFERENCE = {"measured": 0, "computed": 1, "predicted": 2}


@dataclass(frozen=True)
class TrialRecord:
    """A stored trial. ``number`` is unique within its study and counts from 0."""

    id: int
    study: str
    number: int
    state: str
    params: dict[str, Any]
    spec_id: str | None
    values: tuple[TrialValue, ...]
    constraints: dict[str, float] | None
    feasible: bool | None
    worker: str | None
    optuna_trial_number: int | None
    fail_reason: str | None
    started_at: datetime
    heartbeat_at: datetime
    finished_at: datetime | None
    #: What the accuracy evaluator reported beside the values (a JSON document), if anything.
    details: dict[str, Any] | None = None

    def value(self, name: str, provenance: str | None = None) -> float | None:
        """The value called ``name``: of that provenance, or the best one stored (measured,
        then computed, then predicted); ``None`` if there is none."""
        found = [v for v in self.values
                 if v.name == name and (provenance is None or v.provenance == provenance)]
        if not found:
            return None
        return min(found, key=lambda v: _PREFERENCE[v.provenance]).value


@dataclass(frozen=True)
class RescoredValue:
    """A value of a trial rescored for another device than its study's (``study rescore``),
    stored beside the trial's own values."""

    trial_id: int
    number: int
    device: str
    name: str
    value: float
    provenance: str
    predictor_id: int | None
    stored_at: datetime

    def as_trial_value(self) -> TrialValue:
        """The value as the trial's own are handed out (its ``recorded_at`` when stored)."""
        return TrialValue(name=self.name, value=self.value, provenance=self.provenance,
                          predictor_id=self.predictor_id, recorded_at=self.stored_at)


@dataclass(frozen=True)
class StudyRecord:
    """A stored study; ``config`` is the study document as submitted (less any field the study
    format has removed since)."""

    id: int
    name: str
    status: str
    config: dict[str, Any]
    device: str | None
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: The runner holding a running study (``HOST:PID``) and when it last said so.
    runner: str | None = None
    runner_seen_at: datetime | None = None


@dataclass(frozen=True)
class HypervolumePoint:
    """The hypervolume of a study's front when ``n_complete`` trials were complete; ``phase``
    ``verify`` for a point recorded after the front's latencies were measured on the device."""

    n_complete: int
    hypervolume: float
    recorded_at: datetime
    phase: str = "search"


@dataclass(frozen=True)
class DeviceRecord:
    """A stored device (as the registry describes it; without its agent token)."""

    id: int
    name: str
    kind: str
    protocol: dict[str, Any]
    url: str | None
    fingerprint: dict[str, Any] | None
    stored_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PredictorRecord:
    """A stored latency predictor: which device, space (by digest), scale and version."""

    id: int
    device: str
    space: str
    space_digest: str
    scale: str
    version: str
    statistic: str | None
    held_out: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    stored_at: datetime | None = None


# -- checks of what callers hand in ------------------------------------------------------------
def check_study_name(name: str) -> str:
    """``name`` if it is a valid study name (letters, digits, ``.``, ``-``, ``_``; at most 128)."""
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        raise ValueError(f"study name {name!r} must be 1-128 letters, digits, '.', '-' or '_', "
                         "starting with a letter or digit")
    return name


def json_document(what: str, document: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(document, Mapping):
        raise ValueError(f"{what} must be a mapping, not {type(document).__name__}")
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is not a JSON document: {error}") from None
    return dict(document)


#: The most a trial's details take, as JSON; entries past it are left out (and named).
DETAILS_LIMIT = 256 * 1024
_DEPTH = 32
_TEXT = 10_000


def json_details(details: Any) -> dict[str, Any] | None:
    """An evaluator's details as a JSON document that any database stores: numbers as plain
    ints and floats (NumPy's and PyTorch's scalars and arrays too), a non-finite float as
    ``null``, anything else unknown as its text. Nothing in them can fail the trial: a
    document past :data:`DETAILS_LIMIT` keeps the entries that fit and names the others under
    ``"left_out"``."""
    if details is None:
        return None
    safe = _json_safe(details, 0)
    document = safe if isinstance(safe, dict) else {"value": safe}
    if len(json.dumps(document)) <= DETAILS_LIMIT:
        return document
    kept: dict[str, Any] = {}
    size, left_out = 2, []
    for key, value in document.items():
        entry = len(json.dumps({key: value}))
        if size + entry > DETAILS_LIMIT - 1024:  # room for the names left out
            left_out.append(key)
            continue
        kept[key], size = value, size + entry
    kept["left_out"] = [name[:100] for name in left_out[:50]]
    return kept


def _json_safe(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | str):
        return value[:_TEXT] if isinstance(value, str) else value
    if isinstance(value, numbers.Real):
        return _number(value)
    if depth >= _DEPTH:
        return _text(value)
    if isinstance(value, Mapping):
        return {_text(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v, depth + 1) for v in value]
    if callable(getattr(value, "tolist", None)):  # NumPy and PyTorch scalars and arrays
        try:
            plain = value.tolist()
        except Exception:  # an evaluator's own object: its text will do
            return _text(value)
        return _json_safe(plain, depth + 1)
    return _text(value)


def _number(value: numbers.Real) -> int | float | None:
    """A plain int (within 64 bits) or finite float; ``None`` for what is neither."""
    try:
        if isinstance(value, numbers.Integral) and -2**63 <= int(value) < 2**63:
            return int(value)
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    try:
        return str(value)[:_TEXT]
    except Exception:  # a __str__ that raises
        return f"<{type(value).__name__}>"


def constraint_values(constraints: Mapping[str, float] | None) -> dict[str, float] | None:
    if constraints is None:
        return None
    checked = {}
    for name, value in constraints.items():
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"constraint {name!r}={value!r} must be a finite number")
        checked[str(name)] = float(value)
    return checked


def objective_values(values: Mapping[str, ObjectiveValue]) -> dict[str, ObjectiveValue]:
    for name, value in values.items():
        if not isinstance(value, ObjectiveValue):
            raise ValueError(f"value {name!r}={value!r} must be an ObjectiveValue "
                             "(a value with its provenance)")
    return dict(values)
