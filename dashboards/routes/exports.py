"""``/api/studies/{name}/trials/{number}/export/{format}``: the chosen architecture as a file.

``spec`` is the spec JSON itself; the formats with several files (``diffusers``, ``onnx``,
``safetensors``) come as one zip. Exports are kept in the export folder, so a second download
of the same trial is a file read; one export runs at a time (they are heavy).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import FileResponse

from nanosd_nas.dashboards import _service as service
from nanosd_nas.dashboards._deps import SettingsDep, StoreDep
from nanosd_nas.dashboards._settings import Settings
from nanosd_nas.dashboards.schemas import problems

router = APIRouter(prefix="/api/studies/{name}/trials/{number}/export", tags=["exports"],
                   responses=problems(404, 422, 503))
_EXPORTING = threading.Lock()
_ZIP = "application/zip"


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


@router.get("/{fmt}", response_class=FileResponse, responses={
    200: {"content": {"application/json": {}, _ZIP: {}},
          "description": "spec.json, or a zip of the exported folder"}})
def export_trial(name: str, number: int, fmt: Literal["spec", "diffusers", "onnx", "safetensors"],
                 store: StoreDep, settings: SettingsDep,
                 weights: Literal["distilled", "teacher"] | None = None) -> FileResponse:
    """Export the trial (weights: distilled from the block bank, or teacher-initialised; by
    default what the study's evaluator scored)."""
    from nanosd_nas.search import export_trial as export

    service.get_trial(store, name, number)  # 404 before any work; the names below are safe
    stem = f"{name}-trial{number}-{fmt}" + (f"-{weights}" if weights else "")
    folder = export_root(settings) / name / str(number) / (fmt + (f"-{weights}" if weights
                                                                     else ""))
    with _EXPORTING:
        if not folder.is_dir():  # exported whole into a side folder, then renamed
            partial = folder.with_name(folder.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            export(store, name, number, fmt, partial, weights=weights)
            partial.replace(folder)
        if fmt == "spec":
            return FileResponse(folder / "spec.json", media_type="application/json",
                                filename=f"{stem}.json")
        archive = folder.with_name(folder.name + ".zip")
        if not archive.exists():
            _zip_atomic(folder, archive)
    return FileResponse(archive, media_type=_ZIP, filename=f"{stem}.zip")
