"""What a stored study shows to its readers (``nanosd-nas study``, the API and the pages):
summaries, the front, the trials table, each value with its provenance.

Everything here reads the stored study document as it was submitted (``StudyRecord.config``),
without validating it again: a study stays readable after its space file moved.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from nanosd_nas.search.store import HypervolumePoint, StudyRecord, TrialRecord, TrialValue
    from nanosd_nas.spaces import ArchSpec

#: Which stored value is shown when a name has several: the same order as
#: ``TrialRecord.value`` (a measurement beats an exact count beats a prediction).
_PREFERRED = ("measured", "computed", "predicted")
_UNITS = {"latency_ms": " ms", "photo_latency_ms": " ms", "params_m": "M", "macs_g": "G",
          "unet_fidelity_db": " dB", "vae_psnr_db": " dB"}
_DIGITS = {"latency_ms": 1, "photo_latency_ms": 0, "params_m": 1, "macs_g": 2}
ARROWS = {"maximize": "↑", "minimize": "↓"}


# -- the stored document ---------------------------------------------------------------------
def objectives(record: StudyRecord) -> list[tuple[str, str]]:
    """(name, direction) of each objective of the stored study."""
    return [(str(o.get("name")), str(o.get("direction", ""))) for o in
            record.config.get("objectives", []) if isinstance(o, dict)]


def value_names(record: StudyRecord, trials: list[TrialRecord]) -> list[str]:
    """Objectives, then constrained values, then anything else a trial stored."""
    names = [name for name, _ in objectives(record)]
    names += [n for n in record.config.get("constraints", {}) if n not in names]
    stored = sorted({v.name for t in trials for v in t.values} - set(names))
    return names + stored


def constraint_labels(record: StudyRecord) -> list[str]:
    shown = []
    for name, bound in record.config.get("constraints", {}).items():
        if bound.get("min") is not None:
            shown.append(f"{name} ≥ {bound['min']:g}")
        if bound.get("max") is not None:
            shown.append(f"{name} ≤ {bound['max']:g}")
    return shown


# -- values ----------------------------------------------------------------------------------
def preferred(trial: TrialRecord, name: str) -> TrialValue | None:
    """The value called ``name`` that :meth:`TrialRecord.value` returns, with its provenance."""
    found = [v for v in trial.values if v.name == name]
    return min(found, key=lambda v: _PREFERRED.index(v.provenance)) if found else None


def format_value(name: str, value: float) -> str:
    digits = _DIGITS.get(name, 2 if name in _UNITS else None)
    number = f"{value:.{digits}f}" if digits is not None else f"{value:.4g}"
    return number + _UNITS.get(name, "")


def shown_value(trial: TrialRecord, name: str) -> str:
    """``12.3 ms (predicted)``; a verified value also shows its prediction."""
    best = preferred(trial, name)
    if best is None:
        return ""
    text = f"{format_value(name, best.value)} ({best.provenance}"
    predicted = [v for v in trial.values if v.name == name and v.provenance == "predicted"]
    if best.provenance != "predicted" and predicted:
        text += f"; predicted {format_value(name, predicted[0].value)}"
    return text + ")"


def value_document(value: TrialValue) -> dict[str, Any]:
    return {"name": value.name, "value": value.value, "provenance": value.provenance,
            "predictor_id": value.predictor_id}


# -- accuracy details ------------------------------------------------------------------------
#: What ``study trials --json`` and the API's trials show of each trial's accuracy details
#: (``null`` for a trial without them).
SHOWN_DETAILS = ("fidelity_ci95", "fidelity_by_t", "untrained_parameters")
#: The timestep buckets of ``fidelity_by_t``, in order.
TIMESTEP_BUCKETS = ("0-250", "250-500", "500-750", "750-1000")
_DASH = "\u2013"  # between an interval's bounds


def shown_details(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The :data:`SHOWN_DETAILS` of a trial's details, each ``None`` when it has none."""
    return {name: (details or {}).get(name) for name in SHOWN_DETAILS}


def interval(details: Mapping[str, Any] | None, name: str) -> tuple[float, float] | None:
    """The 95% interval the details give for value ``name`` (``NAME_ci95``: ``[lo, hi]``);
    ``None`` unless that is two finite numbers."""
    found = (details or {}).get(f"{name}_ci95")
    if not isinstance(found, list | tuple) or len(found) != 2:
        return None
    if not all(_finite(bound) for bound in found):
        return None
    low, high = sorted(float(bound) for bound in found)
    return low, high


def interval_text(details: Mapping[str, Any] | None, name: str) -> str:
    """``95% CI 22.9-23.8`` (an en dash between the bounds) for value ``name``, or ``""``."""
    bounds = interval(details, name)
    return "" if bounds is None else f"95% CI {bounds[0]:.1f}{_DASH}{bounds[1]:.1f}"


