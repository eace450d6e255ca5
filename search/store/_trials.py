"""Trials, Pareto fronts and hypervolume history of a study.

Every state change of a trial is one conditional UPDATE (``... WHERE state = 'running'``) in its
own transaction: when two runners race for the same trial (a runner taken for dead reports after
its trial was failed), exactly one wins and the other gets :class:`TrialStateError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from nanosd_nas.search.store._catalog import CatalogMixin, upsert_statement
from nanosd_nas.search.store._errors import (
    StoreError,
    StudyNotFound,
    TrialNotFound,
    TrialStateError,
)
from nanosd_nas.search.store._models import (
    HISTORY_PHASES,
    TRIAL_STATES,
    ArchitectureRow,
    FrontMemberRow,
    HypervolumeRow,
    StudyRow,
    TrialRow,
    TrialValueRow,
)
from nanosd_nas.search.store._records import (
    HypervolumePoint,
    ObjectiveValue,
    TrialRecord,
    TrialValue,
    constraint_values,
    json_details,
    json_document,
    objective_values,
)
from nanosd_nas.search.store._types import utcnow

STALE_TRIAL_REASON = "its runner stopped before finishing it"


def _to_trial(row: TrialRow) -> TrialRecord:
    values = tuple(TrialValue(name=v.name, value=v.value, provenance=v.provenance,
                              predictor_id=v.predictor_id, recorded_at=v.recorded_at)
                   for v in row.values)
    return TrialRecord(id=row.id, study=row.study.name, number=row.number, state=row.state,
                       params=dict(row.params), spec_id=row.spec_id, values=values,
                       constraints=row.constraints, feasible=row.feasible, worker=row.worker,
                       optuna_trial_number=row.optuna_trial_number, fail_reason=row.fail_reason,
                       started_at=row.started_at, heartbeat_at=row.heartbeat_at,
                       finished_at=row.finished_at,
                       details=None if row.details is None else dict(row.details))


def _worker(worker: str | None) -> dict[str, str]:
    """The ``worker`` change of a trial's transition: none when ``worker`` is None."""
    return {} if worker is None else {"worker": worker[:255]}  # the column's width


