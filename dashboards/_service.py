"""What the API and the pages ask of the store: submit a study, a page of trials, a trial with
its architecture and block latencies, devices with their predictors.

Handlers stay thin; everything that reads more than one row is here, once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nanosd_nas.search import StudyConfig, StudyConfigError, device_fronts, fronts_document
from nanosd_nas.search.store import TrialNotFound
from nanosd_nas.search.study_views import (
    front_document,
    objectives,
    param_importances,
    preferred,
    summary,
    trials_frame,
    trials_records,
    value_document,
)
from nanosd_nas.spaces import COMPONENTS

if TYPE_CHECKING:
    import pandas as pd

    from nanosd_nas.search.store import Store, StudyRecord, TrialRecord

SORT_ORDERS = ("asc", "desc")
#: The project home's folder of teachers that studies submitted over HTTP may name.
TEACHERS_FOLDER = "teachers"
_TEACHER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: Fields of the accuracy section that name a file or folder (refused over HTTP).
_PATH_FIELDS = ("images", "context")
#: Trial numbers are 64-bit integers in the database; SQLite cannot even compare a larger one.
_TRIAL_NUMBERS = range(2**63)


# -- studies ---------------------------------------------------------------------------------
def submit_study(store: Store, document: Any, *, allow_plugins: bool = False) -> StudyRecord:
    """Validate a study document and queue it for a worker.

    Submitted over the network, a study may name only shipped spaces, the built-in evaluators
    (unless ``allow_plugins``) and the ``demo`` teacher or one in the project home's
    ``teachers/`` folder, by name: a file path or a ``module:function`` would make the server
    read files or import code of the client's choosing.

    Raises:
        StudyConfigError: the document is not a valid study, with the field and the value.
        StudyExists: the name is taken.
    """
    from nanosd_nas import spaces

    space = document.get("space") if isinstance(document, Mapping) else None
    if isinstance(space, str) and space not in spaces.list_spaces():  # before any file is read
        raise StudyConfigError(f"study: space: {space!r} is not a shipped space "
                               f"({', '.join(spaces.list_spaces())}); space files can be used "
                               "from the command line only")
    _no_server_paths(document)
    config = StudyConfig.from_document(_with_server_teacher(document), source="study")
    if config.uses_plugin and not allow_plugins:
        raise StudyConfigError(f"study: accuracy.evaluator: {config.accuracy.evaluator!r} is a "
                               "plugin reference; this server accepts the built-in evaluators "
                               "only")
    device = config.check_device(source="study")
    store.upsert_device(device)
    return store.create_study(config.name, config.to_document(), device=device.name,
                              queued=True)


def _no_server_paths(document: Any) -> None:
    """Refuse, before any file is looked at, the accuracy section's paths: they would make the
    server read files of the client's choosing (and say which exist)."""
    accuracy = document.get("accuracy") if isinstance(document, Mapping) else None
    if not isinstance(accuracy, Mapping):
        return
    for key in _PATH_FIELDS:
        if accuracy.get(key) is not None:
            raise StudyConfigError(f"study: accuracy.{key}: a path on this server cannot be "
                                   "given over HTTP; calibration images and conditioning "
                                   "files can be used from the command line only")


#: The teachers that ship with the package (loaded by name, not from the teachers folder).
_SHIPPED_TEACHERS = ("demo", "trained")


def server_teachers() -> list[str]:
    """The teachers a submitted study may name: the shipped ``demo`` and ``trained`` and the
    entries of the project home's ``teachers/`` folder (diffusers folders or ``.safetensors``
    files)."""
    from nanosd_nas.latency_models import project_home

    folder = project_home() / TEACHERS_FOLDER
    installed = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return [*_SHIPPED_TEACHERS,
            *(n for n in installed if _TEACHER_NAME.fullmatch(n) and n not in _SHIPPED_TEACHERS)]


