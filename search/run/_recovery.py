"""A run survives its runner and its database: recovery settles what dead runners left, and
reconnection waits out a lost database and starts the run again.

Optuna's trials live in the same database and every trial is told to Optuna after it is
settled in the service's tables; a new run first settles what a dead one left: a trial that the
store has complete is told to Optuna from the store's values, any other is failed with a reason
and its parameters are asked again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import optuna
from sqlalchemy.exc import InterfaceError, OperationalError

from nanosd_nas.search.run._optuna_study import RUNNER_ATTR, OptunaStudy
from nanosd_nas.search.run._trials import RERUN_REASON, asked_again, one_line
from nanosd_nas.search.store import Store, StoreError, StoreUnavailable, TrialStateError

log = logging.getLogger(__name__)

#: What losing the database raises: the store's own error, or Optuna's (its storage wraps
#: SQLAlchemy's, or lets it through).
DATABASE_LOST: tuple[type[BaseException], ...] = (
    StoreUnavailable, optuna.exceptions.StorageInternalError, OperationalError, InterfaceError)
#: Losing the database: how long to wait for it each time (``NANOSD_NAS_DATABASE_WAIT_S``
#: overrides it), and how often per run.
DATABASE_WAIT_S = 60.0
DATABASE_WAIT_ENV = "NANOSD_NAS_DATABASE_WAIT_S"
MAX_RECONNECTS = 5
#: A running trial whose runner has not beaten its heartbeat for this long is taken for dead
#: (runners on other hosts; a dead process of this host is recognised at once).
STALE_AFTER_S = 120.0
#: An Optuna trial that no runner has named yet is a dead runner's after this long.
UNNAMED_AFTER_S = 10.0

T = TypeVar("T")


def database_wait_s() -> float:
    """Seconds a run waits for a lost database each time: :data:`DATABASE_WAIT_ENV`, else
    :data:`DATABASE_WAIT_S`.

    Raises:
        StoreError: the variable is not a number of seconds of at least 1 (read when a run
            starts, so that a mistake shows before anything is lost).
    """
    text = os.environ.get(DATABASE_WAIT_ENV)
    if text is None:
        return DATABASE_WAIT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 1.0 or seconds == float("inf"):
        raise StoreError(f"{DATABASE_WAIT_ENV}={text!r} must be a number of seconds of at "
                         "least 1")
    return seconds


def runner_is_dead(runner_id: str | None) -> bool:
    """True when ``runner_id`` (``HOST:PID``) is a process of this host that no longer runs."""
    host, _, pid = (runner_id or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _age_s(moment: datetime) -> float:
    if moment.tzinfo is None:  # Optuna's datetimes are naive local time
        return (datetime.now() - moment).total_seconds()
    return (datetime.now(UTC) - moment).total_seconds()


class Recovery:
    """Settles the trials of one study that dead runners left, leaving live runners' alone.

    Args:
        store: the service's database.
        name: the study.
        runner_id: this runner (``HOST:PID``).
    """

    def __init__(self, *, store: Store, name: str, runner_id: str) -> None:
        self.store = store
        self.name = name
        self.runner_id = runner_id
        #: Set when this runner lost the database mid-run: its own trials in flight then are
        #: dead (they went with its Ray session) until the next :meth:`recover` settles them.
        self.lost_own_trials = False

    def recover(self, optuna_study: OptunaStudy) -> int:
        """Settle what dead runners left; returns how many trials are asked again.

        A stored trial still ``running`` belongs to a dead runner when that runner was a
        process of this host that no longer exists, or when its heartbeat is older than
        :data:`STALE_AFTER_S` (a runner elsewhere). Optuna's side follows the store: a trial
        complete there is told, one failed for a dead runner is failed and asked again; one
        Optuna handed out but the store never saw is asked again once it is that old.
        """
        for held in self.store.list_trials(self.name, state="running"):
            if self.is_dead(held.worker) or _age_s(held.heartbeat_at) > STALE_AFTER_S:
                with contextlib.suppress(TrialStateError):  # another runner settled it first
                    self.store.fail_trial(held.id, RERUN_REASON)
        by_number = {t.optuna_trial_number: t for t in self.store.list_trials(self.name)}
        again = 0
        for frozen in optuna_study.running():
            stored = by_number.get(frozen.number)
            if stored is not None and stored.state == "running":
                continue  # a live runner's
            if stored is None and not self._orphaned(frozen):
                continue  # just asked by a live runner, about to be stored
            trial = optuna_study.trial(frozen)
            if stored is not None and stored.state == "complete":
                with contextlib.suppress(ValueError, RuntimeError):  # told meanwhile
                    optuna_study.tell_complete(trial, stored)
                continue
            if not optuna_study.tell_failed(trial):
                continue  # told meanwhile by the runner that holds it
            if stored is None or asked_again(stored.fail_reason):
                optuna_study.ask_again(frozen.params)
                again += 1
        self.lost_own_trials = False  # settled: this runner's later trials are live ones
        return again

    def settle_when_spent(self, optuna_study: OptunaStudy) -> int:
        """Fail every trial Optuna still holds ``RUNNING`` that the store never saw, once the
        study's budget is spent and the store has no trial running; returns how many.

        Such a trial was asked by a runner killed within its ask, too young for
        :meth:`recover` to call it dead. Nothing would ever ask it again (the budget is spent)
        and Optuna's readers would show it running for ever. A live runner asking now finds
        the budget spent and fails its own trial anyway (telling twice is harmless).
        """
        return self._settle_unstored(optuna_study, again=False, whose=lambda holder: True)

    def settle_when_stopped(self, optuna_study: OptunaStudy) -> int:
        """Fail the trials Optuna still holds ``RUNNING`` that the store never saw and that no
        live runner named (a runner killed within its ask, however young the trial), once a
        stopped study has no trial running; their parameters are asked again when the study
        resumes. Returns how many.

        A live runner still asking names its trial first, and one caught before it named it
        finds the trial finished and starts nothing (the study is stopping anyway).
        """
        return self._settle_unstored(optuna_study, again=True,
                                     whose=lambda holder: holder is None
                                     or self.is_dead(str(holder)))

    def _settle_unstored(self, optuna_study: OptunaStudy, *, again: bool,
                         whose: Callable[[object], bool]) -> int:
        stored = self.store.list_trials(self.name)
        if any(t.state == "running" for t in stored):
            return 0
        known = {t.optuna_trial_number for t in stored}
        settled = 0
        for frozen in optuna_study.running():
            if frozen.number in known or not whose(frozen.user_attrs.get(RUNNER_ATTR)):
                continue  # the store's (recover() settles those), or a live runner's
            trial = optuna_study.trial(frozen)
            with contextlib.suppress(ValueError, RuntimeError):  # told meanwhile
                trial.set_user_attr("nas_not_needed", "asked by a runner that died within "
                                    "its ask; " + ("asked again" if again else
                                                   "the budget was spent"))
            if optuna_study.tell_failed(trial):
                settled += 1
                if again and frozen.params:
                    optuna_study.ask_again(frozen.params)
        return settled

    def is_dead(self, runner_id: str | None) -> bool:
        """A dead runner's, or this runner's own after it lost the database."""
        return runner_is_dead(runner_id) or (self.lost_own_trials
                                             and runner_id == self.runner_id)

    def _orphaned(self, frozen: optuna.trial.FrozenTrial) -> bool:
        """An Optuna trial the store never saw: its runner (named in the trial right after the
        ask) is dead, or it is too old for a live runner to be still storing it."""
        age = _age_s(frozen.datetime_start) if frozen.datetime_start else float("inf")
        holder = frozen.user_attrs.get(RUNNER_ATTR)
        if holder is None:  # died within the ask itself
            return age > UNNAMED_AFTER_S
        return self.is_dead(str(holder)) or age > STALE_AFTER_S


def run_reconnecting(run: Callable[[], T], *, store: Store, name: str,
                     report: Callable[[str], None], on_lost: Callable[[], None]) -> T:
    """``run()``, started again when the database was lost and came back.

    Each transaction is whole or absent, so losing the database half-writes nothing; what the
    runner had in flight is failed and asked again by the next run's recovery, as a dead
    runner's would be (``on_lost`` is called before each new start). It waits
    :func:`database_wait_s` for the database each time, :data:`MAX_RECONNECTS` times per run,
    then stops with the reason (what it had in flight is then settled by the next run).

    Args:
        run: the run.
        store: the database to wait for.
        name: the study (for the messages).
        report: shows a line while waiting (the study cannot be held meanwhile).
        on_lost: called once the database is back, before ``run`` starts again.

    Raises:
        StoreUnavailable: the database did not come back, or was lost too often.
    """
    wait_s = database_wait_s()
    for attempt in itertools.count(1):
        try:
            return run()
        except DATABASE_LOST as error:
            if not _database_lost(store, error):
                raise
            if attempt > MAX_RECONNECTS:
                raise StoreUnavailable(f"lost the database {attempt} times in one run "
                                       f"(last: {one_line(error)})") from error
            log.warning("study %s: lost the database (%s); waiting for it", name,
                        one_line(error))
            _wait_for_database(store, name, error, attempt, report, wait_s)
            on_lost()
    raise AssertionError("unreachable")


def _database_lost(store: Store, error: BaseException) -> bool:
    """``error`` came from losing the database (a dropped connection, or a database that does
    not answer now), not from a statement it refused (a deadlock, a lock timeout, bad input):
    only the first is waited for."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, StoreUnavailable) or getattr(cause, "connection_invalidated",
                                                           False):
            return True
        cause = cause.__cause__ or cause.__context__
    try:
        store.ping()
    except StoreError:
        return True
    return False


def _wait_for_database(store: Store, name: str, error: BaseException, attempt: int,
                       report: Callable[[str], None], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        report(f"database lost: reconnecting ({attempt} of {MAX_RECONNECTS})")
        try:
            store.ping()
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"lost the database at {store.display_url} and it did not come back "
                    f"within {wait_s:.0f} s ({one_line(error)}); completed trials "
                    f"are kept: run 'nanosd-nas study run {name}' again once it is back"
                ) from error
            time.sleep(1.0)
