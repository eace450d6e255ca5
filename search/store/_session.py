"""The store's sessions: one context manager that commits, rolls back, closes, and turns
SQLAlchemy errors into the store's own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from nanosd_nas.search.store._errors import StoreError, StoreUnavailable
from nanosd_nas.search.store._url import WRITE_OPTION, redact


def first_line(error: BaseException) -> str:
    """The driver's message of ``error``, on one line, without SQLAlchemy's SQL echo."""
    origin = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = [line.strip() for line in str(origin).splitlines() if line.strip()]
    return lines[0] if lines else type(origin).__name__


class StoreBase:
    """Engine and sessions of a store. Thread-safe: every call opens its own session.

    Args:
        engine: an engine from :func:`create_store_engine`; the store disposes of it on close.
    """

    def __init__(self, *, engine: Engine) -> None:
        self.engine = engine
        self._read_sessions = sessionmaker(engine, expire_on_commit=False)
        # SQLite write transactions begin IMMEDIATE (see _url.py); PostgreSQL ignores the option.
        self._write_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        """The database URL with its password masked: the form to show or log."""
        return redact(self.engine.url)

    @property
    def url(self) -> str:
        """The full database URL (with password), e.g. for Optuna's storage."""
        return self.engine.url.render_as_string(hide_password=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.display_url!r})"

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def ping(self) -> None:
        """Check that the database answers.

        Raises:
            StoreUnavailable: it does not.
        """
        with self._session() as session:
            session.execute(text("SELECT 1"))

    @contextmanager
    def _session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed if ``write`` and the block succeeds, else
        rolled back; closed in every case.

        Raises:
            StoreUnavailable: no connection could be made, or it was lost.
            StoreError: any other database error.
        """
        session = (self._write_sessions if write else self._read_sessions)()
        try:
            try:
                session.connection()
            except SQLAlchemyError as error:
                raise StoreUnavailable(f"cannot connect to the database at {self.display_url}: "
                                       f"{first_line(error)}") from error
            yield session
            if write:
                session.commit()
        except DBAPIError as error:
            session.rollback()
            if error.connection_invalidated:
                raise StoreUnavailable(f"lost the connection to the database at "
                                       f"{self.display_url}: {first_line(error)}") from error
            raise StoreError(f"database error at {self.display_url}: "
                             f"{first_line(error)}") from error
        except SQLAlchemyError as error:
            session.rollback()
            raise StoreError(f"database error at {self.display_url}: "
                             f"{first_line(error)}") from error
        except BaseException:  # the store's own errors too: nothing half-written stays
            session.rollback()
            raise
        finally:
            session.close()
