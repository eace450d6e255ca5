"""The service's settings, from arguments or ``NANOSD_NAS_*`` environment variables."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """What ``create_app`` needs to know.

    Attributes:
        database_url: the store (``NANOSD_NAS_DATABASE_URL``; SQLite in the project home if
            unset).
        api_token: when set, write endpoints (submit, stop) need ``Authorization: Bearer``
            with it (``NANOSD_NAS_API_TOKEN``); a blank or space-padded one is refused (no
            client could send it).
        max_body_bytes: the largest request body accepted (a study document is a few KB).
        export_dir: where exported files are kept between downloads; the project home's
            ``exports/`` if unset.
        page_size_max: the most trials one page of the API returns.
        allowed_hosts: the names clients may reach the server by (the ``Host`` header; a
            leading ``*.`` takes a domain's subdomains); any other is answered 400, which
            keeps a page on another site from reaching a server bound to loopback through a
            re-pointed name (DNS rebinding). ``NANOSD_NAS_ALLOWED_HOSTS``, separated by spaces
            or commas. None: any host (``nanosd-nas serve`` sets it from the address it binds
            and ``--allowed-host``).
    """

    model_config = SettingsConfigDict(env_prefix="NANOSD_NAS_", extra="ignore",
                                      hide_input_in_errors=True)  # the token is secret

    database_url: str | None = None
    api_token: str | None = Field(default=None, repr=False)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    export_dir: Path | None = None
    page_size_max: int = Field(default=500, ge=10)
    allowed_hosts: Annotated[list[str] | None, NoDecode] = None

    @field_validator("api_token")
    @classmethod
    def _usable_token(cls, token: str | None) -> str | None:
        if token is not None and (not token or token != token.strip()):
            raise ValueError("api_token must be non-empty, without surrounding spaces "
                             "(a client sends it in a header, which strips them)")
        return token

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _host_names(cls, hosts: object) -> object:
        if isinstance(hosts, str):  # NANOSD_NAS_ALLOWED_HOSTS: separated by spaces or commas
            hosts = hosts.replace(",", " ").split()
        if isinstance(hosts, list | tuple):
            return [host_pattern(host) if isinstance(host, str) else host for host in hosts]
        return hosts


def host_pattern(host: str) -> str:
    """``host`` as a ``Host`` header names it: lower case, an IPv6 address in brackets.

    Raises:
        ValueError: not a host name, an address, ``*.domain`` or ``*`` (a port, a path, a
            misplaced ``*``).
    """
    name = host.strip().lower()
    if _ipv6(name.removeprefix("[").removesuffix("]")):
        return f"[{name.removeprefix('[').removesuffix(']')}]"
    if name == "*" or _HOST_NAME.fullmatch(name):
        return name
    raise ValueError(f"allowed host {host!r} must be a host name, an address, *.domain or *, "
                     "without a port")


def _ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*")
