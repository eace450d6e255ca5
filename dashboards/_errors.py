"""The service's exceptions as HTTP answers: a user's mistake is a 4xx with a reason, a
database that cannot be reached a 503; neither is ever a 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from nanosd_nas.search import StudyConfigError
from nanosd_nas.search.store import StoreError, StudyExists
from nanosd_nas.spaces import NotExpressible, SpecError


def _status(error: Exception) -> int:
    if isinstance(error, LookupError):  # StudyNotFound, TrialNotFound, ArchitectureNotFound, ...
        return 404
    if isinstance(error, StudyExists):
        return 409
    if isinstance(error, StoreError):  # unreachable database, outdated schema
        return 503
    return 422


def _location(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))


def error_page(request: Request, status: int, message: str) -> Response:
    """An HTML page saying what went wrong, for the browser's pages."""
    from nanosd_nas.dashboards.routes.pages import render

    return render(request, "error.html", {"status": status, "message": message},
                  status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Map the store's, the study parser's and the spec's errors to JSON answers."""

    async def answer(request: Request, error: Exception) -> Response:
        status = _status(error)
        if request.url.path.startswith("/api") or request.url.path.startswith("/static"):
            return JSONResponse({"detail": str(error)}, status_code=status)
        return error_page(request, status, str(error))

    async def http_answer(request: Request, error: Exception) -> Response:
        status = getattr(error, "status_code", 400)
        if isinstance(error, RequestValidationError):
            status, detail = 422, "; ".join(_location(e) for e in error.errors())
        else:
            detail = str(getattr(error, "detail", error))
        if request.url.path.startswith("/api") or status == 401:
            content: Any = (jsonable_encoder({"detail": error.errors()})
                            if isinstance(error, RequestValidationError) else {"detail": detail})
            return JSONResponse(content, status_code=status,
                                headers=getattr(error, "headers", None))
        return error_page(request, status, detail)

    app.add_exception_handler(HTTPException, http_answer)
    app.add_exception_handler(StarletteHTTPException, http_answer)
    app.add_exception_handler(RequestValidationError, http_answer)
    for kind in (StoreError, StudyConfigError, SpecError, NotExpressible, ValueError):
        app.add_exception_handler(kind, answer)
