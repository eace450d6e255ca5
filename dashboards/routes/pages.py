"""The HTML pages: studies (with the submit form), a study, a candidate, devices, compare.

Server-rendered (Jinja2) with Plotly figures built here; plotly.js comes from the installed
plotly package through ``/static/plotly.min.js``, never from a CDN. While a study runs its page
polls ``/api/studies/NAME`` and, when the study changed, fetches itself again and swaps its
table, summary and figures in place (no reload).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from nanosd_nas.dashboards import _figures as figures
from nanosd_nas.dashboards import _service as service
from nanosd_nas.dashboards._deps import SettingsDep, StoreDep, token_matches
from nanosd_nas.dashboards.routes.exports import Format, export_trial
from nanosd_nas.search import StudyConfigError, device_fronts, find_backdrop, parse_document
from nanosd_nas.search.store import StudyExists, StudyStateError
from nanosd_nas.search.study_views import (
    GRID_FILE,
    fidelity_by_t,
    format_value,
    interval_text,
    objectives,
    param_importances,
    samples_folder,
    shown_value,
    with_interval,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
templates.env.filters["value"] = format_value
PAGE_SIZE = 50

_FORM_EXAMPLE = """name: my-study
space: nanosd
scale: mini
device: local-cpu
n_trials: 20
sampler: tpe
accuracy: {evaluator: surgery, teacher: demo}
"""


def render(request: Request, template: str, context: dict[str, Any], *,
           status_code: int = 200) -> Response:
    settings = request.app.state.settings
    return templates.TemplateResponse(request, template, {
        **context, "needs_token": settings.api_token is not None}, status_code=status_code)


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return FileResponse(path, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


# -- studies ---------------------------------------------------------------------------------
@router.get("/")
def studies_page(request: Request, store: StoreDep) -> Response:
    return render(request, "studies.html", {"studies": service.study_summaries(store),
                                            "document": _FORM_EXAMPLE, "error": None})


@router.post("/studies")
def submit_form(request: Request, store: StoreDep, settings: SettingsDep,
                document: Annotated[str, Form(max_length=65536)],
                token: Annotated[str | None, Form()] = None) -> Response:
    error = None
    if not token_matches(settings, token):
        error = "this server needs its API token to submit a study"
    else:
        try:
            record = service.submit_study(store, parse_document(document, "study"))
            return RedirectResponse(f"/studies/{record.name}", status_code=303)
        except (StudyConfigError, StudyExists) as problem:
            error = str(problem)
    return render(request, "studies.html", {"studies": service.study_summaries(store),
                                            "document": document, "error": error},
                  status_code=401 if error.startswith("this server") else 422)


#: What the study page says for each ``?error=`` its forms redirect with.
PAGE_ERRORS = {
    "token": "this server needs its API token for that",
    "delete": "a running study cannot be deleted: stop it, and delete it once it has stopped",
    "requeue": "only a failed or stopped study can be queued again",
}


@router.post("/studies/{name}/stop")
def stop_form(name: str, store: StoreDep, settings: SettingsDep,
              token: Annotated[str | None, Form()] = None) -> Response:
    if not token_matches(settings, token):
        return RedirectResponse(f"/studies/{name}?error=token", status_code=303)
    store.request_stop(name)
    return RedirectResponse(f"/studies/{name}", status_code=303)


@router.post("/studies/{name}/requeue")
def requeue_form(name: str, store: StoreDep, settings: SettingsDep,
                 token: Annotated[str | None, Form()] = None) -> Response:
    if not token_matches(settings, token):
        return RedirectResponse(f"/studies/{name}?error=token", status_code=303)
    try:
        store.requeue_study(name)
    except StudyStateError:
        return RedirectResponse(f"/studies/{name}?error=requeue", status_code=303)
    return RedirectResponse(f"/studies/{name}", status_code=303)


@router.post("/studies/{name}/delete")
def delete_form(name: str, store: StoreDep, settings: SettingsDep,
                token: Annotated[str | None, Form()] = None) -> Response:
    if not token_matches(settings, token):
        return RedirectResponse(f"/studies/{name}?error=token", status_code=303)
    try:
        store.delete_study(name)
    except StudyStateError:
        return RedirectResponse(f"/studies/{name}?error=delete", status_code=303)
    return RedirectResponse("/", status_code=303)


@router.post("/studies/{name}/trials/{number}/export")
def export_form(name: str, number: int, store: StoreDep, settings: SettingsDep,
                fmt: Annotated[str | None, Form()] = None,
                token: Annotated[str | None, Form()] = None) -> Response:
    """The candidate page's export buttons on a server with a token: a link cannot carry the
    bearer header, so the page posts the token with the format and gets the same file. The
    token is checked first: without it a request learns nothing, not even a bad format."""
    if not token_matches(settings, token):
        return RedirectResponse(f"/studies/{name}/trials/{number}?error=token", status_code=303)
    if fmt not in get_args(Format):
        raise HTTPException(422, f"unknown export format {fmt!r}; known: "
                                 f"{', '.join(get_args(Format))}")
    return export_trial(name, number, cast(Format, fmt), store, settings)


# -- one study -------------------------------------------------------------------------------
def _axes(names: list[str], x: str | None, y: str | None) -> tuple[str, str]:
    if len(names) < 2:
        raise StudyConfigError("this study has fewer than two objectives to plot")
    x = x if x in names else names[1] if len(names) > 1 else names[0]
    y = y if y in names and y != x else next(n for n in names if n != x)
    return x, y


@router.get("/studies/{name}")
def study_page(
    request: Request, name: str, store: StoreDep,
    x: str | None = None, y: str | None = None,
    page: Annotated[int, Query(ge=1, le=10**6)] = 1,
    sort: Annotated[str, Query(max_length=64)] = "number",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    state: Annotated[str | None, Query(pattern="^(complete|failed|running|)$")] = None,
    feasible: Annotated[str | None, Query(pattern="^(yes|no|)$")] = None,
    range_name: Annotated[str | None, Query(max_length=64)] = None,
    range_min: str | None = None, range_max: str | None = None,
) -> Response:
    record = store.get_study(name)
    names = [n for n, _ in objectives(record)]
    every = store.list_trials(name)
    complete = [t for t in every if t.state == "complete"]
    front = store.front(name)
    front_ids = {t.id for t in front}
    front_2d = None
    if len(names) >= 2:
        x, y = _axes(names, x, y)
        layouts = _front_layouts(store, front)
        config = record.config
        backdrop = find_backdrop(str(config.get("space")), str(config.get("scale")),
                                 str(record.device or config.get("device")),
                                 steps=int((config.get("pipeline") or {}).get("steps", 1)))
        front_2d = figures.front_2d(record, complete, front_ids, x, y,
                                    url=lambda t: f"/studies/{name}/trials/{t.number}",
                                    describe=lambda t: layouts.get(t.id, ""),
                                    backdrop=backdrop)
    else:  # one objective: nothing to plot it against; the table and history still show
        x = y = names[0]
    front_3d = (figures.front_3d(record, complete, front_ids, names[:3])
                if len(names) >= 3 else None)
    history = figures.hypervolume_history(store.hypervolume_history(name))
    ranges: tuple[service.ValueRange, ...] = ()
    if range_name:
        ranges = (service.ValueRange.parse(f"{range_name}:{range_min or ''}:"
                                           f"{range_max or ''}"),)
    query = service.TrialQuery(offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE, sort=sort,
                               order=order, state=state or None,
                               feasible=None if not feasible else feasible == "yes",
                               ranges=ranges)
    trials = service.trials_page(store, name, query)
    shown = {t.number: {n: shown_value(t, n) for n in names} for t in complete}
    intervals = {t.number: {n: interval_text(t.details, n) for n in names} for t in complete}
    summary = service.study_summary(store, name)
    views = {
        "parcoords": figures.parallel_coordinates(record, complete),
        "importances": figures.importances(param_importances(record, complete)),
        "timeline": figures.timeline(every, datetime.now(UTC)),
    }
    return render(request, "study.html", {
        "study": summary, "names": names, "x": x, "y": y,
        "summary_json": json.dumps(summary).replace("</", "<\\/"),
        "front_2d": figures.figure_json(front_2d) if front_2d else None,
        "front_3d": figures.figure_json(front_3d) if front_3d else None,
        "history": figures.figure_json(history), "trials": trials, "shown": shown,
        "views": {key: figures.figure_json(figure) for key, figure in views.items()},
        "intervals": intervals,
        "page": page, "pages": max(1, -(-trials["total"] // PAGE_SIZE)),
        "filters": {"sort": sort, "order": order, "state": state or "",
                    "feasible": feasible or "", "range_name": range_name or "",
                    "range_min": range_min or "", "range_max": range_max or ""},
        "csv": f"/api/studies/{name}/trials.csv?" + _csv_query(query),
        "error": PAGE_ERRORS.get(request.query_params.get("error") or ""),
    })


def _csv_query(query: service.TrialQuery) -> str:
    """The API's parameters for the page's filters and order (its CSV link)."""
    params: list[tuple[str, str]] = [("sort", query.sort), ("order", query.order)]
    if query.state:
        params.append(("state", query.state))
    if query.feasible is not None:
        params.append(("feasible", str(query.feasible).lower()))
    for bound in query.ranges:
        params.append(("range", f"{bound.name}:{_bound(bound.low)}:{_bound(bound.high)}"))
    return urlencode(params)


def _bound(value: float | None) -> str:
    return "" if value is None else repr(value)


def _front_layouts(store: Any, front: list[Any]) -> dict[int, str]:
    """Each front member's stage layout (``E1 RT 64ch ...``) for its hover text."""
    from nanosd_nas import spaces

    out = {}
    for trial in front:
        if trial.spec_id is None:
            continue
        summary = spaces.spec_summary(store.get_architecture(trial.spec_id))
        stages = " ".join(f"{s['stage']}:{s['layers']}/{s['channels']}"
                          for s in summary["stages"])
        out[trial.id] = f"{stages}<br>{summary['total_params'] / 1e6:.1f}M params"
    return out


