"""``/api/studies/{name}/trials``: paginated, sortable, filterable; one trial in full."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from nanosd_nas.dashboards import _service as service
from nanosd_nas.dashboards._deps import SettingsDep, StoreDep
from nanosd_nas.dashboards.schemas import TrialDetail, TrialsPage, problems

router = APIRouter(prefix="/api/studies/{name}/trials", tags=["trials"],
                   responses=problems(404, 422, 503))


@router.get("", response_model=TrialsPage)
def list_trials(
    name: str, store: StoreDep, settings: SettingsDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    sort: Annotated[str, Query(max_length=64, description="A column: number, state, spec_id, "
                               "an objective or constraint name, feasible.")] = "number",
    order: Literal["asc", "desc"] = "asc",
    state: Literal["complete", "failed", "running"] | None = None,
    feasible: bool | None = None,
    value_range: Annotated[list[str] | None, Query(
        alias="range", max_length=16,
        description="NAME:MIN:MAX, either bound may be empty (latency_ms::40); repeatable.")
    ] = None,
) -> dict[str, Any]:
    """One page of the study's trials after filtering and sorting (on the server)."""
    ranges = tuple(service.ValueRange.parse(text) for text in value_range or [])
    query = service.TrialQuery(offset=offset, limit=min(limit, settings.page_size_max),
                               sort=sort, order=order, state=state, feasible=feasible,
                               ranges=ranges)
    return service.trials_page(store, name, query)


@router.get("/{number}", response_model=TrialDetail)
def get_trial(name: str, number: int, store: StoreDep) -> dict[str, Any]:
    """A trial: objectives with provenance (predicted and measured latency side by side), its
    architecture's summary, and its per-block latency on the study's device."""
    return service.trial_detail(store, name, number)
