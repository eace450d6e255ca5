"""``create_app``: the FastAPI application of ``nanosd-nas serve``.

    app = create_app(Settings(database_url="postgresql+psycopg://postgres@127.0.0.1/nas"))
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nanosd_nas.dashboards._errors import install_error_handlers
from nanosd_nas.dashboards._settings import Settings
from nanosd_nas.dashboards.routes import devices, exports, pages, studies, trials
from nanosd_nas.search.store import Store


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether or not the client sent a
    Content-Length (a chunked body is counted as it arrives, and reading stops at the limit).

    The 413 is sent from here the moment the limit is passed: a handler that parses its body
    (a form) would otherwise turn the interruption into its own 400. Whatever the handler sends
    after that is dropped.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        seen, started, refused = 0, False, False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                if not started and not refused:
                    refused = True
                    await self._refuse(send)
                raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_TooLarge):  # answered in counted, unless the answer had begun
            await self.app(scope, counted, guarded)

    async def _refuse(self, send: Send) -> None:
        body = (b'{"detail":"the request body is larger than this server accepts (' +
                str(self.limit).encode() + b' bytes)"}')
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API (``/api``, OpenAPI at ``/docs``) and the pages, on ``store`` (opened from
    ``settings.database_url`` and migrated if not given)."""
    settings = settings or Settings()
    owned = store is None
    store = store or Store.open(settings.database_url, upgrade=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            store.close()

    app = FastAPI(title="nanosd-nas", version=_version(), lifespan=lifespan,
                  description="Hardware-aware architecture search for edge diffusion models: "
                              "studies, their trials and Pareto fronts, devices and exports.")
    app.state.settings, app.state.store = settings, store
    for router in (studies.router, trials.router, exports.router, devices.router,
                   pages.router):
        app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanosd-nas")
    except PackageNotFoundError:
        return "0"


__all__ = ["BodyLimit", "create_app"]
