"""``/api/health``: whether the service can do its work, for a container's healthcheck or a
load balancer. It needs no token and reads nothing but ``SELECT 1``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from nanosd_nas.dashboards._deps import StoreDep
from nanosd_nas.search.store import StoreError

router = APIRouter(prefix="/api/health", tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["reachable", "unreachable"]
    detail: str | None = None


@router.get("", response_model=Health, responses={503: {
    "model": Health, "description": "The database does not answer (the reason in detail)."}})
def health(store: StoreDep) -> JSONResponse:
    """200 when the database answers a trivial query, else 503 with the reason."""
    try:
        store.ping()
    except StoreError as error:
        body = Health(status="unavailable", database="unreachable", detail=str(error))
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Health(status="ok", database="reachable").model_dump(
        exclude_none=True))
