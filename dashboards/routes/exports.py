"""``/api/studies/{name}/trials/{number}/export/{format}``: the chosen architecture as a file.

``spec`` is the spec JSON itself; the formats with several files (``diffusers``, ``onnx``,
``safetensors``) come as one zip, and need the server's token when it has one (they build and
export a model: minutes of CPU and gigabytes of memory at full scale).

Exports are kept in the export folder, one folder per trial and choice of format and options,
so a second download of the same export is a file read. They are bounded: one trial is exported
by one request at a time (a second request for it waits, then reads what the first wrote), and
at most :data:`EXPORT_SLOTS` heavy exports run at once on the server; a request beyond them is
answered 429 with ``Retry-After``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nanosd_nas.dashboards import _service as service
from nanosd_nas.dashboards._deps import SettingsDep, StoreDep, require_token
from nanosd_nas.dashboards._settings import Settings
from nanosd_nas.dashboards.schemas import Problem, problems

#: How many heavy exports (diffusers, onnx, safetensors) may run at once on one server.
EXPORT_SLOTS = 2
#: What a client is told to wait before asking again, when every slot is taken (seconds).
RETRY_AFTER_S = 30
router = APIRouter(prefix="/api/studies/{name}/trials/{number}/export", tags=["exports"],
                   responses={**problems(401, 404, 422, 503), 429: {
                       "model": Problem, "description": f"{EXPORT_SLOTS} exports are running "
                       "already; ask again after Retry-After seconds."}})
_ZIP = "application/zip"
#: The query parameters an export takes; any other is refused (a misspelt option would
#: otherwise be ignored silently and export something else).
_OPTIONS = frozenset({"weights", "layout", "precision", "exporter"})

Format = Literal["spec", "diffusers", "onnx", "safetensors"]
_bearer = HTTPBearer(auto_error=False, description="The server's API token, when it has one.")


class _Bounds:
    """One lock per exported trial, and a count of the heavy exports running."""

    def __init__(self, slots: int) -> None:
        self._guard = threading.Lock()
        self._trials: dict[tuple[str, int], threading.Lock] = {}
        self._slots = threading.BoundedSemaphore(slots)

    @contextmanager
    def trial(self, name: str, number: int) -> Iterator[None]:
        """Held while one request exports or zips trial ``number`` of ``name``."""
        with self._guard:
            lock = self._trials.setdefault((name, number), threading.Lock())
        with lock:
            yield

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of the server's export slots, or a 429 when all are taken."""
        if not self._slots.acquire(blocking=False):
            raise HTTPException(429, f"{EXPORT_SLOTS} exports are running; ask again later",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
        try:
            yield
        finally:
            self._slots.release()


_BOUNDS = _Bounds(EXPORT_SLOTS)


def export_root(settings: Settings) -> Path:
    from nanosd_nas.latency_models import project_home

    return settings.export_dir or project_home() / "exports"


def _zip_atomic(folder: Path, target: Path) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, suffix=".zip.tmp")
    os.close(descriptor)
    try:
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
        Path(temporary).replace(target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export_access(
    fmt: Format, request: Request, settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """422 for an unknown query parameter; 401 for a heavy format without the token (when the
    server has one). The spec JSON is a read like any other."""
    unknown = sorted(set(request.query_params) - _OPTIONS)
    if unknown:
        raise HTTPException(422, f"unknown export option(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(sorted(_OPTIONS))}")
    if fmt != "spec":
        require_token(settings, credentials)


@router.get("/{fmt}", response_class=FileResponse, dependencies=[Depends(export_access)],
            responses={200: {"content": {"application/json": {}, _ZIP: {}},
                             "description": "spec.json, or a zip of the exported folder"}})
def export_trial(
    name: str, number: int, fmt: Format, store: StoreDep, settings: SettingsDep,
    weights: Literal["distilled", "teacher"] | None = None,
    layout: Literal["nanosd", "optimum"] | None = None,
    precision: Literal["fp32", "fp16"] | None = None,
    exporter: Literal["dynamo", "torchscript"] | None = None,
) -> FileResponse:
    """Export the trial (weights: distilled from the block bank, or teacher-initialised; by
    default what the study's evaluator scored). ``onnx`` takes a layout (``nanosd``, or
    ``optimum``: diffusers' and Optimum's), a precision and an exporter (``dynamo``, the default,
    which falls back per component, or ``torchscript``); other formats take none (422)."""
    from nanosd_nas import spaces
    from nanosd_nas.search import ExportRequestError
    from nanosd_nas.search import export_trial as export

    choices = {"layout": layout, "precision": precision, "exporter": exporter}
    given = {k: v for k, v in choices.items() if v is not None}
    if given and fmt != "onnx":
        raise ExportRequestError(f"{', '.join(given)} apply to the onnx format, not {fmt!r}")
    onnx = spaces.OnnxOptions(**given) if fmt == "onnx" else None
    service.get_trial(store, name, number)  # 404 before any work; the names below are safe
    variant = "-".join([fmt] + ([weights] if weights else []) + (
        [onnx.layout, onnx.precision, onnx.exporter] if onnx else []))
    folder = export_root(settings) / name / str(number) / variant
    stem = f"{name}-trial{number}-{variant}"
    with _BOUNDS.trial(name, number):
        if not folder.is_dir():  # exported whole into a side folder, then renamed
            partial = folder.with_name(folder.name + ".partial")
            with _BOUNDS.slot() if fmt != "spec" else nullcontext():
                shutil.rmtree(partial, ignore_errors=True)
                export(store, name, number, fmt, partial, weights=weights, onnx=onnx)
                partial.replace(folder)
        if fmt == "spec":
            return FileResponse(folder / "spec.json", media_type="application/json",
                                filename=f"{stem}.json")
        archive = folder.with_name(folder.name + ".zip")
        if not archive.exists():
            _zip_atomic(folder, archive)
    return FileResponse(archive, media_type=_ZIP, filename=f"{stem}.zip")
