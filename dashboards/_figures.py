"""The pages' Plotly figures, built on the server and drawn by the plotly.js the page loads
from this server (``/static/plotly.min.js``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from nanosd_nas.search import history_figure, pareto_mask
from nanosd_nas.search.store import HypervolumePoint, StudyRecord, TrialRecord
from nanosd_nas.search.study_views import objectives

if TYPE_CHECKING:
    from nanosd_nas.search import DeviceFront

_LAYOUT: dict[str, Any] = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50,
                                                                  "b": 50}}
#: Dominated trials drawn with WebGL: thousands of points stay responsive.
_MANY = 400


def figure_json(figure: go.Figure) -> str:
    """The figure as JSON that is safe inside a ``<script>`` element."""
    return figure.to_json().replace("</", "<\\/")


def _hover(trial: TrialRecord, names: Sequence[str], extra: str = "") -> str:
    feasible = "infeasible" if trial.feasible is False else "feasible"
    lines = [f"trial {trial.number} ({feasible})"]
    for name in names:
        found = sorted((v for v in trial.values if v.name == name), key=lambda v: v.provenance)
        lines += [f"{name}: {v.value:.4g} ({v.provenance})" for v in found]
    params = " ".join(f"{k}={v}" for k, v in trial.params.items())
    lines.append(params)
    if extra:
        lines.append(extra)
    return "<br>".join(lines)


def backdrop_trace(backdrop: dict[str, Any], x: str, y: str,
                   directions: dict[str, str]) -> go.Scatter | None:
    """The space's front that ``bench search`` kept (:func:`search.find_backdrop`), as the
    members not dominated in ``x``/``y`` in the study's directions; None if it lacks an axis."""
    names = [o["name"] for o in backdrop.get("objectives", [])]
    if x not in names or y not in names:
        return None
    points = np.array([[row[names.index(x)], row[names.index(y)]]
                       for row in backdrop.get("front", [])], dtype=float)
    if len(points) == 0:
        return None
    points = points[pareto_mask(points, [directions[x], directions[y]])]
    points = points[np.argsort(points[:, 0], kind="stable")]
    bank = (backdrop.get("bank") or {}).get("settings", {})
    return go.Scatter(
        x=points[:, 0].tolist(), y=points[:, 1].tolist(), mode="lines+markers",
        name=(f"what the space allows: {backdrop.get('size', 0):,} members, predicted latency, "
              f"parameters, bank-surrogate fidelity ({bank.get('steps', '?')}-step bank)"),
        line={"dash": "dot", "color": "#95a5a6"}, marker={"size": 4, "color": "#95a5a6"},
        hoverinfo="x+y")


def front_2d(record: StudyRecord, complete: list[TrialRecord], front_ids: set[int], x: str,
             y: str, url: Callable[[TrialRecord], str],
             describe: Callable[[TrialRecord], str] = lambda t: "",
             backdrop: dict[str, Any] | None = None) -> go.Figure:
    """Every complete trial in ``x``/``y``: the front bright, dominated trials dimmed,
    infeasible ones crossed out; constraint bounds as lines; a click opens ``url(trial)``;
    behind them, with a ``backdrop``, the front of the whole space on the cheap objectives."""
    names = [n for n, _ in objectives(record)]

    def trace(trials: list[TrialRecord], label: str, **style: Any) -> go.Scatter:
        kind = go.Scattergl if len(trials) > _MANY else go.Scatter
        return kind(x=[t.value(x) for t in trials], y=[t.value(y) for t in trials],
                    mode="markers", name=label, customdata=[url(t) for t in trials],
                    text=[_hover(t, names, describe(t) if t.id in front_ids else "")
                          for t in trials], hoverinfo="text", **style)

    front = [t for t in complete if t.id in front_ids]
    dominated = [t for t in complete if t.id not in front_ids and t.feasible is not False]
    infeasible = [t for t in complete if t.feasible is False]
    measured = [t for t in front if any(v.provenance == "measured" and v.name in (x, y)
                                        for v in t.values)]
    behind = (backdrop_trace(backdrop, x, y, dict(objectives(record)))
              if backdrop is not None else None)
    figure = go.Figure([
        *([behind] if behind is not None else []),
        trace(dominated, f"dominated ({len(dominated)})", opacity=0.3,
              marker={"size": 6, "color": "#7f8c8d"}),
        trace(infeasible, f"infeasible ({len(infeasible)})", opacity=0.4,
              marker={"size": 6, "color": "#c0392b", "symbol": "x"}),
        trace(front, f"Pareto front ({len(front)})",
              marker={"size": 11, "color": "#2471a3", "line": {"width": 1, "color": "white"}}),
        trace(measured, f"front, latency measured ({len(measured)})",
              marker={"size": 15, "color": "rgba(0,0,0,0)",
                      "line": {"width": 2, "color": "#e67e22"}}),
    ])
    for axis, name in (("x", x), ("y", y)):
        bound = record.config.get("constraints", {}).get(name) or {}
        for side in ("min", "max"):
            if bound.get(side) is None:
                continue
            line: dict[str, Any] = {"type": "line",
                                    "line": {"dash": "dash", "color": "#c0392b"}}
            if axis == "x":
                line.update(x0=bound[side], x1=bound[side], y0=0, y1=1, yref="paper")
            else:
                line.update(y0=bound[side], y1=bound[side], x0=0, x1=1, xref="paper")
            figure.add_shape(line)
            figure.add_annotation(text=f"{name} {side} {bound[side]:g}", showarrow=False,
                                  **({"x": bound[side], "y": 1, "yref": "paper"} if axis == "x"
                                     else {"y": bound[side], "x": 1, "xref": "paper"}))
    figure.update_layout(title=f"{y} vs {x}", xaxis_title=x, yaxis_title=y, **_LAYOUT)
    return figure