# -- a candidate -----------------------------------------------------------------------------
@router.get("/studies/{name}/trials/{number}")
def candidate_page(request: Request, name: str, number: int, store: StoreDep) -> Response:
    detail = service.trial_detail(store, name, number)
    blocks = detail["blocks"]
    bars = figures.figure_json(figures.block_bars(blocks["blocks"])) if blocks else None
    latency = [v for v in detail["values"] if v["name"] == "latency_ms"]
    return render(request, "candidate.html", {
        "trial": detail, "bars": bars, "latency": latency, "accuracy": _accuracy(detail),
        "grid": _grid(detail["spec_id"]) is not None,
        "formats": ("spec", "onnx", "safetensors", "diffusers"),
        "error": PAGE_ERRORS.get(request.query_params.get("error") or "")})


def _grid(spec_id: str | None) -> Path | None:
    """The candidate's sample grid (``accuracy sample`` writes it), if there is one."""
    path = None if spec_id is None else samples_folder(spec_id) / GRID_FILE
    return path if path is not None and path.is_file() else None


@router.get("/studies/{name}/trials/{number}/grid.png")
def candidate_grid(name: str, number: int, store: StoreDep) -> FileResponse:
    path = _grid(service.get_trial(store, name, number).spec_id)
    if path is None:
        raise HTTPException(404, "no sample grid for this candidate (nanosd-nas accuracy "
                                 "sample SPEC writes one)")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})


