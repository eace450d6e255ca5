"""The store's own exceptions: what a caller (the runner, the API, the command line) can act on.

SQLAlchemy and driver errors never leave the store; each becomes one of these, with a message
that fits on one line and never shows a password.
"""

from __future__ import annotations


class StoreError(Exception):
    """A database problem the store cannot hide (bad URL, outdated schema, failed statement)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened (server down, wrong host, missing folder)."""


class SchemaOutdated(StoreError):
    """The database has no nanosd-nas tables, or an older (or newer) revision of them.

    Attributes:
        current: the database's revision (``None``: no tables, or no database file yet).
        head: the revision this build writes.
    """

    def __init__(self, message: str, *, current: str | None, head: str) -> None:
        super().__init__(message)
        self.current = current
        self.head = head


class StudyNotFound(StoreError, LookupError):
    """No study of that name is stored."""

    def __init__(self, name: str) -> None:
        super().__init__(f"study {name!r} does not exist")
        self.name = name


class StudyExists(StoreError):
    """A study of that name is already stored."""

    def __init__(self, name: str) -> None:
        super().__init__(f"study {name!r} already exists")
        self.name = name


class TrialNotFound(StoreError, LookupError):
    """No trial with that id (or of that study and number) is stored."""


class TrialStateError(StoreError):
    """A trial cannot make the requested transition (it is no longer running).

    A runner that was taken for dead, and whose trial was failed and re-asked, gets this when it
    finally reports: its result is not stored twice.
    """


class StudyStateError(StoreError):
    """A study cannot make the requested move from its status (a running study deleted, a
    completed one queued again); the message says why and what to do."""


class ArchitectureNotFound(StoreError, LookupError):
    """No architecture with that spec id is stored."""


class UnknownDevice(StoreError, LookupError):
    """A device name that was never stored with :meth:`Store.upsert_device`."""

    def __init__(self, name: str) -> None:
        super().__init__(f"device {name!r} is not in the store (store it with upsert_device)")
        self.name = name
