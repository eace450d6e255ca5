"""Studies: their lifecycle (created, queued, running, finished), the queue that study workers
claim from, and the lease a runner holds on its study."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from nanosd_nas.search._study_sections import without_removed_fields
from nanosd_nas.search.store._errors import (
    StudyExists,
    StudyStateError,
)
from nanosd_nas.search.store._models import (
    STUDY_STATUSES,
    StudyRow,
)
from nanosd_nas.search.store._records import (
    StudyRecord,
    check_study_name,
    json_document,
)
from nanosd_nas.search.store._rescored import RescoredMixin
from nanosd_nas.search.store._types import utcnow

_FINISHED_STATUSES = ("completed", "failed", "stopped")
#: A study in these statuses has a runner: it is stopped before it is deleted.
HELD_STATUSES = ("running", "stopping")
#: A study that ended in these statuses may be queued again.
REQUEUEABLE_STATUSES = ("failed", "stopped")

log = logging.getLogger(__name__)

#: How a study worker's runner names itself holding a study (``queue:HOST:PID``): only such
#: studies are taken over when their holder is gone.
QUEUE_HOLDER = "queue:"


def _to_study(row: StudyRow) -> StudyRecord:
    # A study stored before a field left the format keeps it in its row; it reads without.
    return StudyRecord(id=row.id, name=row.name, status=row.status,
                       config=without_removed_fields(row.config),
                       device=row.device.name if row.device else None,
                       status_reason=row.status_reason, created_at=row.created_at,
                       updated_at=row.updated_at, started_at=row.started_at,
                       finished_at=row.finished_at, runner=row.runner,
                       runner_seen_at=row.runner_seen_at)


class StudiesMixin(RescoredMixin):
    """Studies: create, read, queue, hold, stop and delete them (see
    :class:`nanosd_nas.search.store.Store`); their trials and fronts come from
    :class:`TrialsMixin`, their values on other devices from :class:`RescoredMixin`."""

    # -- studies ----------------------------------------------------------------------------
    def create_study(self, name: str, config: Mapping[str, Any], *,
                     device: str | None = None, queued: bool = False) -> StudyRecord:
        """Store a new study in status ``created`` (``queued`` for a worker if ``queued``).

        Args:
            name: the study's unique name.
            config: the study document (JSON-serialisable).
            device: the stored device it measures or predicts latency on, if any.

        Raises:
            StudyExists: the name is taken.
            UnknownDevice: ``device`` is not stored.
        """
        check_study_name(name)
        document = json_document(f"config of study {name!r}", config)
        with self._session(write=True) as session:
            if session.scalar(select(StudyRow.id).where(StudyRow.name == name)) is not None:
                raise StudyExists(name)
            device_id = None if device is None else self._device_id(session, device)
            row = StudyRow(name=name, config=document, device_id=device_id,
                           status="queued" if queued else "created")
            session.add(row)
            try:
                session.flush()
            except IntegrityError as error:  # created concurrently
                raise StudyExists(name) from error
            session.refresh(row)
            return _to_study(row)

    def get_study(self, name: str) -> StudyRecord:
        """The study called ``name``; :class:`StudyNotFound` if there is none."""
        with self._session() as session:
            return _to_study(self._study_row(session, name))

    def list_studies(self) -> list[StudyRecord]:
        """Every study, oldest first."""
        with self._session() as session:
            rows = session.scalars(select(StudyRow).order_by(StudyRow.id))
            return [_to_study(row) for row in rows]

    def set_study_status(self, name: str, status: str, *,
                         reason: str | None = None) -> StudyRecord:
        """Move a study to ``status``, with an optional reason (why it failed or stopped).

        ``running`` sets ``started_at`` the first time and clears ``finished_at``; ``completed``,
        ``failed`` and ``stopped`` set ``finished_at``.
        """
        if status not in STUDY_STATUSES:
            raise ValueError(f"study status {status!r} does not exist; statuses: "
                             f"{', '.join(STUDY_STATUSES)}")
        with self._session(write=True) as session:
            row = self._study_row(session, name, lock=True)
            now = utcnow()
            row.status, row.status_reason = status, reason
            if status == "running":
                row.started_at = row.started_at or now
                row.finished_at = None
            elif status in _FINISHED_STATUSES:
                row.finished_at = now
            session.flush()
            return _to_study(row)

    def claim_queued_study(self, *, runner: str | None = None,
                           orphaned_after_s: float | None = None) -> StudyRecord | None:
        """Move the oldest ``queued`` study to ``running``, held by ``runner``, and return it;
        ``None`` if none waits.

        With ``orphaned_after_s``, when nothing is queued, a ``running`` (or ``stopping``) study
        that a worker was running (its holder starts with :data:`QUEUE_HOLDER`) and that has
        not been held (:meth:`hold_study`) for that long is taken over instead: its worker died
        (killed with SIGKILL, it cannot say so), and the new one continues it. A study run by
        hand (``study run``) is its user's to continue, and is never taken over. Two workers
        never claim the same study: on PostgreSQL the row is locked with ``SKIP LOCKED`` and
        the move is conditional; SQLite serialises writers."""
        with self._session(write=True) as session:
            postgres = session.bind is not None and session.bind.dialect.name == "postgresql"

            def oldest(condition: ColumnElement[bool]) -> StudyRow | None:
                query = select(StudyRow).where(condition).order_by(StudyRow.id).limit(1)
                if postgres:
                    query = query.with_for_update(skip_locked=True, of=StudyRow)
                return session.scalar(query)

            row = oldest(StudyRow.status == "queued")
            if row is None and orphaned_after_s is not None:
                cutoff = utcnow() - timedelta(seconds=orphaned_after_s)
                last_seen = func.coalesce(StudyRow.runner_seen_at, StudyRow.updated_at)
                row = oldest(StudyRow.status.in_(("running", "stopping"))
                             & StudyRow.runner.startswith(QUEUE_HOLDER, autoescape=True)
                             & (last_seen < cutoff))
                if row is not None:
                    log.warning("study %s: its worker %s was last seen at %s; taking it over",
                                row.name, row.runner, row.runner_seen_at or row.updated_at)
            if row is None:
                return None
            now = utcnow()
            if row.status != "stopping":  # a stop asked of the dead worker stands
                row.status, row.status_reason = "running", None
            row.started_at, row.finished_at = row.started_at or now, None
            row.runner, row.runner_seen_at = runner, now
            session.flush()
            return _to_study(row)

    def hold_study(self, name: str, runner: str) -> None:
        """Record that ``runner`` (``HOST:PID``) holds study ``name`` and is alive now."""
        with self._session(write=True) as session:
            session.execute(update(StudyRow).where(StudyRow.name == name)
                            .values(runner=runner, runner_seen_at=utcnow())
                            .execution_options(synchronize_session=False))

    def request_stop(self, name: str, *, reason: str = "stopped on request") -> StudyRecord:
        """Stop a study: a ``queued`` or ``created`` one at once, a ``running`` one by asking
        its runner (``stopping``), which lets the trials in flight land first. A finished
        study is left as it is.
        """
        with self._session(write=True) as session:
            row = self._study_row(session, name, lock=True)
            if row.status in ("queued", "created"):
                row.status, row.status_reason, row.finished_at = "stopped", reason, utcnow()
            elif row.status == "running":
                row.status, row.status_reason = "stopping", reason
            session.flush()
            return _to_study(row)

    def delete_study(self, name: str) -> None:
        """Forget a study with its trials, values, front, history and rescored values (the
        database deletes them with it), and its Optuna study.

        Raises:
            StudyNotFound: there is no such study.
            StudyStateError: the study is running or stopping: a runner holds it.
        """
        self._refuse_held(self.get_study(name), "deleted")
        # Optuna's study first: a study created again under this name must not find it.
        self._forget_optuna_study(name)
        with self._session(write=True) as session:
            row = self._study_row(session, name, lock=True)
            self._refuse_held(_to_study(row), "deleted")  # claimed by a worker meanwhile
            session.execute(delete(StudyRow).where(StudyRow.id == row.id))

    def requeue_study(self, name: str) -> StudyRecord:
        """Queue a ``failed`` or ``stopped`` study again: the next study worker continues it
        where it ended (its completed trials are kept; trials it left running are asked
        again).

        Raises:
            StudyNotFound: there is no such study.
            StudyStateError: the study is not failed or stopped.
        """
        with self._session(write=True) as session:
            row = self._study_row(session, name, lock=True)
            if row.status not in REQUEUEABLE_STATUSES:
                raise StudyStateError(
                    f"study {name!r} is {row.status}: only a failed or stopped study can be "
                    "queued again")
            row.status, row.status_reason, row.finished_at = "queued", None, None
            row.runner, row.runner_seen_at = None, None
            session.flush()
            return _to_study(row)

    @staticmethod
    def _refuse_held(record: StudyRecord, verb: str) -> None:
        if record.status in HELD_STATUSES:
            raise StudyStateError(
                f"study {record.name!r} is {record.status}: stop it first and wait until it "
                f"has stopped before it can be {verb}")

    def _forget_optuna_study(self, name: str) -> None:
        """Delete the Optuna study of ``name`` where the store keeps Optuna's storage (a hook:
        :class:`Store` does)."""
