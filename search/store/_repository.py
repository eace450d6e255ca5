"""The store: the service's database behind one object."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from nanosd_nas.search.store._errors import SchemaOutdated, StoreError
from nanosd_nas.search.store._latency import LatencyMixin
from nanosd_nas.search.store._migrate import (
    current_revision,
    head_revision,
    known_revisions,
    upgrade_schema,
)
from nanosd_nas.search.store._session import first_line
from nanosd_nas.search.store._studies import StudiesMixin
from nanosd_nas.search.store._url import (
    create_store_engine,
    make_default_folder,
    parse_database_url,
    resolve_database_url,
)

#: Key of the PostgreSQL advisory lock under which Optuna's tables are created.
OPTUNA_SCHEMA_LOCK = zlib.crc32(b"nanosd_nas_optuna_schema")


class Store(StudiesMixin, LatencyMixin):
    """The service's database: devices, architectures, predictors, measurements, studies,
    trials with every value and its provenance, Pareto fronts, hypervolume history, and the
    values of finished studies' trials rescored for other devices.

    It is also the database backend of :class:`latency_models.LatencyStore` (measurements,
    predictors stored whole, reference timings), so a predictor calibrated against it is
    listed by the dashboard at once.

    SQLite (one file, shared by several processes) or PostgreSQL (several runners on several
    hosts). Optuna's RDB storage may live in the same database: the store's tables are all
    ``nas_*`` and its migrations keep their own version table.

    Thread-safe and process-safe: every method runs in its own transaction and returns plain
    values (:class:`StudyRecord`, :class:`TrialRecord` ...), never live database rows. Errors are
    the store's own (:class:`StoreError` and its subclasses), never SQLAlchemy's.

    Args:
        engine: an engine from :func:`create_store_engine`; most callers use :meth:`open`.
    """

    @classmethod
    def open(cls, url: str | None = None, *, upgrade: bool = False, require_schema: bool = True,
             connect_timeout: float = 10.0) -> Store:
        """Connect to the database at ``url`` (else ``$NANOSD_NAS_DATABASE_URL``, else
        ``nanosd-nas.db`` in the project home) and check that it answers.

        Args:
            url: a SQLAlchemy URL, ``sqlite:///PATH`` or ``postgresql+psycopg://...``.
            upgrade: migrate the schema to this build's revision first.
            require_schema: refuse a database whose schema is not this build's revision.
            connect_timeout: seconds to wait for a PostgreSQL server.

        Raises:
            StoreError: a malformed URL or an unsupported backend.
            StoreUnavailable: the database cannot be reached.
            SchemaOutdated: ``require_schema`` and the schema needs ``nanosd-nas db upgrade``.
        """
        resolved = resolve_database_url(url)
        parsed = parse_database_url(resolved)
        if upgrade:
            make_default_folder(resolved)
        if require_schema and not upgrade:
            _refuse_missing_file(parsed)
        engine = create_store_engine(parsed, connect_timeout=connect_timeout)
        store = cls(engine=engine)
        try:
            store.ping()
            if upgrade:
                store.upgrade()
            elif require_schema:
                store.check_schema()
        except BaseException:
            store.close()
            raise
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------
    def upgrade(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Migrate the service's tables to ``revision``; returns the revisions before and
        after (equal when there was nothing to do). Optuna's tables are never touched."""
        current = self.current_revision()
        if current is not None and current not in known_revisions():
            raise self._outdated(current, head_revision())
        return self._migrate(revision, down=False)

    def downgrade(self, revision: str) -> tuple[str | None, str | None]:
        """Migrate the service's tables back to ``revision`` (what a rollback to an older build
        needs); returns the revisions before and after. Optuna's tables are never touched."""
        return self._migrate(revision, down=True)

    def _migrate(self, revision: str, *, down: bool) -> tuple[str | None, str | None]:
        try:
            return upgrade_schema(self._write_engine, revision, down=down)
        except CommandError as error:
            raise StoreError(f"cannot migrate the database at {self.display_url}: "
                             f"{first_line(error)}") from error
        except SQLAlchemyError as error:
            raise StoreError(f"migrating the database at {self.display_url} failed: "
                             f"{first_line(error)}") from error

    def optuna_storage(self) -> Any:
        """Optuna's RDB storage on this database, its tables created first under the same
        lock as migrations: runners starting together on PostgreSQL would otherwise race to
        create Optuna's enum types and tables (a unique violation in all but one)."""
        import optuna

        url = self.url
        if self.engine.dialect.name != "postgresql":
            return optuna.storages.RDBStorage(url)
        with self.engine.begin() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({OPTUNA_SCHEMA_LOCK})")
            # Pings before reuse: a pooled connection of a restarted server is replaced, not
            # handed to Optuna to fail on.
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})

    def _forget_optuna_study(self, name: str) -> None:
        """Delete the Optuna study of ``name``, if Optuna's tables and that study exist (a
        database Optuna never used is left without its tables)."""
        import optuna
        from sqlalchemy import inspect

        try:
            if not inspect(self.engine).has_table("studies"):
                return
            storage = self.optuna_storage()
            try:
                optuna.delete_study(study_name=name, storage=storage)
            finally:
                storage.engine.dispose()
        except KeyError:  # never run: Optuna has no such study
            return
        except SQLAlchemyError as error:
            raise StoreError(f"deleting the Optuna study {name!r} at {self.display_url} failed: "
                             f"{first_line(error)}") from error

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        """Hold a lock named ``key`` across every process using this database, while other
        writes go on: on PostgreSQL a session advisory lock, on a SQLite file an exclusive
        ``flock`` of a lock file beside it (SQLite's processes share one machine).

        Raises:
            StoreUnavailable: the database does not answer.
        """
        if self.engine.dialect.name != "postgresql":
            database = self.engine.url.database
            if not database or database == ":memory:":
                yield  # one process's database
                return
            import fcntl

            lock = Path(f"{database}.{zlib.crc32(key.encode()):08x}.lock")
            with lock.open("a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
            return
        number = zlib.crc32(key.encode()) - (1 << 31)  # a signed 32-bit key
        with self._session() as session:
            connection = session.connection()
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({number})")
            try:
                yield
            finally:
                # A lost connection took its lock with it.
                with suppress(SQLAlchemyError):
                    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({number})")

    def current_revision(self) -> str | None:
        """The schema revision of the database; ``None`` before the first upgrade."""
        with self._session() as session:
            return current_revision(session.connection())

    @staticmethod
    def head_revision() -> str:
        """The schema revision this build writes."""
        return head_revision()

    def check_schema(self) -> None:
        """Raise :class:`SchemaOutdated` unless the schema is at this build's revision."""
        current, head = self.current_revision(), head_revision()
        if current != head:
            raise self._outdated(current, head)

    def _outdated(self, current: str | None, head: str) -> SchemaOutdated:
        if current is None:
            problem = "has no nanosd-nas tables; create them with 'nanosd-nas db upgrade'"
        elif current in known_revisions():
            problem = (f"is at schema revision {current}, this nanosd-nas needs {head}: "
                       "run 'nanosd-nas db upgrade'")
        else:
            problem = (f"is at schema revision {current}, newer than this nanosd-nas knows "
                       f"({head}): upgrade nanosd-nas")
        return SchemaOutdated(f"the database at {self.display_url} {problem}", current=current,
                              head=head)


def _refuse_missing_file(url: URL) -> None:
    """Refuse a SQLite file that does not exist yet, rather than leave an empty one behind
    (a command run in the wrong folder)."""
    if (url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:")
            or url.query.get("uri")):
        return
    path = Path(str(url.database))
    if not path.exists():
        raise SchemaOutdated(f"there is no database at {path.resolve()}; create it with "
                             "'nanosd-nas db upgrade'", current=None, head=head_revision())
