"""``nanosd-nas study`` tables (Rich) over :mod:`nanosd_nas.search.study_views`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from nanosd_nas.search.study_views import (
    ARROWS,
    constraint_labels,
    format_value,
    front_document,
    objectives,
    shown_value,
    summary,
    trials_frame,
    trials_records,
    value_names,
)

if TYPE_CHECKING:
    import pandas as pd

    from nanosd_nas.search.store import HypervolumePoint, StudyRecord, TrialRecord

__all__ = ["front_document", "front_table", "rescore_table", "studies_table", "study_table",
           "summary", "trials_frame", "trials_records", "trials_table", "write_csv_atomic"]

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


def _accuracy(accuracy: dict[str, Any]) -> str:
    """``distill (teacher demo) on auto, images /data/calib``."""
    text = (f"{accuracy.get('evaluator')} (teacher {accuracy.get('teacher')}) on "
            f"{accuracy.get('device', 'cpu')}")
    given = [f"{key} {accuracy[key]}" for key in ("images", "context") if accuracy.get(key)]
    distill = accuracy.get("distill")
    if isinstance(distill, dict) and distill:
        given.append("distill " + ", ".join(f"{k}={v}" for k, v in distill.items()))
    return ", ".join([text, *given])


def _pipeline(pipeline: dict[str, Any]) -> str:
    """``1 step(s), images at the scale's size; photo 4000x3000 px in tiles overlapping by a
    quarter tile``."""
    text = f"{pipeline.get('steps', 1)} step(s), images at the scale's size"
    photo, overlap = pipeline.get("photo"), pipeline.get("tile_overlap")
    if isinstance(photo, list) and len(photo) == 2:
        text += (f"; photo {photo[0]}x{photo[1]} px in tiles overlapping by "
                 + ("a quarter tile" if overlap is None else f"{overlap} px"))
    return text


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
        "pipeline": _pipeline(pipeline),
        "objectives": ", ".join(f"{n} {ARROWS.get(d, d)}" for n, d in objectives(record)),
        "constraints": ", ".join(constraint_labels(record)) or "none",
        "sampler": f"{shown['sampler']} (seed {config.get('seed')}), parallelism "
                   f"{config.get('parallelism')}, {shown['encoding']} encoding",
        "latency": f"{latency.get('source')}" + (", front verified by measuring"
                                                  if latency.get("verify_front") else ""),
        "accuracy": _accuracy(accuracy),
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



def front_table(record: StudyRecord, front: list[TrialRecord],
                history: list[HypervolumePoint]) -> Table:
    hypervolume = f", hypervolume {history[-1].hypervolume:.4g}" if history else ""
    table = Table(title=f"Pareto front of {record.name}: {len(front)} trial(s){hypervolume}")
    table.add_column("trial", justify="right")
    table.add_column("spec id", no_wrap=True)
    pairs = objectives(record)
    for name, direction in pairs:
        table.add_column(f"{name} {ARROWS.get(direction, '')}".strip(), justify="right")
    for trial in front:
        table.add_row(str(trial.number), trial.spec_id or "",
                      *(shown_value(trial, name) for name, _ in pairs))
    return table



def trials_table(record: StudyRecord, trials: list[TrialRecord], frame: pd.DataFrame) -> Table:
    """Each trial with its architecture (layout and widths), its values with their
    provenance, when it started and for how long it ran, and the worker that evaluated it;
    ``frame`` is :func:`trials_frame` of the ``trials``."""
    names = value_names(record, trials)
    table = Table(title=f"Trials of {record.name}: {len(trials)}")
    for column in ("trial", "state", "layout", "widths", *names, "feasible", "started",
                   "duration", "worker", "fail reason"):  # the spec id: --json and --csv
        table.add_column(column, justify="right" if column in ("trial", "duration", *names)
                         else "left")
    rows = {int(row["number"]): row for row in trials_records(frame)}
    for trial in trials:
        row = rows[trial.number]
        feasible = "" if trial.feasible is None else ("yes" if trial.feasible else "no")
        duration = row["duration_s"]
        table.add_row(str(trial.number), trial.state, row["layout"] or "",
                      row["widths"] or "", *(shown_value(trial, n) for n in names), feasible,
                      _date(row["started_at"]),
                      "" if duration is None else f"{duration:.1f} s", trial.worker or "",
                      trial.fail_reason or "")
    return table


def rescore_table(outcome: dict[str, Any]) -> Table:
    """``study rescore``: each trial's rescored values beside the study's own, and whether it
    is on the study's front on the device (``outcome`` as ``RescoreOutcome.to_dict`` has it)."""
    own, device = outcome["study_device"], outcome["device"]
    table = Table(title=f"Study {outcome['study']} on {device}: {outcome['n_trials']} trial(s), "
                        f"{outcome['feasible']} feasible, a front of {outcome['front_size']}")
    table.add_column("trial", justify="right")
    names = list(dict.fromkeys(n for t in outcome["trials"] for n in t["values"]))
    for name in names:
        table.add_column(f"{name} on {own}", justify="right")
        table.add_column(f"{name} on {device}", justify="right")
    table.add_column("on the front")
    for trial in outcome["trials"]:
        cells = []
        for name in names:
            study_value, value = trial["study_values"].get(name), trial["values"].get(name)
            cells.append("" if study_value is None else format_value(name, study_value))
            cells.append("" if value is None else
                         f"{format_value(name, value['value'])} ({value['provenance']})")
        table.add_row(str(trial["number"]), *cells, "yes" if trial["on_front"] else "")
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