class TrialsMixin(CatalogMixin):
    """Trials, fronts and hypervolume history (see :class:`nanosd_nas.search.store.Store`)."""

    # -- trials -----------------------------------------------------------------------------
    def add_trial(self, study: str, *, params: Mapping[str, Any], spec_id: str | None = None,
                  worker: str | None = None, optuna_trial_number: int | None = None,
                  budget: int | None = None, rerun_mark: str | None = None,
                  ) -> TrialRecord | None:
        """Store a new ``running`` trial with the study's next number (0, 1, 2 ...).

        Numbers are unique and without gaps however many runners add trials at once: each is
        taken by one atomic increment of the study's counter, in the same transaction as the
        trial's row.

        With ``budget``, the trial is added only while fewer than ``budget`` trials count
        (running, complete, or failed with a reason that does not end in ``rerun_mark``, the
        mark of a trial whose parameters were asked again), checked in the same transaction
        under the study's row lock: runners sharing a study never overshoot its trial budget.
        ``None`` when the budget is spent.

        Args:
            study: the study's name.
            params: the sampler's parameters (the choice vector), JSON-serialisable.
            spec_id: the candidate's architecture, stored with :meth:`upsert_architecture`.
            worker: who runs it (``host:pid``), shown when it is failed as stale.
            optuna_trial_number: the matching trial of the study's Optuna storage.
        """
        document = json_document("trial params", params)
        with self._session(write=True) as session:
            taken = session.execute(
                update(StudyRow).where(StudyRow.name == study)
                .values(next_trial_number=StudyRow.next_trial_number + 1)
                .returning(StudyRow.id, StudyRow.next_trial_number)
                .execution_options(synchronize_session=False)).one_or_none()
            if taken is None:
                raise StudyNotFound(study)
            if budget is not None:
                counted = select(func.count()).where(TrialRow.study_id == taken.id)
                if rerun_mark:
                    counted = counted.where(
                        (TrialRow.state != "failed") | TrialRow.fail_reason.is_(None)
                        | ~TrialRow.fail_reason.endswith(rerun_mark, autoescape=True))
                if (session.scalar(counted) or 0) >= budget:
                    session.rollback()  # the number stays free
                    return None
            if spec_id is not None and session.get(ArchitectureRow, spec_id) is None:
                raise StoreError(f"architecture {spec_id!r} is not stored "
                                 "(store it with upsert_architecture first)")
            row = TrialRow(study_id=taken.id, number=taken.next_trial_number - 1,
                           params=document, spec_id=spec_id, worker=worker,
                           optuna_trial_number=optuna_trial_number)
            session.add(row)
            session.flush()
            return self._trials(session, TrialRow.id == row.id)[0]

    def heartbeat(self, trial_ids: Iterable[int]) -> int:
        """Mark running trials as alive now; returns how many still run."""
        ids = list(trial_ids)
        if not ids:
            return 0
        with self._session(write=True) as session:
            alive = session.scalars(
                update(TrialRow).where(TrialRow.id.in_(ids), TrialRow.state == "running")
                .values(heartbeat_at=utcnow()).returning(TrialRow.id)
                .execution_options(synchronize_session=False)).all()
            return len(alive)

    def complete_trial(self, trial_id: int, values: Mapping[str, ObjectiveValue], *,
                       constraints: Mapping[str, float] | None = None,
                       worker: str | None = None, details: Mapping[str, Any] | None = None,
                       ) -> TrialRecord:
        """Complete a running trial with its values and constraint values, in one transaction.

        Args:
            trial_id: the trial's id.
            values: every objective value (and any other metric) by name, with provenance.
            constraints: Optuna's convention, a value <= 0 is satisfied; sets ``feasible``.
            worker: who evaluated it (a Ray worker on some node), replacing ``add_trial``'s;
                ``None`` keeps that.
            details: what the accuracy evaluator reported beside the values (the fidelity's
                interval, its figures by timestep, ...), stored as JSON: NumPy numbers become
                plain ones and a non-finite float ``null`` (:func:`json_details`), so they
                cannot fail the trial.

        Raises:
            TrialNotFound: no such trial.
            TrialStateError: the trial is not running (completed, or failed as stale).
        """
        checked = objective_values(values)
        if not checked:
            raise ValueError(f"trial {trial_id}: a completed trial needs at least one value")
        limits = constraint_values(constraints)
        feasible = None if limits is None else all(v <= 0 for v in limits.values())
        with self._session(write=True) as session:
            now = utcnow()
            self._transition(session, trial_id, "completed", state="complete",
                             constraints=limits, feasible=feasible, finished_at=now,
                             heartbeat_at=now, details=json_details(details),
                             **_worker(worker))
            self._put_values(session, trial_id, checked)
            return self._trials(session, TrialRow.id == trial_id)[0]

    def add_values(self, trial_id: int, values: Mapping[str, ObjectiveValue]) -> TrialRecord:
        """Add (or replace, by name and provenance) values of a trial in any state: e.g. the
        measured latency of a front member whose search used the predicted one."""
        checked = objective_values(values)
        with self._session(write=True) as session:
            if session.get(TrialRow, trial_id) is None:
                raise TrialNotFound(f"trial id {trial_id} does not exist")
            self._put_values(session, trial_id, checked)
            return self._trials(session, TrialRow.id == trial_id)[0]

    def fail_trial(self, trial_id: int, reason: str, *, worker: str | None = None
                   ) -> TrialRecord:
        """Fail a running trial, saying why (shown to the user); ``worker`` as in
        :meth:`complete_trial`.

        Raises:
            TrialNotFound: no such trial.
            TrialStateError: the trial is not running.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"a failed trial needs a reason, not {reason!r}")
        with self._session(write=True) as session:
            self._transition(session, trial_id, "failed", state="failed", fail_reason=reason,
                             finished_at=utcnow(), **_worker(worker))
            return self._trials(session, TrialRow.id == trial_id)[0]

    def fail_stale_trials(self, study: str, *, reason: str = STALE_TRIAL_REASON,
                          older_than_s: float | None = None) -> list[TrialRecord]:
        """Fail the running trials of ``study`` that no live runner holds, and return them.

        A runner that starts on a study calls this first: trials left running by a runner that
        was killed are failed (and so asked again), completed trials stay as they are.

        Args:
            study: the study's name.
            reason: stored as each trial's ``fail_reason``.
            older_than_s: only trials whose last heartbeat is older than this many seconds
                (when other runners may be alive); ``None``: every running trial.
        """
        if older_than_s is not None and older_than_s < 0:
            raise ValueError(f"older_than_s={older_than_s} must not be negative")
        with self._session(write=True) as session:
            study_id = self._study_row(session, study).id
            now = utcnow()
            stale: list[ColumnElement[bool]] = [TrialRow.study_id == study_id,
                                                TrialRow.state == "running"]
            if older_than_s is not None:
                stale.append(TrialRow.heartbeat_at < now - timedelta(seconds=older_than_s))
            failed = session.scalars(
                update(TrialRow).where(*stale)
                .values(state="failed", fail_reason=reason, finished_at=now)
                .returning(TrialRow.id).execution_options(synchronize_session=False)).all()
            return self._trials(session, TrialRow.id.in_(failed)) if failed else []

    def get_trial(self, study: str, number: int) -> TrialRecord:
        """Trial ``number`` of ``study``."""
        with self._session() as session:
            study_id = self._study_row(session, study).id
            found = self._trials(session, TrialRow.study_id == study_id, TrialRow.number == number)
            if not found:
                raise TrialNotFound(f"study {study!r} has no trial {number}")
            return found[0]

    def list_trials(self, study: str, *, state: str | None = None) -> list[TrialRecord]:
        """The trials of ``study`` by number, optionally only those in ``state``."""
        with self._session() as session:
            where = [TrialRow.study_id == self._study_row(session, study).id]
            if state is not None:
                if state not in TRIAL_STATES:
                    raise ValueError(f"trial state {state!r} does not exist; states: "
                                     f"{', '.join(TRIAL_STATES)}")
                where.append(TrialRow.state == state)
            return self._trials(session, *where)

    # -- Pareto front -----------------------------------------------------------------------
    def replace_front(self, study: str, trial_ids: Iterable[int], *,
                      hypervolume: float | None = None,
                      seen_complete: int | None = None, phase: str = "search") -> bool:
        """Make ``trial_ids`` the stored Pareto front of ``study`` and, if given, append
        ``hypervolume`` to its history as a point of ``phase`` (``search`` or ``verify``), in
        one transaction; True if written.

        With ``seen_complete`` (how many complete trials the front was computed from), a front
        computed before other trials completed is not written: runners sharing a study each
        recompute after their own trials land, so the last front written has seen them all.

        Raises:
            ValueError: an id is not a completed trial of this study.
        """
        ids = set(trial_ids)
        if hypervolume is not None and not (math.isfinite(hypervolume) and hypervolume >= 0):
            raise ValueError(f"hypervolume {hypervolume!r} must be a finite number >= 0")
        if phase not in HISTORY_PHASES:
            raise ValueError(f"phase {phase!r}: expected one of {', '.join(HISTORY_PHASES)}")
        with self._session(write=True) as session:
            study_id = self._study_row(session, study, lock=True).id
            complete = (TrialRow.study_id == study_id) & (TrialRow.state == "complete")
            if ids:
                found = set(session.scalars(
                    select(TrialRow.id).where(complete, TrialRow.id.in_(ids))))
                if ids - found:
                    raise ValueError(f"trial ids {sorted(ids - found)} are not completed trials "
                                     f"of study {study!r}")
            n_complete = session.scalar(select(func.count()).where(complete)) or 0
            if seen_complete is not None and n_complete > seen_complete:
                return False
            session.execute(delete(FrontMemberRow).where(FrontMemberRow.study_id == study_id))
            session.add_all(FrontMemberRow(study_id=study_id, trial_id=i) for i in sorted(ids))
            if hypervolume is not None:
                session.add(HypervolumeRow(study_id=study_id, n_complete=n_complete,
                                           hypervolume=float(hypervolume), phase=phase))
            return True

    def front(self, study: str) -> list[TrialRecord]:
        """The stored Pareto front of ``study``, by trial number."""
        with self._session() as session:
            study_id = self._study_row(session, study).id
            members = select(FrontMemberRow.trial_id).where(FrontMemberRow.study_id == study_id)
            return self._trials(session, TrialRow.id.in_(members))

    def hypervolume_history(self, study: str) -> list[HypervolumePoint]:
        """Every hypervolume recorded for ``study``, in the order recorded."""
        with self._session() as session:
            study_id = self._study_row(session, study).id
            rows = session.scalars(select(HypervolumeRow)
                                   .where(HypervolumeRow.study_id == study_id)
                                   .order_by(HypervolumeRow.id))
            return [HypervolumePoint(n_complete=r.n_complete, hypervolume=r.hypervolume,
                                     recorded_at=r.recorded_at, phase=r.phase) for r in rows]

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _study_row(session: Session, name: str, *, lock: bool = False) -> StudyRow:
        if "\x00" in name:  # no stored name has one; PostgreSQL refuses it in a query
            raise StudyNotFound(name)
        query = select(StudyRow).where(StudyRow.name == name)
        if lock:  # PostgreSQL: writers of one study's front and status queue here
            query = query.with_for_update(of=StudyRow)
        row = session.scalar(query)
        if row is None:
            raise StudyNotFound(name)
        return row

    @staticmethod
    def _trials(session: Session, *where: ColumnElement[bool]) -> list[TrialRecord]:
        # populate_existing: rows changed by the UPDATEs above are read afresh, not from the
        # session's identity map.
        query = (select(TrialRow).where(*where).order_by(TrialRow.study_id, TrialRow.number)
                 .execution_options(populate_existing=True))
        return [_to_trial(row) for row in session.scalars(query)]

    @staticmethod
    def _transition(session: Session, trial_id: int, verb: str, **changes: Any) -> None:
        """Apply ``changes`` to the trial if it is running, else say why it cannot be."""
        moved = session.execute(
            update(TrialRow).where(TrialRow.id == trial_id, TrialRow.state == "running")
            .values(**changes).returning(TrialRow.id)
            .execution_options(synchronize_session=False)).first()
        if moved is not None:
            return
        row = session.get(TrialRow, trial_id)
        if row is None:
            raise TrialNotFound(f"trial id {trial_id} does not exist")
        why = f" ({row.fail_reason})" if row.fail_reason else ""
        raise TrialStateError(f"trial {row.number} of study {row.study.name!r} is {row.state}"
                              f"{why}, not running; it cannot be {verb}")

    @staticmethod
    def _put_values(session: Session, trial_id: int, values: dict[str, ObjectiveValue]) -> None:
        now = utcnow()
        for name, value in values.items():
            statement = upsert_statement(session, TrialValueRow).values(
                trial_id=trial_id, name=name, value=float(value.value),
                provenance=value.provenance, predictor_id=value.predictor_id, recorded_at=now)
            session.execute(statement.on_conflict_do_update(
                index_elements=["trial_id", "name", "provenance"],
                set_={"value": statement.excluded.value,
                      "predictor_id": statement.excluded.predictor_id,
                      "recorded_at": statement.excluded.recorded_at}))
