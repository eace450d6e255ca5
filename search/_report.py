"""A standalone HTML report of a study's front (Plotly, with plotly.js inlined: it opens from a
file, without a server or a network).

Its hypervolume history is the study's, under the study's reference point (the service's one
rule, :func:`search._front.study_reference`, which ``bench search`` uses too); the report says
which point that is, so that its figures can be set beside the benchmark's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from nanosd_nas.search.run import stored_reference
from nanosd_nas.search.store import HypervolumePoint, Store, TrialRecord


def _axis(trial: TrialRecord, name: str) -> float | None:
    return trial.value(name)


def front_figure(store: Store, study: str, x: str, y: str) -> go.Figure:
    """Every complete trial in ``x``/``y``; the front highlighted, dominated trials dimmed."""
    complete = store.list_trials(study, state="complete")
    front_ids = {t.id for t in store.front(study)}

    def trace(trials: list[TrialRecord], label: str, opacity: float, size: int) -> go.Scatter:
        hover = [
            f"trial {t.number}<br>spec {t.spec_id}<br>" + "<br>".join(
                f"{v.name}: {v.value:.4g} ({v.provenance})" for v in t.values)
            for t in trials
        ]
        return go.Scatter(x=[_axis(t, x) for t in trials], y=[_axis(t, y) for t in trials],
                          mode="markers", name=label, opacity=opacity, text=hover,
                          hoverinfo="text", marker={"size": size})

    figure = go.Figure([
        trace([t for t in complete if t.id not in front_ids], "dominated or infeasible", 0.3, 7),
        trace([t for t in complete if t.id in front_ids], "Pareto front", 1.0, 11),
    ])
    figure.update_layout(title=f"study {study}: {y} vs {x}", xaxis_title=x, yaxis_title=y,
                         template="plotly_white")
    return figure


def history_figure(history: Sequence[HypervolumePoint]) -> go.Figure:
    """The hypervolume history: one series as trials land (latency predicted where the study
    predicts it), and one for the rounds that measured the front's latencies on the device,
    marked, since measured latencies can move the front (and its hypervolume) at once."""
    search = [p for p in history if p.phase == "search"]
    verify = [p for p in history if p.phase == "verify"]
    figure = go.Figure(go.Scatter(x=[p.n_complete for p in search],
                                  y=[p.hypervolume for p in search], mode="lines+markers",
                                  name="as trials landed"))
    if verify:
        joined = search[-1:] + verify
        figure.add_trace(go.Scatter(
            x=[p.n_complete for p in joined], y=[p.hypervolume for p in joined],
            mode="lines+markers", name="front measured on the device",
            line={"dash": "dot"}, marker={"symbol": "diamond", "size": 10}))
        figure.add_annotation(x=verify[-1].n_complete, y=verify[-1].hypervolume,
                              text="front's latency measured, not predicted", showarrow=True,
                              arrowhead=2, ax=-80, ay=-30)
    return figure


def hypervolume_figure(store: Store, study: str) -> go.Figure:
    """The front's hypervolume after each complete trial, titled with its reference point."""
    figure = history_figure(store.hypervolume_history(study))
    reference = stored_reference(store, study)
    under = "" if reference is None else " (reference point " + ", ".join(
        f"{name} {value:.4g}" for name, value in reference.items()) + ")"
    figure.update_layout(title=f"hypervolume of the front{under}",
                         xaxis_title="complete trials", yaxis_title="hypervolume",
                         template="plotly_white")
    return figure


def write_report(store: Store, study: str, path: Path, *, x: str, y: str) -> Path:
    """Write the report to ``path`` whole (a temporary file, then a rename)."""
    volume = hypervolume_figure(store, study)
    body = front_figure(store, study, x, y).to_html(full_html=False, include_plotlyjs=True)
    body += volume.to_html(full_html=False, include_plotlyjs=False)
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>nanosd-nas: {study}"
            f"</title></head><body>{body}</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(html, encoding="utf-8")
    temporary.replace(path)
    return path