def with_interval(value: float, details: Mapping[str, Any] | None, name: str,
                  unit: str = " dB") -> str:
    """``23.4 dB (95% CI 22.9-23.8)`` (an en dash between the bounds); the value alone when
    the details give no interval."""
    shown = interval_text(details, name)
    text = f"{value:.1f}{unit}"
    return f"{text} ({shown})" if shown else text


def fidelity_by_t(details: Mapping[str, Any] | None) -> list[tuple[str, float | None]]:
    """``(bucket, dB or None)`` of the fidelity by timestep bucket, in timestep order (the
    known buckets first); empty when the details have none."""
    found = (details or {}).get("fidelity_by_t")
    if not isinstance(found, Mapping):
        return []
    names = [b for b in TIMESTEP_BUCKETS if b in found]
    names += [str(b) for b in found if b not in TIMESTEP_BUCKETS]
    return [(b, float(found[b]) if _finite(found[b]) else None) for b in names]


def _finite(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


# -- summaries -------------------------------------------------------------------------------
def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def summary(record: StudyRecord, trials: list[TrialRecord], front: list[TrialRecord],
            history: list[HypervolumePoint]) -> dict[str, Any]:
    """One study as ``study list`` and ``study show`` report it."""
    states = Counter(t.state for t in trials)
    config = record.config
    return {
        "name": record.name, "status": record.status, "status_reason": record.status_reason,
        "device": record.device or config.get("device"), "space": config.get("space"),
        "scale": config.get("scale"), "sampler": config.get("sampler"),
        # A study stored before studies had an encoding was asked in ordinal choices.
        "encoding": config.get("encoding", "ordinal"), "n_trials": config.get("n_trials"),
        "trials": {state: states.get(state, 0) for state in ("complete", "failed", "running")},
        "front_size": len(front),
        "best_hypervolume": max((h.hypervolume for h in history), default=None),
        "created_at": iso(record.created_at), "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
    }


# -- the front -------------------------------------------------------------------------------
def front_document(record: StudyRecord, front: list[TrialRecord],
                   history: list[HypervolumePoint]) -> dict[str, Any]:
    names = [name for name, _ in objectives(record)]
    members = []
    for trial in front:
        best = {n: preferred(trial, n) for n in names}
        members.append({
            "number": trial.number, "spec_id": trial.spec_id, "feasible": trial.feasible,
            "objectives": {n: None if v is None else value_document(v) for n, v in best.items()},
            "values": [value_document(v) for v in trial.values],
        })
    return {"study": record.name,
            "objectives": [{"name": n, "direction": d} for n, d in objectives(record)],
            "hypervolume": history[-1].hypervolume if history else None, "front": members}


# -- the trials table ------------------------------------------------------------------------
def spec_layout(spec: ArchSpec) -> str:
    """Each U-Net stage's attention layout, in the order data flows (``E1:TT E2:RT D2:RRT
    D1:TT``; ``T`` a layer with a transformer, ``R`` a ResNet alone), as the Optuna trial's
    ``nas_layout`` user attribute says it."""
    from nanosd_nas.spaces import stage_layouts

    return " ".join(f"{stage}:{layout}" for stage, layout in stage_layouts(spec).items())


def spec_widths(spec: ArchSpec) -> str:
    """The channel widths of the U-Net's levels and the VAE's halves (``unet:32/64
    vae_encoder:32/64 vae_decoder:64/32``), those of the ``nas_widths`` user attribute."""
    widths = {"unet": [level.channels for level in spec.unet.levels],
              "vae_encoder": list(spec.vae.encoder_channels),
              "vae_decoder": list(spec.vae.decoder_channels)}
    return " ".join(f"{part}:{'/'.join(map(str, channels))}" for part, channels in widths.items())


def trials_frame(record: StudyRecord, trials: list[TrialRecord],
                 specs: Mapping[str, ArchSpec] | None = None) -> pd.DataFrame:
    """Every trial, one row each: number, state, spec_id, the architecture's ``layout`` and
    ``widths`` (:func:`spec_layout`, :func:`spec_widths`; from ``specs``, the stored specs by
    id, ``None`` without them), each value and its provenance, feasible, fail_reason, then when
    it started and finished (ISO 8601, UTC), its duration in seconds (``None`` while it runs)
    and the worker that evaluated it."""
    import pandas as pd  # only the commands that make tables pay for pandas

    names = value_names(record, trials)
    columns = ["number", "state", "spec_id", "layout", "widths"]
    columns += [c for n in names for c in (n, f"{n}_provenance")]
    columns += ["feasible", "fail_reason", "started_at", "finished_at", "duration_s", "worker"]
    rows = []
    for trial in trials:
        spec = None if trial.spec_id is None else (specs or {}).get(trial.spec_id)
        row: dict[str, Any] = {"number": trial.number, "state": trial.state,
                               "spec_id": trial.spec_id,
                               "layout": None if spec is None else spec_layout(spec),
                               "widths": None if spec is None else spec_widths(spec)}
        for name in names:
            value = preferred(trial, name)
            row[name] = None if value is None else value.value
            row[f"{name}_provenance"] = None if value is None else value.provenance
        finished = trial.finished_at
        row.update(feasible=trial.feasible, fail_reason=trial.fail_reason,
                   started_at=trial.started_at.isoformat(timespec="seconds"),
                   finished_at=None if finished is None else finished.isoformat(
                       timespec="seconds"),
                   duration_s=None if finished is None else round(
                       (finished - trial.started_at).total_seconds(), 3),
                   worker=trial.worker)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    for name in [*names, "duration_s"]:
        frame[name] = frame[name].astype("float64")
    return frame


def trials_records(frame: pd.DataFrame, trials: list[TrialRecord] | None = None
                   ) -> list[dict[str, Any]]:
    """The frame as JSON records (missing values as ``null``); given the ``trials``, each
    record also holds the trial's :data:`SHOWN_DETAILS`."""
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    if trials is not None:
        details = {t.number: t.details for t in trials}
        for record in records:
            record.update(shown_details(details.get(record["number"])))
    return records


# -- parameter importances ------------------------------------------------------------------
#: The share of the best trials PED-ANOVA asks what set them apart (Optuna's default), raised
#: for a small study so that at least two trials are among them.
_TOP_QUANTILE = 0.1


def param_importances(record: StudyRecord, trials: list[TrialRecord]
                      ) -> dict[str, dict[str, float]]:
    """Each objective's importance of each searched dimension, by Optuna's PED-ANOVA evaluator
    (:class:`optuna.importance.PedAnovaImportanceEvaluator`, which needs no package beyond
    Optuna) over the complete trials, their values as the table shows them (a measurement
    before a prediction); with fewer than two such trials, each objective has none (``{}``).

    The trials are given to an in-memory Optuna study by dimension (the stored ``params``),
    whatever encoding the study's sampler saw, so that the importances name the space's
    dimensions.
    """
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    named = objectives(record)
    distributions = _distributions(trials)
    scored = [(t, values) for t in trials
              if t.state == "complete" and set(t.params) == set(distributions)
              for values in ([t.value(n) for n, _ in named],)
              if all(_finite(v) for v in values)]
    if len(scored) < 2 or not distributions:
        return {name: {} for name, _ in named}
    study = _quiet_study(len(named))
    study.add_trials([optuna.trial.create_trial(
        params=dict(t.params), distributions=distributions,
        values=[float(v or 0.0) for v in values]) for t, values in scored])
    quantile = min(0.5, max(_TOP_QUANTILE, 2 / len(scored)))
    found: dict[str, dict[str, float]] = {}
    for index, (name, direction) in enumerate(named):
        # PED-ANOVA takes a lower target as better: a maximised objective is negated.
        target = _target(index, -1.0 if direction == "maximize" else 1.0)
        with warnings.catch_warnings():  # its reminder that lower targets are better
            warnings.simplefilter("ignore")
            shares = get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(target_quantile=quantile),
                target=target)
        found[name] = {param: float(share) for param, share in shares.items()}
    return found


