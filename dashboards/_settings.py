"""The service's settings, from arguments or ``NANOSD_NAS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """What ``create_app`` needs to know.

    Attributes:
        database_url: the store (``NANOSD_NAS_DATABASE_URL``; SQLite in the working directory
            if unset).
        api_token: when set, write endpoints (submit, stop) need ``Authorization: Bearer``
            with it (``NANOSD_NAS_API_TOKEN``); a blank or space-padded one is refused (no
            client could send it).
        max_body_bytes: the largest request body accepted (a study document is a few KB).
        export_dir: where exported files are kept between downloads; the project home's
            ``exports/`` if unset.
        page_size_max: the most trials one page of the API returns.
    """

    model_config = SettingsConfigDict(env_prefix="NANOSD_NAS_", extra="ignore",
                                      hide_input_in_errors=True)  # the token is secret

    database_url: str | None = None
    api_token: str | None = Field(default=None, repr=False)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    export_dir: Path | None = None
    page_size_max: int = Field(default=500, ge=10)

    @field_validator("api_token")
    @classmethod
    def _usable_token(cls, token: str | None) -> str | None:
        if token is not None and (not token or token != token.strip()):
            raise ValueError("api_token must be non-empty, without surrounding spaces "
                             "(a client sends it in a header, which strips them)")
        return token
