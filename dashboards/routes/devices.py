"""``/api/devices``: devices with their latency predictors and held-out accuracy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from nanosd_nas.dashboards import _service as service
from nanosd_nas.dashboards._deps import StoreDep
from nanosd_nas.dashboards.schemas import DeviceSummary, problems

router = APIRouter(prefix="/api/devices", tags=["devices"], responses=problems(503))


@router.get("", response_model=list[DeviceSummary])
def list_devices(store: StoreDep) -> list[dict[str, Any]]:
    """Every device a study ran on, with its predictors."""
    return service.device_summaries(store)


@router.get("/{device}", response_model=DeviceSummary, responses=problems(404, 422))
def get_device(device: str, store: StoreDep) -> dict[str, Any]:
    """One device with its predictors (held-out accuracy and points)."""
    return service.device_summary(store, device)
