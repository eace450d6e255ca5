"""The API's response schemas (pydantic), apart from the store's records: what clients and the
OpenAPI document see."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class TrialCounts(BaseModel):
    complete: int
    failed: int
    running: int


class StudySummary(BaseModel):
    name: str
    status: str
    status_reason: str | None
    device: str | None
    space: str | None
    scale: str | None
    sampler: str | None
    encoding: str | None
    n_trials: int | None
    trials: TrialCounts
    front_size: int
    best_hypervolume: float | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None


class StudyDetail(StudySummary):
    config: dict[str, Any]


class StoredValue(BaseModel):
    name: str
    value: float
    provenance: str
    predictor_id: int | None


class Objective(BaseModel):
    name: str
    direction: str


class FrontMember(BaseModel):
    number: int
    spec_id: str | None
    feasible: bool | None
    objectives: dict[str, StoredValue | None]
    values: list[StoredValue]


class FrontDocument(BaseModel):
    study: str
    objectives: list[Objective]
    hypervolume: float | None
    front: list[FrontMember]


class DeviceFrontMember(BaseModel):
    number: int
    spec_id: str | None
    objectives: dict[str, StoredValue | None]


class DeviceFront(BaseModel):
    """A study's front on one device: ``own`` for the study's device (its stored front), else
    a device it was rescored for (``study rescore``), the same front rule over the study's
    objectives with that device's values; ``scored`` trials have values there, ``feasible`` of
    them meet the study's constraints there."""

    device: str
    own: bool
    scored: int
    feasible: int
    front: list[DeviceFrontMember]


class DeviceFronts(BaseModel):
    study: str
    objectives: list[Objective]
    fronts: list[DeviceFront]


class HypervolumeEntry(BaseModel):
    n_complete: int
    hypervolume: float
    recorded_at: str
    phase: Literal["search", "verify"]


class TrialsPage(BaseModel):
    study: str
    total: int
    offset: int
    limit: int
    columns: list[str]
    trials: list[dict[str, Any]]


class Importances(BaseModel):
    """Each objective's importance of each searched dimension (shares that sum to 1)."""

    study: str
    evaluator: str
    importances: dict[str, dict[str, float]]


class BlockLatency(BaseModel):
    component: str
    kind: str
    path: str
    latency_ms: float | None
    params: int
    macs: int


class BlockBreakdown(BaseModel):
    device: str
    statistic: str
    blocks: list[BlockLatency]


class TrialDetail(BaseModel):
    study: str
    number: int
    state: str
    spec_id: str | None
    params: dict[str, Any]
    feasible: bool | None
    fail_reason: str | None
    constraints: dict[str, float] | None
    on_front: bool
    objectives: dict[str, StoredValue | None]
    values: list[StoredValue]
    architecture: dict[str, Any] | None
    blocks: BlockBreakdown | None
    #: What the accuracy evaluator reported beside the values: ``fidelity_ci95`` ([lo, hi]
    #: dB), ``fidelity_by_t`` (dB by timestep bucket, ``null`` for an empty bucket),
    #: ``unet_fidelity_db_ci95``, ``vae_psnr_db_ci95``, ``untrained_parameters``,
    #: ``stage_errors``, ``teacher``, ``mode``; ``null`` for a trial without them.
    details: dict[str, Any] | None = None


class AccuracyFigures(BaseModel):
    """Held-out accuracy of one component (``unet``, ``vae_encoder``, ``vae_decoder``) or of the
    ``pipeline``: shares within ±10% and ±5%, Spearman (null when undefined), RMSPE, members."""

    name: str
    within_10pct: float | None
    within_5pct: float | None
    spearman: float | None
    rmspe: float | None
    n: int | None


class HeldOutHeadline(BaseModel):
    """The held-out accuracy to quote first: of the components whose latency varies across the
    space (some dimension changes their blocks), with the pipeline's beside it. The pipeline
    also holds the ``fixed`` components' latency, the same for every member, which flatters
    its figure (``nanosd``'s VAE)."""

    varying: list[str]
    components: list[AccuracyFigures]
    pipeline: AccuracyFigures
    fixed: list[str]


class PredictorSummary(BaseModel):
    id: int
    space: str
    scale: str
    version: str
    statistic: str | None
    #: ``null`` for a predictor without held-out members.
    headline: HeldOutHeadline | None
    held_out: dict[str, Any]


class DeviceSummary(BaseModel):
    name: str
    kind: str
    url: str | None
    predictors: list[PredictorSummary]


class ValidationIssue(BaseModel):
    """One problem FastAPI found in a request's parameters: where, what, which rule."""

    model_config = ConfigDict(extra="allow")  # pydantic adds the input and the rule's context

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """Every 4xx and 503 answer of the API: ``detail`` says what went wrong in one line, or is
    the list of problems FastAPI found in the request's parameters (a 422 before the handler)."""

    detail: str | list[ValidationIssue]


_PROBLEMS = {
    401: "The server has an API token and the request did not bring it.",
    404: "No such study, trial or device.",
    409: "A study of that name exists, or the study's status does not allow the request (a "
         "running study deleted, a completed one queued again); the detail says which.",
    413: "The request body is larger than the server accepts.",
    422: "A parameter or the study document is invalid; the detail names it.",
    503: "The database cannot be reached, or its schema needs 'nanosd-nas db upgrade'.",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, each answered with a
    :class:`Problem` (so that the document says what the error handlers send)."""
    return {code: {"model": Problem, "description": _PROBLEMS[code]} for code in codes}