def _with_server_teacher(document: Any) -> Any:
    """``document`` with ``accuracy.teacher`` checked against :func:`server_teachers` and
    turned into the path of that teacher (the worker loads it from there)."""
    from nanosd_nas.latency_models import project_home

    accuracy = document.get("accuracy") if isinstance(document, Mapping) else None
    if not isinstance(accuracy, Mapping):
        return document
    teacher = accuracy.get("teacher")
    if not isinstance(teacher, str) or teacher in _SHIPPED_TEACHERS:
        return document  # a shipped teacher, or a mistake the study's own validation names
    known = server_teachers()
    if teacher not in known:
        raise StudyConfigError(f"study: accuracy.teacher: {teacher[:200]!r} is not one of this "
                               f"server's teachers ({', '.join(known)}); teacher paths can be "
                               "used from the command line only")
    path = (project_home() / TEACHERS_FOLDER / teacher).absolute()
    return {**document, "accuracy": {**accuracy, "teacher": str(path)}}


def study_summary(store: Store, name: str) -> dict[str, Any]:
    """``study show``'s summary of one study, with its document."""
    record = store.get_study(name)
    shown = summary(record, store.list_trials(name), store.front(name),
                    store.hypervolume_history(name))
    return {**shown, "config": record.config}


def study_summaries(store: Store) -> list[dict[str, Any]]:
    return [summary(r, store.list_trials(r.name), store.front(r.name),
                    store.hypervolume_history(r.name)) for r in store.list_studies()]


def study_front(store: Store, name: str) -> dict[str, Any]:
    return front_document(store.get_study(name), store.front(name),
                          store.hypervolume_history(name))


def study_fronts(store: Store, name: str) -> dict[str, Any]:
    """The study's front on its own device, then on each device it was rescored for."""
    return fronts_document(store.get_study(name), device_fronts(store, name))


# -- trials ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ValueRange:
    """Keep trials whose ``name`` lies in ``[low, high]`` (either end open)."""

    name: str
    low: float | None = None
    high: float | None = None

    @classmethod
    def parse(cls, text: str) -> ValueRange:
        """``latency_ms:0:40``, ``fidelity:12:`` or ``params_m::300``."""
        parts = text.split(":")
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"range {text!r} must be NAME:MIN:MAX (either bound may be empty)")
        bounds = []
        for part in parts[1:]:
            try:
                bounds.append(float(part) if part.strip() else None)
            except ValueError:
                raise ValueError(f"range {text!r}: {part!r} is not a number") from None
        if any(b is not None and not math.isfinite(b) for b in bounds):
            raise ValueError(f"range {text!r}: bounds must be finite numbers")
        return cls(parts[0], bounds[0], bounds[1])


@dataclass(frozen=True)
class TrialQuery:
    """One page of a study's trials: filters, then sort, then ``offset``/``limit``."""

    offset: int = 0
    limit: int = 50
    sort: str = "number"
    order: str = "asc"
    state: str | None = None
    feasible: bool | None = None
    ranges: tuple[ValueRange, ...] = field(default_factory=tuple)


def trials_page(store: Store, name: str, query: TrialQuery) -> dict[str, Any]:
    """The trials of ``name`` that pass ``query``'s filters, sorted, one page of them.

    Raises:
        ValueError: a sort column or range names a value the study does not have.
    """
    chosen, trials = filtered_trials(store, name, query)
    page = chosen.iloc[query.offset:query.offset + query.limit]
    return {"study": name, "total": len(chosen), "offset": query.offset,
            "limit": query.limit, "columns": list(chosen.columns),
            "trials": trials_records(page, trials)}


