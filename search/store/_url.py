"""Where the service's database is, and an engine tuned for its backend.

The URL comes from, in order: the caller (``--db``), ``NANOSD_NAS_DATABASE_URL``, and the
embedded default, a SQLite file ``nanosd-nas.db`` in the project home (beside the devices and
block banks it refers to, whatever the working directory).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from nanosd_nas.latency_models import project_home
from nanosd_nas.search.store._errors import StoreError

DATABASE_URL_ENV = "NANOSD_NAS_DATABASE_URL"
DEFAULT_DATABASE_FILE = "nanosd-nas.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
#: Execution option of the engine that write sessions use (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTION = "nanosd_nas_write"
#: How long a SQLite writer waits for another process's write to finish before giving up.
SQLITE_BUSY_TIMEOUT_S = 30.0
_EXAMPLES = "sqlite:///PATH/nanosd-nas.db or postgresql+psycopg://USER@HOST:5432/DBNAME"


def default_database_url(home: Path | str | None = None) -> str:
    """``sqlite:///<home>/nanosd-nas.db`` with an absolute path, ``home`` being the project
    home (:func:`latency_models.project_home`) unless given."""
    return f"sqlite:///{project_home(home).resolve() / DEFAULT_DATABASE_FILE}"


def resolve_database_url(url: str | None = None) -> str:
    """The database URL to use: ``url`` if given, else the environment's, else the default."""
    if url:
        return url
    return os.environ.get(DATABASE_URL_ENV) or default_database_url()


def make_default_folder(url: str) -> None:
    """Create the project home if ``url`` is the default database's: the first command that
    writes the database makes it (any other URL's folder is the user's to make)."""
    if url == default_database_url():
        project_home().mkdir(parents=True, exist_ok=True)


def redact(url: str | URL) -> str:
    """``url`` with its password masked, also when it does not parse."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def parse_database_url(url: str) -> URL:
    """``url`` parsed and checked; a bare ``postgresql://`` gets the psycopg 3 driver.

    Raises:
        StoreError: not a URL, or a backend other than SQLite and PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as error:
        raise StoreError(f"database URL {redact(url)!r} is not a valid URL ({error}); "
                         f"expected {_EXAMPLES}") from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise StoreError(f"database backend {backend!r} of {redact(parsed)!r} is not supported; "
                         f"expected {_EXAMPLES}")
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_store_engine(url: URL, *, connect_timeout: float = 10.0) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with a busy timeout, so that several processes
    share one file; PostgreSQL with a connect timeout and pre-ping (long-lived runners outlast a
    server restart)."""
    if connect_timeout <= 0:
        raise ValueError(f"connect_timeout={connect_timeout} must be positive")
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            _tune_sqlite(engine, in_memory=url.database in (None, "", ":memory:"))
            return engine
        return create_engine(url, pool_pre_ping=True, connect_args={
            "connect_timeout": max(1, round(connect_timeout)),
            "application_name": "nanosd-nas"})
    except (NoSuchModuleError, ModuleNotFoundError) as error:
        raise StoreError(f"no driver for {redact(url)!r} ({error}); "
                         f"expected {_EXAMPLES}") from None


def _tune_sqlite(engine: Engine, *, in_memory: bool) -> None:
    # The pysqlite driver begins transactions lazily, on the first write, which lets a read
    # snapshot go stale under a concurrent writer (SQLITE_BUSY without waiting). Transactions are
    # begun here instead: writers with BEGIN IMMEDIATE, which takes the write lock up front and
    # waits for it under the busy timeout.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
