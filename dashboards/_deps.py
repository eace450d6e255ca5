"""Typed dependencies of the handlers: the store, the settings, the write token."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nanosd_nas.dashboards._settings import Settings
from nanosd_nas.search.store import Store

_bearer = HTTPBearer(auto_error=False, description="The server's API token, when it has one.")


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def token_matches(settings: Settings, offered: str | None) -> bool:
    """True when the server needs no token or ``offered`` is it (compared in constant time)."""
    if settings.api_token is None:
        return True
    return offered is not None and hmac.compare_digest(offered.encode(),
                                                       settings.api_token.encode())


def require_token(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Write endpoints: 401 unless the bearer token is the server's (when it has one)."""
    if not token_matches(settings, None if credentials is None else credentials.credentials):
        raise HTTPException(401, "this server needs 'Authorization: Bearer TOKEN' for writes",
                            headers={"WWW-Authenticate": "Bearer"})


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WriteAccess = Depends(require_token)