def filtered_trials(store: Store, name: str, query: TrialQuery
                    ) -> tuple[pd.DataFrame, list[TrialRecord]]:
    """Every trial of ``name`` that passes ``query``'s filters, sorted (``offset`` and
    ``limit`` left to the caller), with the study's trials.

    Raises:
        ValueError: a sort column or range names a value the study does not have.
    """
    record = store.get_study(name)
    trials = store.list_trials(name)
    frame = trials_frame(record, trials,
                         store.get_architectures(t.spec_id for t in trials if t.spec_id))
    columns = list(frame.columns)
    if query.sort not in columns:
        raise ValueError(f"sort {query.sort!r} is not a column; columns: {', '.join(columns)}")
    if query.order not in SORT_ORDERS:
        raise ValueError(f"order {query.order!r} must be asc or desc")
    keep = frame["number"].notna()
    if query.state is not None:
        keep &= frame["state"] == query.state
    if query.feasible is not None:
        keep &= frame["feasible"] == query.feasible
    for bound in query.ranges:
        if bound.name not in columns or frame[bound.name].dtype.kind != "f":
            raise ValueError(f"range on {bound.name!r}: the study has no such value")
        if bound.low is not None:
            keep &= frame[bound.name] >= bound.low
        if bound.high is not None:
            keep &= frame[bound.name] <= bound.high
    chosen = frame[keep].sort_values(query.sort, ascending=query.order == "asc",
                                     na_position="last", kind="stable")
    return chosen, trials


def study_importances(store: Store, name: str) -> dict[str, Any]:
    """Each objective's parameter importances over the study's complete trials
    (:func:`search.study_views.param_importances`)."""
    record = store.get_study(name)
    return {"study": name, "evaluator": "PedAnovaImportanceEvaluator",
            "importances": param_importances(record, store.list_trials(name, state="complete"))}


def get_trial(store: Store, name: str, number: int) -> TrialRecord:
    """Trial ``number`` of ``name``; :class:`TrialNotFound` also for a number no trial can
    have (negative, or past 64 bits, which SQLite refuses to bind: an OverflowError, a 500)."""
    if number not in _TRIAL_NUMBERS:
        store.get_study(name)  # StudyNotFound first, as the store answers
        raise TrialNotFound(f"study {name!r} has no trial {number}")
    return store.get_trial(name, number)


def trial_detail(store: Store, name: str, number: int) -> dict[str, Any]:
    """A trial with its values (each with provenance), its architecture's summary, and its
    predicted per-block latency breakdown on the study's device where a predictor exists."""
    from nanosd_nas import spaces

    record = store.get_study(name)
    trial = get_trial(store, name, number)
    detail: dict[str, Any] = {
        "study": name, "number": trial.number, "state": trial.state, "spec_id": trial.spec_id,
        "params": trial.params, "feasible": trial.feasible, "fail_reason": trial.fail_reason,
        "constraints": trial.constraints, "on_front": _on_front(store, name, trial),
        "objectives": {n: _maybe(preferred(trial, n)) for n, _ in objectives(record)},
        "values": [value_document(v) for v in trial.values],
        "architecture": None, "blocks": None, "details": trial.details,
    }
    if trial.spec_id is None:
        return detail
    spec = store.get_architecture(trial.spec_id)
    detail["architecture"] = spaces.spec_summary(spec)
    detail["blocks"] = block_latencies(store, spec, record)
    return detail


def _maybe(value: Any) -> dict[str, Any] | None:
    return None if value is None else value_document(value)


def _on_front(store: Store, name: str, trial: TrialRecord) -> bool:
    return any(t.id == trial.id for t in store.front(name))


def block_latencies(store: Store, spec: Any, record: StudyRecord) -> dict[str, Any] | None:
    """Each block of ``spec`` with its latency from the device's block table (the measured
    block latencies the predictor learned from), as the database keeps it; None when the
    device has no readable predictor for the study's space and scale."""
    from nanosd_nas.latency_models import DamagedArtifact, PredictorNotFound
    from nanosd_nas.spaces import PresetError, decompose, load_space

    config = record.config
    try:
        space = load_space(str(config.get("space")))
        stored = store.find_predictor(str(config.get("device")), space, str(config.get("scale")))
        if stored is None:
            return None
        predictor = store.load_predictor(stored)
    except (PredictorNotFound, DamagedArtifact, PresetError, OSError):
        return None
    blocks = []
    for block in decompose(spec):
        try:
            latency: float | None = predictor.table.latency(block)
        except KeyError:
            latency = None
        blocks.append({"component": block.component, "kind": block.kind, "path": block.path,
                       "latency_ms": latency, "params": block.params, "macs": block.macs})
    return {"device": predictor.device, "statistic": predictor.table.statistic,
            "blocks": blocks}