def front_3d(record: StudyRecord, complete: list[TrialRecord], front_ids: set[int],
             axes: Sequence[str]) -> go.Figure:
    """The first three objectives in 3-D: the front bright, the rest dimmed."""
    names = [n for n, _ in objectives(record)]
    x, y, z = axes

    def trace(trials: list[TrialRecord], label: str, size: int, opacity: float) -> go.Scatter3d:
        return go.Scatter3d(x=[t.value(x) for t in trials], y=[t.value(y) for t in trials],
                            z=[t.value(z) for t in trials], mode="markers", name=label,
                            opacity=opacity, marker={"size": size},
                            text=[_hover(t, names) for t in trials], hoverinfo="text")

    figure = go.Figure([
        trace([t for t in complete if t.id not in front_ids], "other trials", 3, 0.3),
        trace([t for t in complete if t.id in front_ids], "Pareto front", 6, 1.0),
    ])
    figure.update_layout(title="front in 3-D", scene={"xaxis_title": x, "yaxis_title": y,
                                                      "zaxis_title": z}, **_LAYOUT)
    return figure


def hypervolume_history(points: Sequence[HypervolumePoint]) -> go.Figure:
    figure = history_figure(points)
    figure.update_layout(title="hypervolume of the front", xaxis_title="complete trials",
                         yaxis_title="hypervolume", **_LAYOUT)
    return figure


def block_bars(blocks: list[dict[str, Any]]) -> go.Figure:
    """Per-block latency, one bar a block, coloured by component."""
    figure = go.Figure()
    for component in dict.fromkeys(b["component"] for b in blocks):
        own = [b for b in blocks if b["component"] == component and b["latency_ms"] is not None]
        figure.add_trace(go.Bar(y=[f"{b['component']}/{b['path']}" for b in own],
                                x=[b["latency_ms"] for b in own], orientation="h",
                                name=component, text=[b["kind"] for b in own]))
    figure.update_layout(title="latency per block (ms, device block table)",
                         xaxis_title="ms", height=max(300, 18 * len(blocks) + 120),
                         yaxis={"autorange": "reversed"}, **_LAYOUT)
    return figure


def calibration_scatter(predicted: Sequence[float], measured: Sequence[float],
                        title: str, in_study: dict[str, list[Any]] | None = None) -> go.Figure:
    """Predicted vs measured pipeline latency of the held-out members and, given
    ``in_study`` (:func:`_service.in_study_points`), of the studies' trials whose latency was
    measured too; with the y = x line and the ±10% band."""
    study_points = in_study or {"predicted_ms": [], "measured_ms": [], "labels": []}
    top = max([*predicted, *measured, *study_points["predicted_ms"],
               *study_points["measured_ms"], 1.0]) * 1.05
    figure = go.Figure([
        go.Scatter(x=[0, top], y=[0, top], mode="lines", name="predicted = measured",
                   line={"color": "#2c3e50"}),
        go.Scatter(x=[0, top], y=[0, top * 1.1], mode="lines", name="+10%",
                   line={"dash": "dot", "color": "#95a5a6"}),
        go.Scatter(x=[0, top], y=[0, top * 0.9], mode="lines", name="-10%",
                   line={"dash": "dot", "color": "#95a5a6"}, fill="tonexty",
                   fillcolor="rgba(149,165,166,0.15)"),
        go.Scatter(x=list(measured), y=list(predicted), mode="markers", name="held-out members",
                   marker={"size": 8, "color": "#2471a3"}),
        go.Scatter(x=study_points["measured_ms"], y=study_points["predicted_ms"],
                   mode="markers", name="trials of studies (front measured)",
                   text=study_points["labels"], hoverinfo="text+x+y",
                   marker={"size": 9, "color": "#e67e22", "symbol": "diamond"}),
    ])
    figure.update_layout(title=title, xaxis_title="measured pipeline ms",
                         yaxis_title="predicted pipeline ms", **_LAYOUT)
    return figure


def _empty(title: str, reason: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=reason, showarrow=False, x=0.5, y=0.5, xref="paper",
                          yref="paper")
    figure.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **_LAYOUT)
    return figure


