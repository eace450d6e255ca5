"""What ``nanosd-nas study`` shows of a stored study: summaries, the front, the trials table.

Everything here reads the stored study document as it was submitted (``StudyRecord.config``),
without validating it again: a study stays readable after its space file moved.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from search.store import HypervolumePoint, StudyRecord, TrialRecord, TrialValue

#: Which stored value is shown when a name has several: the same order as
#: ``TrialRecord.value`` (a measurement beats an exact count beats a prediction).
_PREFERRED = ("measured", "computed", "predicted")
_UNITS = {"latency_ms": " ms", "params_m": "M", "macs_g": "G", "unet_fidelity_db": " dB",
          "vae_psnr_db": " dB"}
_DIGITS = {"latency_ms": 1, "params_m": 1, "macs_g": 2}
_ARROWS = {"maximize": "↑", "minimize": "↓"}


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


def _bounds(record: StudyRecord) -> list[str]:
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


def _value_document(value: TrialValue) -> dict[str, Any]:
    return {"name": value.name, "value": value.value, "provenance": value.provenance,
            "predictor_id": value.predictor_id}


# -- summaries -------------------------------------------------------------------------------
def _iso(moment: datetime | None) -> str | None:
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
        "n_trials": config.get("n_trials"),
        "trials": {state: states.get(state, 0) for state in ("complete", "failed", "running")},
        "front_size": len(front),
        "best_hypervolume": max((h.hypervolume for h in history), default=None),
        "created_at": _iso(record.created_at), "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
    }


def _date(text: str | None) -> str:
    return "" if text is None else text.replace("T", " ")[:16]


def _hypervolume(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def studies_table(summaries: list[dict[str, Any]]) -> Table:
    table = Table(title="Studies")
    # The name is what the user types next: never shortened.
    table.add_column("name", min_width=max((len(s["name"]) for s in summaries), default=4))
    for column in ("status", "done", "failed", "front", "best HV", "created"):
        table.add_column(column, justify="left" if column in ("status", "created")
                         else "right")
    for s in summaries:
        table.add_row(s["name"], s["status"], f"{s['trials']['complete']}/{s['n_trials']}",
                      str(s["trials"]["failed"]), str(s["front_size"]),
                      _hypervolume(s["best_hypervolume"]), _date(s["created_at"])[:10])
    return table


def study_table(record: StudyRecord, shown: dict[str, Any]) -> Table:
    """``study show``: the study's settings, progress and status, one per row."""
    config = record.config
    pipeline = config.get("pipeline", {})
    latency, accuracy = config.get("latency", {}), config.get("accuracy", {})
    counts = shown["trials"]
    status = shown["status"] + (f" ({shown['status_reason']})" if shown["status_reason"] else "")
    rows = {
        "status": status,
        "space": f"{shown['space']} at {shown['scale']}",
        "device": str(shown["device"]),
        "pipeline": f"{pipeline.get('steps', 1)} step(s), image "
                    f"{pipeline.get('image_size') or 'at the scale size'}",
        "objectives": ", ".join(f"{n} {_ARROWS.get(d, d)}" for n, d in objectives(record)),
        "constraints": ", ".join(_bounds(record)) or "none",
        "sampler": f"{shown['sampler']} (seed {config.get('seed')}), parallelism "
                   f"{config.get('parallelism')}",
        "latency": f"{latency.get('source')}" + (", front verified by measuring"
                                                  if latency.get("verify_front") else ""),
        "accuracy": f"{accuracy.get('evaluator')} (teacher {accuracy.get('teacher')})",
        "trials": f"{counts['complete']} complete, {counts['failed']} failed, "
                  f"{counts['running']} running, of {shown['n_trials']}",
        "front": f"{shown['front_size']} trial(s), best hypervolume "
                 f"{_hypervolume(shown['best_hypervolume']) or 'none yet'}",
        "created": _date(shown["created_at"]),
        "started": _date(shown["started_at"]) or "not yet",
        "finished": _date(shown["finished_at"]) or "not yet",
    }
    table = Table(title=f"Study {record.name}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    for key, value in rows.items():
        table.add_row(key, value)
    return table


# -- the front -------------------------------------------------------------------------------
def front_document(record: StudyRecord, front: list[TrialRecord],
                   history: list[HypervolumePoint]) -> dict[str, Any]:
    names = [name for name, _ in objectives(record)]
    members = []
    for trial in front:
        best = {n: preferred(trial, n) for n in names}
        members.append({
            "number": trial.number, "spec_id": trial.spec_id, "feasible": trial.feasible,
            "objectives": {n: None if v is None else _value_document(v) for n, v in best.items()},
            "values": [_value_document(v) for v in trial.values],
        })
    return {"study": record.name,
            "objectives": [{"name": n, "direction": d} for n, d in objectives(record)],
            "hypervolume": history[-1].hypervolume if history else None, "front": members}


def front_table(record: StudyRecord, front: list[TrialRecord],
                history: list[HypervolumePoint]) -> Table:
    hypervolume = f", hypervolume {history[-1].hypervolume:.4g}" if history else ""
    table = Table(title=f"Pareto front of {record.name}: {len(front)} trial(s){hypervolume}")
    table.add_column("trial", justify="right")
    table.add_column("spec id", no_wrap=True)
    pairs = objectives(record)
    for name, direction in pairs:
        table.add_column(f"{name} {_ARROWS.get(direction, '')}".strip(), justify="right")
    for trial in front:
        table.add_row(str(trial.number), trial.spec_id or "",
                      *(shown_value(trial, name) for name, _ in pairs))
    return table


# -- the trials table ------------------------------------------------------------------------
def trials_frame(record: StudyRecord, trials: list[TrialRecord]) -> pd.DataFrame:
    """Every trial, one row each: number, state, spec_id, each value and its provenance,
    feasible, fail_reason."""
    import pandas as pd  # only the commands that make tables pay for pandas

    names = value_names(record, trials)
    columns = ["number", "state", "spec_id"]
    columns += [c for n in names for c in (n, f"{n}_provenance")]
    columns += ["feasible", "fail_reason"]
    rows = []
    for trial in trials:
        row: dict[str, Any] = {"number": trial.number, "state": trial.state,
                               "spec_id": trial.spec_id}
        for name in names:
            value = preferred(trial, name)
            row[name] = None if value is None else value.value
            row[f"{name}_provenance"] = None if value is None else value.provenance
        row.update(feasible=trial.feasible, fail_reason=trial.fail_reason)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    for name in names:
        frame[name] = frame[name].astype("float64")
    return frame


def trials_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame as JSON records (missing values as ``null``)."""
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return records


def trials_table(record: StudyRecord, trials: list[TrialRecord]) -> Table:
    names = value_names(record, trials)
    table = Table(title=f"Trials of {record.name}: {len(trials)}")
    for column in ("trial", "state", "spec id", *names, "feasible", "fail reason"):
        table.add_column(column, justify="right" if column in ("trial", *names) else "left",
                         no_wrap=column == "spec id")
    for trial in trials:
        feasible = "" if trial.feasible is None else ("yes" if trial.feasible else "no")
        table.add_row(str(trial.number), trial.state, trial.spec_id or "",
                      *(shown_value(trial, n) for n in names), feasible,
                      trial.fail_reason or "")
    return table


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV: a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False)
        Path(temporary).chmod(0o644)  # mkstemp makes it private; a table is not a secret
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