def _quiet_study(n_objectives: int) -> Any:
    """An in-memory Optuna study, created without Optuna's log line saying so."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.create_study(directions=["minimize"] * n_objectives)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _target(index: int, sign: float) -> Callable[[Any], float]:
    def target(trial: Any) -> float:
        return sign * float(trial.values[index])

    return target


def _distributions(trials: list[TrialRecord]) -> dict[str, Any]:
    """Each dimension the complete trials name: an integer range over its integer choices,
    else a categorical one."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    seen: dict[str, set[Any]] = {}
    for trial in trials:
        if trial.state == "complete":
            for name, value in trial.params.items():
                seen.setdefault(name, set()).add(value)
    out: dict[str, Any] = {}
    for name, values in sorted(seen.items()):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[name] = IntDistribution(min(values), max(values))
        else:
            out[name] = CategoricalDistribution(sorted(values, key=str))
    return out


# -- sample grids ----------------------------------------------------------------------------
#: A spec's sample grid and figures (``nanosd-nas accuracy sample``), where the candidate page
#: looks for them: ``samples/SPEC_ID/`` in the project home.
SAMPLES_FOLDER = "samples"
GRID_FILE = "grid.png"
SAMPLES_FILE = "samples.json"


def samples_folder(spec_id: str, home: Path | None = None) -> Path:
    """The folder of ``spec_id``'s samples in the project home (``home`` or the default).

    Raises:
        ValueError: ``spec_id`` is not a spec id (16 lowercase hex digits).
    """
    from nanosd_nas.latency_models import project_home

    if len(spec_id) != 16 or any(c not in "0123456789abcdef" for c in spec_id):
        raise ValueError(f"{spec_id!r} is not a spec id")
    return project_home(home) / SAMPLES_FOLDER / spec_id
