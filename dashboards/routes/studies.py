"""``/api/studies``: list, submit (queued for a worker), status, stop, re-queue, delete, front,
the fronts on every device, hypervolume, parameter importances."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from nanosd_nas.dashboards import _service as service
from nanosd_nas.dashboards._deps import StoreDep, WriteAccess
from nanosd_nas.dashboards.schemas import (
    DeviceFronts,
    FrontDocument,
    HypervolumeEntry,
    Importances,
    StudyDetail,
    StudySummary,
    problems,
)
from nanosd_nas.search import StudyConfigError, parse_document
from nanosd_nas.search.store import StudyStateError

router = APIRouter(prefix="/api/studies", tags=["studies"], responses=problems(503))

_EXAMPLE = {"name": "phone-1step", "space": "nanosd", "scale": "mini", "device": "local-cpu",
            "n_trials": 20, "sampler": "tpe",
            "accuracy": {"evaluator": "surgery", "teacher": "demo"}}


@router.get("", response_model=list[StudySummary])
def list_studies(store: StoreDep) -> list[dict[str, Any]]:
    """Every study with its status, trial counts, front size and best hypervolume."""
    return service.study_summaries(store)


async def study_document(request: Request) -> Any:
    """The body as a study document: JSON (``application/json``) or YAML (any text type)."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise StudyConfigError("study: the body is not UTF-8 text") from None
    if not text.strip():
        raise StudyConfigError("study: the body is empty; send the study as JSON or YAML")
    return parse_document(text, "study")  # too deep a nesting is a StudyConfigError too


@router.post("", status_code=201, response_model=StudyDetail, dependencies=[WriteAccess],
             responses=problems(401, 409, 413, 422),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}, "example": _EXAMPLE},
                 "application/yaml": {"schema": {"type": "string"},
                                      "example": yaml.safe_dump(_EXAMPLE)}}}})
async def submit_study(request: Request, store: StoreDep) -> JSONResponse:
    """Validate a study (the same document as ``study create``, JSON or YAML) and queue it;
    a ``nanosd-nas worker`` runs it. 422 names the bad field, 409 a taken name."""
    document = await study_document(request)
    record = service.submit_study(store, document)
    body = service.study_summary(store, record.name)
    return JSONResponse(body, status_code=201,
                        headers={"Location": f"/api/studies/{record.name}"})


@router.get("/{name}", response_model=StudyDetail, responses=problems(404, 422))
def get_study(name: str, store: StoreDep) -> dict[str, Any]:
    """Status, progress (trials complete, failed, running of the budget) and the document."""
    return service.study_summary(store, name)


@router.post("/{name}/stop", response_model=StudyDetail, dependencies=[WriteAccess],
             responses=problems(401, 404, 422))
def stop_study(name: str, store: StoreDep) -> dict[str, Any]:
    """Stop a study: a queued one at once, a running one after its trials in flight land."""
    store.request_stop(name)
    return service.study_summary(store, name)


@router.post("/{name}/requeue", response_model=StudyDetail, dependencies=[WriteAccess],
             responses=problems(401, 404, 409, 422))
def requeue_study(name: str, store: StoreDep) -> dict[str, Any]:
    """Queue a failed or stopped study again: the next worker continues it where it ended,
    its completed trials kept. 409 for a study in any other status."""
    try:
        store.requeue_study(name)
    except StudyStateError as error:
        raise HTTPException(409, str(error)) from error
    return service.study_summary(store, name)


@router.delete("/{name}", status_code=204, response_class=Response,
               dependencies=[WriteAccess], responses=problems(401, 404, 409, 422))
def delete_study(name: str, store: StoreDep) -> Response:
    """Delete a study with its trials, front, history and Optuna study. 409 while it runs:
    stop it first, and delete it once it has stopped."""
    try:
        store.delete_study(name)
    except StudyStateError as error:
        raise HTTPException(409, str(error)) from error
    return Response(status_code=204)


@router.get("/{name}/importances", response_model=Importances, responses=problems(404, 422))
def get_importances(name: str, store: StoreDep) -> dict[str, Any]:
    """Each objective's importance of each searched dimension over the complete trials
    (Optuna's PED-ANOVA evaluator); an objective with fewer than two trials has none."""
    return service.study_importances(store, name)


@router.get("/{name}/front", response_model=FrontDocument, responses=problems(404, 422))
def get_front(name: str, store: StoreDep) -> dict[str, Any]:
    """The stored Pareto front: each member's objectives with provenance."""
    return service.study_front(store, name)


@router.get("/{name}/fronts", response_model=DeviceFronts, responses=problems(404, 422))
def get_fronts(name: str, store: StoreDep) -> dict[str, Any]:
    """The study's front on each device: its own (the stored front) first, then each device
    it was rescored for (``nanosd-nas study rescore``), by name, with every member's objective
    values there."""
    return service.study_fronts(store, name)


@router.get("/{name}/hypervolume", response_model=list[HypervolumeEntry],
            responses=problems(404, 422))
def get_hypervolume(name: str, store: StoreDep) -> list[dict[str, Any]]:
    """The hypervolume of the front after each landed trial (``phase`` ``search``), then after
    each round of measuring the front's latencies on the device (``verify``)."""
    return [{"n_complete": p.n_complete, "hypervolume": p.hypervolume,
             "recorded_at": p.recorded_at.isoformat(timespec="seconds"), "phase": p.phase}
            for p in store.hypervolume_history(name)]


