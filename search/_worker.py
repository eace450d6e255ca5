"""The study worker: claims studies queued through the API and runs them, one at a time.

Any number of workers may share a database; :meth:`Store.claim_queued_study` hands each queued
study to exactly one of them. A study whose run fails is marked ``failed`` with the reason and
the worker goes on with the next. A study left ``running`` by a worker that died (its runner no
longer holds it) is taken over by the next free worker and continued.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from nanosd_nas.search.run import RunProgress, RunSummary, StudyRunner
from nanosd_nas.search.store import Store, StoreError, StudyRecord
from nanosd_nas.search.store._studies import QUEUE_HOLDER

log = logging.getLogger(__name__)

#: A running study that its runner has not held for this long is taken over (a runner holds
#: its study every ``search.run.HOLD_EVERY_S`` through every phase of a run).
ORPHANED_AFTER_S = 300.0


@dataclass(frozen=True)
class WorkerOutcome:
    """What became of one claimed study."""

    study: str
    status: str  # completed, stopped or failed
    summary: RunSummary | None
    reason: str | None = None
    #: How long the worker ran the study.
    seconds: float = 0.0

    def line(self) -> str:
        """One line for a log: the study, its status, its trials and how long it took."""
        trials = ("" if self.summary is None else
                  f", {self.summary.complete} trials complete, {self.summary.failed} failed")
        reason = f" ({self.reason})" if self.reason else ""
        return f"{self.study}: {self.status}{reason}{trials}, {self.seconds:.0f} s"


class StudyWorker:
    """Claims and runs queued studies.

    Args:
        store: the service's database.
        ray_address: a Ray cluster for the studies' evaluations; local Ray if None.
        progress: the runner's progress callback, for a display.
        on_claim: called with each study as it is claimed.
        on_outcome: called with each study's outcome as it ends.
        orphaned_after_s: take over a running study not held by its runner for this long.
    """

    def __init__(self, store: Store, *, ray_address: str | None = None,
                 progress: RunProgress | None = None,
                 on_claim: Callable[[StudyRecord], None] | None = None,
                 on_outcome: Callable[[WorkerOutcome], None] | None = None,
                 orphaned_after_s: float = ORPHANED_AFTER_S) -> None:
        self.store = store
        self.ray_address = ray_address
        self.progress = progress
        self.on_claim = on_claim or (lambda record: None)
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.orphaned_after_s = orphaned_after_s
        self._interrupted = False
        self._runner: StudyRunner | None = None

    def interrupt(self, reason: str) -> None:
        """Stop gracefully (safe in a signal handler): the study running now lets its trials
        in flight land and is left ``stopped`` with ``reason``, and no other is claimed."""
        self._interrupted = True
        runner = self._runner
        if runner is not None:
            runner.interrupt(reason)

    def run_next(self) -> WorkerOutcome | None:
        """Claim the oldest queued (or orphaned) study and run it to its end; None if nothing
        waits."""
        holder = f"{QUEUE_HOLDER}{socket.gethostname()}:{os.getpid()}"
        record = self.store.claim_queued_study(runner=holder,
                                               orphaned_after_s=self.orphaned_after_s)
        if record is None:
            return None
        self.on_claim(record)
        log.info("running queued study %s", record.name)
        started = time.monotonic()
        try:
            outcome = self._run(record.name, holder)
        finally:
            self._runner = None
        outcome = replace(outcome, seconds=time.monotonic() - started)
        log.info("study %s", outcome.line())
        self.on_outcome(outcome)
        return outcome

    def _run(self, name: str, holder: str) -> WorkerOutcome:
        try:
            self._runner = runner = StudyRunner(self.store, name, ray_address=self.ray_address,
                                                progress=self.progress, holder=holder)
            if self._interrupted:  # between the claim and now
                runner.interrupt("interrupted before the study began")
            summary = runner.run()
        except Exception as error:  # the study fails visibly; the worker serves the next
            reason = f"{type(error).__name__}: {error}"[:500]
            if self.store.get_study(name).status not in ("failed", "stopped"):
                self.store.set_study_status(name, "failed", reason=reason)
            log.warning("study %s failed: %s", name, reason)
            return WorkerOutcome(name, "failed", None, reason)
        record = self.store.get_study(name)
        why = record.status_reason if record.status == "stopped" else None
        return WorkerOutcome(name, record.status, summary, why)

    def serve(self, *, once: bool = False, poll_s: float = 2.0,
              max_studies: int | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> list[WorkerOutcome]:
        """Run queued studies as they arrive.

        Args:
            once: return when no study waits (instead of polling for more).
            poll_s: seconds between looks at the queue while it is empty.
            max_studies: return after this many studies.
            should_stop: polled between studies; True ends the loop (as :meth:`interrupt`
                does, but after the study running now).
        """
        outcomes: list[WorkerOutcome] = []
        while not (self._interrupted or should_stop()):
            if max_studies is not None and len(outcomes) >= max_studies:
                break
            try:
                outcome = self.run_next()
            except StoreError as error:  # the database is away: keep polling until it is back
                log.warning("worker: %s; trying again in %.0f s", error, poll_s)
                if once:
                    raise
                time.sleep(poll_s)
                continue
            if outcome is not None:
                outcomes.append(outcome)
                continue
            if once:
                break
            time.sleep(poll_s)
        return outcomes
