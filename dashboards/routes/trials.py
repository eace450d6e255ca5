"""``/api/studies/{name}/trials``: paginated, sortable, filterable; the filtered table as CSV;
one trial in full."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from nanosd_nas.dashboards import _service as service
from nanosd_nas.dashboards._deps import SettingsDep, StoreDep
from nanosd_nas.dashboards.schemas import TrialDetail, TrialsPage, problems

router = APIRouter(prefix="/api/studies/{name}/trials", tags=["trials"],
                   responses=problems(404, 422, 503))


def trial_filters(
    sort: Annotated[str, Query(max_length=64, description="A column: number, state, spec_id, "
                               "an objective or constraint name, feasible.")] = "number",
    order: Literal["asc", "desc"] = "asc",
    state: Literal["complete", "failed", "running"] | None = None,
    feasible: bool | None = None,
    value_range: Annotated[list[str] | None, Query(
        alias="range", max_length=16,
        description="NAME:MIN:MAX, either bound may be empty (latency_ms::40); repeatable.")
    ] = None,
) -> service.TrialQuery:
    """The filters and the order of the trials table, shared by its JSON pages and its CSV."""
    ranges = tuple(service.ValueRange.parse(text) for text in value_range or [])
    return service.TrialQuery(sort=sort, order=order, state=state, feasible=feasible,
                              ranges=ranges)


FiltersDep = Annotated[service.TrialQuery, Depends(trial_filters)]


@router.get("", response_model=TrialsPage)
def list_trials(
    name: str, store: StoreDep, settings: SettingsDep, filters: FiltersDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> dict[str, Any]:
    """One page of the study's trials after filtering and sorting (on the server): each with
    its architecture's layout and widths, its values with their provenance, when it started
    and finished, its duration and the worker that evaluated it."""
    query = replace(filters, offset=offset, limit=min(limit, settings.page_size_max))
    return service.trials_page(store, name, query)


@router.get(".csv", response_class=Response, responses={
    200: {"content": {"text/csv": {}}, "description": "The filtered table, one trial a row."}})
def trials_csv(name: str, store: StoreDep, filters: FiltersDep) -> Response:
    """Every trial that passes the filters, in their order, as CSV (the columns of the JSON
    table): what the study page's download link fetches."""
    chosen, _ = service.filtered_trials(store, name, filters)
    return Response(chosen.to_csv(index=False), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}-trials.csv"'})


@router.get("/{number}", response_model=TrialDetail)
def get_trial(name: str, number: int, store: StoreDep) -> dict[str, Any]:
    """A trial: objectives with provenance (predicted and measured latency side by side), its
    architecture's summary, and its per-block latency on the study's device."""
    return service.trial_detail(store, name, number)