def parallel_coordinates(record: StudyRecord, complete: list[TrialRecord]) -> go.Figure:
    """One line per complete trial through each searched dimension (its choice) and each
    objective (its value as the table shows it), coloured by the first objective."""
    names = [n for n, _ in objectives(record)]
    shown = [t for t in complete if all(t.value(n) is not None for n in names)]
    title = "choices and objectives of the complete trials"
    if not shown or not names:
        return _empty(title, "no complete trial yet")
    params = list(dict.fromkeys(p for t in shown for p in t.params))
    dimensions: list[dict[str, Any]] = []
    for param in params:
        values = [t.params.get(param) for t in shown]
        integers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if len(integers) == len(values):
            low, high = min(integers), max(integers)
            ticks = list(range(low, high + 1)) if high - low <= 16 else None  # not halves
            dimensions.append({"label": param, "values": integers, "tickvals": ticks})
        elif all(isinstance(v, float) for v in values):
            dimensions.append({"label": param, "values": values})
        else:  # a categorical choice: its values as ticks
            labels = sorted({str(v) for v in values})
            dimensions.append({"label": param, "values": [labels.index(str(v)) for v in values],
                               "tickvals": list(range(len(labels))), "ticktext": labels})
    for name in names:
        dimensions.append({"label": name, "values": [t.value(name) for t in shown]})
    figure = go.Figure(go.Parcoords(
        dimensions=dimensions, line={"color": [t.value(names[0]) for t in shown],
                                     "colorscale": "Viridis", "showscale": True,
                                     "colorbar": {"title": {"text": names[0]}}}))
    figure.update_layout(title=title, **{**_LAYOUT, "margin": {"l": 60, "r": 40, "t": 80,
                                                               "b": 30}})
    return figure


def importances(found: dict[str, dict[str, float]]) -> go.Figure:
    """Each objective's parameter importances (:func:`search.study_views.param_importances`),
    one group of horizontal bars per objective."""
    title = "parameter importances per objective (PED-ANOVA)"
    if not any(found.values()):
        return _empty(title, "too few complete trials yet")
    figure = go.Figure([go.Bar(y=list(shares), x=list(shares.values()), orientation="h",
                               name=objective) for objective, shares in found.items()])
    figure.update_layout(title=title, xaxis_title="importance", barmode="group",
                         yaxis={"autorange": "reversed"}, **_LAYOUT)
    return figure


_STATE_COLOURS = {"complete": "#2471a3", "failed": "#c0392b", "running": "#95a5a6"}


def timeline(trials: list[TrialRecord], now: datetime) -> go.Figure:
    """Each trial as a bar from when it started to when it finished (``now`` while it runs),
    one colour per state, as ``optuna.visualization.plot_timeline`` draws a study."""
    if not trials:
        return _empty("trial timeline", "no trial yet")
    figure = go.Figure()
    for state, colour in _STATE_COLOURS.items():
        own = [t for t in trials if t.state == state]
        if not own:
            continue
        figure.add_trace(go.Bar(
            y=[t.number for t in own], base=[_plotly_time(t.started_at) for t in own],
            x=[((t.finished_at or now) - t.started_at).total_seconds() * 1e3 for t in own],
            orientation="h", name=f"{state} ({len(own)})", marker={"color": colour},
            text=[f"trial {t.number} on {t.worker or 'unknown'}" for t in own],
            hoverinfo="text+x", textposition="none"))
    figure.update_layout(title="trial timeline", xaxis={"type": "date", "title": "time (UTC)"},
                         yaxis_title="trial", **_LAYOUT)
    return figure


def _plotly_time(moment: datetime) -> str:
    """``moment`` in UTC as plotly.js reads a date (it has no time zones)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def compare_fronts(fronts: dict[str, list[TrialRecord]], x: str, y: str) -> go.Figure:
    """The stored fronts of several studies on one plot, each sorted along ``x``."""
    figure = go.Figure()
    for study, front in fronts.items():
        points = sorted((float(vx), float(vy), t.number) for t in front
                        if (vx := t.value(x)) is not None and (vy := t.value(y)) is not None)
        figure.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points],
                                    mode="lines+markers", name=study, line={"shape": "hv"},
                                    text=[f"{study} trial {p[2]}" for p in points]))
    figure.update_layout(title=f"fronts: {y} vs {x}", xaxis_title=x, yaxis_title=y, **_LAYOUT)
    return figure


def compare_devices(study: str, fronts: Sequence[DeviceFront], x: str, y: str) -> go.Figure:
    """One study's front on each device (its own first, then each it was rescored for), each
    sorted along ``x``: how the Pareto set moves from one device to another."""
    figure = go.Figure()
    for front in fronts:
        points = sorted((m.values[x].value, m.values[y].value, m.trial.number)
                        for m in front.members if x in m.values and y in m.values)
        label = f"{study} on {front.device}"
        figure.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points],
                                    mode="lines+markers", name=label, line={"shape": "hv"},
                                    text=[f"{study} trial {p[2]} on {front.device}"
                                          for p in points]))
    figure.update_layout(title=f"{study} on each device: {y} vs {x}", xaxis_title=x,
                         yaxis_title=y, **_LAYOUT)
    return figure


def parse_figure(text: str) -> dict[str, Any]:
    """The figure JSON back as a document (tests and the API use it)."""
    document: dict[str, Any] = json.loads(text.replace("<\\/", "</"))
    return document