def _accuracy(detail: dict[str, Any]) -> dict[str, Any] | None:
    """What the candidate page shows of the evaluator's details: the fidelity with its 95%
    interval, the fidelity by timestep bucket, the untrained parameters, each value's
    interval, the per-stage errors; None for a trial without details."""
    details = detail["details"]
    if not details:
        return None
    fidelity = next((v["value"] for v in detail["values"] if v["name"] == "fidelity"), None)
    untrained = details.get("untrained_parameters")
    errors = details.get("stage_errors")
    return {
        "fidelity": None if fidelity is None else with_interval(fidelity, details, "fidelity"),
        "by_t": [(bucket, "—" if db is None else f"{db:.1f} dB")
                 for bucket, db in fidelity_by_t(details)],
        "untrained": (untrained if isinstance(untrained, int) and not isinstance(untrained, bool)
                      else None),
        "intervals": {v["name"]: interval_text(details, v["name"]) for v in detail["values"]},
        "teacher": details.get("teacher"), "mode": details.get("mode"),
        "stage_errors": sorted(((str(k), v) for k, v in errors.items()
                                if isinstance(v, int | float)), key=lambda e: _stage_order(e[0]))
                        if isinstance(errors, dict) else [],
    }


def _stage_order(stage: str) -> tuple[int, int, str]:
    """Stages in the order a U-Net runs them (E1, E2, ..., M, ..., D2, D1); PostgreSQL keeps a
    JSON object's keys in an order of its own."""
    number = int(stage[1:]) if stage[1:].isdigit() else 0
    groups = {"E": (0, number), "M": (1, 0), "D": (2, -number)}
    group, rank = groups.get(stage[:1], (3, 0))
    return group, rank, stage


# -- devices and compare ---------------------------------------------------------------------
@router.get("/devices")
def devices_page(request: Request, store: StoreDep) -> Response:
    devices = service.device_summaries(store)
    plots = {}
    for device in devices:
        in_study = service.in_study_points(store, device["name"])
        for predictor in device["predictors"]:
            points = predictor["held_out"].get("pipeline", {}).get("points") or {}
            trials = in_study.get(predictor["id"])
            if points or trials:
                plots[predictor["id"]] = figures.figure_json(figures.calibration_scatter(
                    points.get("predicted_ms", []), points.get("measured_ms", []),
                    f"{device['name']}: {predictor['space']} at {predictor['scale']}",
                    in_study=trials))
    return render(request, "devices.html", {"devices": devices, "plots": plots})


@router.get("/compare")
def compare_page(
    request: Request, store: StoreDep,
    study: Annotated[list[str] | None, Query(max_length=20)] = None,
    x: str = "latency_ms", y: str = "fidelity",
) -> Response:
    chosen = [s for s in dict.fromkeys(study or [])]
    fronts = {name: store.front(name) for name in chosen}  # 404 for an unknown study
    plot = figures.figure_json(figures.compare_fronts(fronts, x, y)) if fronts else None
    # Each chosen study rescored for other devices: its front on every device, beside.
    across = {name: on_devices for name in chosen
              if len(on_devices := device_fronts(store, name)) > 1}
    devices = [{"study": name, "devices": [f.device for f in on_devices],
                "plot": figures.figure_json(figures.compare_devices(name, on_devices, x, y))}
               for name, on_devices in across.items()]
    return render(request, "compare.html", {
        "all": [s.name for s in store.list_studies()], "chosen": chosen, "x": x, "y": y,
        "plot": plot, "devices": devices})