# -- devices ---------------------------------------------------------------------------------
def in_study_points(store: Store, device: str) -> dict[int, dict[str, list[Any]]]:
    """By predictor id: the pipeline latency it predicted for the trials of the studies on
    ``device`` beside the latency measured for the same trials (a verified front), with each
    point's ``study trial N`` label."""
    points: dict[int, dict[str, list[Any]]] = {}
    for study in store.list_studies():
        if study.device != device:
            continue
        for trial in store.list_trials(study.name, state="complete"):
            measured = trial.value("latency_ms", "measured")
            predicted = next((v for v in trial.values
                              if v.name == "latency_ms" and v.provenance == "predicted"), None)
            if measured is None or predicted is None or predicted.predictor_id is None:
                continue
            shown = points.setdefault(predicted.predictor_id, {
                "predicted_ms": [], "measured_ms": [], "labels": []})
            shown["predicted_ms"].append(predicted.value)
            shown["measured_ms"].append(measured)
            shown["labels"].append(f"{study.name} trial {trial.number}")
    return points


def device_summaries(store: Store) -> list[dict[str, Any]]:
    """Every stored device with its predictors and their held-out accuracy."""
    predictors = store.predictors()
    devices = []
    for device in store.list_devices():
        own = [p for p in predictors if p.device == device.name]
        devices.append({
            "name": device.name, "kind": device.kind, "url": device.url,
            "predictors": [{"id": p.id, "space": p.space, "scale": p.scale,
                            "version": p.version, "statistic": p.statistic,
                            "headline": held_out_headline(p.held_out),
                            "held_out": p.held_out} for p in own],
        })
    return devices


#: The figures of one held-out accuracy (a component's or the pipeline's) that are quoted.
_FIGURES = ("within_10pct", "within_5pct", "spearman", "rmspe", "n")


def held_out_headline(held_out: Mapping[str, Any]) -> dict[str, Any] | None:
    """The held-out accuracy to quote first: that of the components whose latency varies across
    the predictor's space (``varying``), with the pipeline's beside it, which also holds the
    ``fixed`` components' latency, the same for every member, and so flatters the predictor;
    ``None`` without held-out members.

    A predictor calibrated before ``varying`` was recorded is read from its figures: a fixed
    component is measured once, so its held-out latencies are all equal and their rank
    correlation undefined (``spearman`` null); from one member nothing can be told, and every
    component leads.
    """
    pipeline = held_out.get("pipeline")
    if not isinstance(pipeline, Mapping):
        return None
    present = [c for c in COMPONENTS if isinstance(held_out.get(c), Mapping)]
    stated = held_out.get("varying")
    if isinstance(stated, list):
        varying = [c for c in present if c in stated]
    else:
        told = isinstance(pipeline.get("n"), int) and pipeline["n"] >= 2
        varying = [c for c in present if not told or held_out[c].get("spearman") is not None]

    def figures(name: str, accuracy: Mapping[str, Any]) -> dict[str, Any]:
        return {"name": name, **{key: accuracy.get(key) for key in _FIGURES}}

    return {"varying": varying, "components": [figures(c, held_out[c]) for c in varying],
            "pipeline": figures("pipeline", pipeline),
            "fixed": [c for c in present if c not in varying]}


def device_summary(store: Store, name: str) -> dict[str, Any]:
    store.get_device(name)  # UnknownDevice (404) first
    return next(d for d in device_summaries(store) if d["name"] == name)
