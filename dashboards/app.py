"""``create_app``: the FastAPI application of ``nanosd-nas serve``.

    app = create_app(Settings(database_url="postgresql+psycopg://postgres@127.0.0.1/nas"))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from nanosd_nas.dashboards._errors import install_error_handlers
from nanosd_nas.dashboards._guards import BodyLimit, SameOriginWrites, host_guard
from nanosd_nas.dashboards._settings import Settings
from nanosd_nas.dashboards.routes import devices, exports, health, pages, studies, trials
from nanosd_nas.search.store import Store


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
    for router in (health.router, studies.router, trials.router, exports.router, devices.router,
                   pages.router):
        app.include_router(router)
    install_error_handlers(app)
    if settings.api_token is None:  # with a token, a hostile page cannot write anyway
        app.add_middleware(SameOriginWrites)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(host_guard, allowed_hosts=settings.allowed_hosts)  # outermost
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanosd-nas")
    except PackageNotFoundError:
        return "0"


__all__ = ["BodyLimit", "create_app"]
