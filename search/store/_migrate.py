"""Schema migrations, run in-process with Alembic: no ``alembic.ini``, our own version table."""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

#: Optuna keeps its own revision in ``alembic_version`` of the same database.
VERSION_TABLE = "nanosd_nas_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")
# Key of the PostgreSQL advisory lock that keeps two concurrent upgrades apart.
_UPGRADE_LOCK = zlib.crc32(VERSION_TABLE.encode())


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the shipped migrations, bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this build ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # only if the migrations folder was not shipped
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in
            ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The database's revision of the service's tables; ``None`` before the first upgrade."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade_schema(engine: Engine, revision: str = "head", *, down: bool = False,
                   ) -> tuple[str | None, str | None]:
    """Migrate up (or, with ``down``, back down) to ``revision`` in one transaction; returns
    the revisions before and after.

    Concurrent upgrades wait for each other (SQLite: the write lock; PostgreSQL: an advisory
    lock), so the second finds the work done.
    """
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        # SQLite alters a constraint by rebuilding the table (Alembic's batch mode), and with
        # foreign keys on, dropping the old table would cascade to its children's rows. The
        # pragma is a no-op inside a transaction, so it is set before the transaction begins.
        if sqlite:
            _sqlite_foreign_keys(connection, on=False)
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")
                before = current_revision(connection)
                migrate = command.downgrade if down else command.upgrade
                migrate(alembic_config(connection), revision)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise RuntimeError("the migration left rows whose parents are gone; "
                                       "nothing was changed")
                return before, current_revision(connection)
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, on=True)


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    driver = connection.connection.driver_connection
    assert driver is not None  # a live pooled connection always has one
    driver.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")
