"""The study lease: a runner holds its study while it runs, so that a study worker takes over
only a study whose runner is gone (``Store.claim_queued_study``), and it leaves the study's
status behind when the run ends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from nanosd_nas.search.store import Store, StoreError

log = logging.getLogger(__name__)

#: How often a runner tells the store it still holds its study (``Store.hold_study``); a
#: worker takes over a running study not held for ``search._worker.ORPHANED_AFTER_S``.
HOLD_EVERY_S = 15.0


class StudyLease:
    """One runner's hold on one study, and the study's status through the run.

    Args:
        store: the service's database.
        name: the study.
        holder: the name the runner holds the study under (a study worker's starts with
            ``queue:``).

    :meth:`hold` may be called from any thread; the rest from the runner's.
    """

    def __init__(self, *, store: Store, name: str, holder: str) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self._held_at = -HOLD_EVERY_S
        self._lock = threading.Lock()
        #: Why this runner was interrupted (SIGINT, SIGTERM), until the store is told.
        self._interrupted: str | None = None

    def begin(self) -> None:
        """Mark the study running and hold it. A stop asked for between a worker's claim and
        now is kept: the search loop sees it before the first trial."""
        if self.store.get_study(self.name).status != "stopping":
            self.store.set_study_status(self.name, "running")
        self.hold()

    def hold(self) -> None:
        """Tell the store this runner still holds the study, at most every
        :data:`HOLD_EVERY_S`."""
        with self._lock:
            now = time.monotonic()
            if now - self._held_at < HOLD_EVERY_S:
                return
            self.store.hold_study(self.name, self.holder)
            self._held_at = now

    @contextmanager
    def kept(self) -> Iterator[None]:
        """Hold the study from a thread of its own while the block runs: for a block that may
        wait long without reporting progress (a lock another runner holds)."""
        done = threading.Event()

        def keep() -> None:
            while not done.wait(HOLD_EVERY_S / 3):
                try:
                    self.hold()
                except StoreError as error:  # the runner's own calls meet the outage too
                    log.debug("study %s: could not hold it: %s", self.name, error)

        keeper = threading.Thread(target=keep, name=f"hold {self.name}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

    def interrupt(self, reason: str) -> None:
        """Stop the study as ``Store.request_stop`` does, from a signal handler: only a flag is
        set here (the handler may run in the middle of a database call); the next
        :meth:`stop_requested` tells the store."""
        self._interrupted = reason

    def stop_requested(self) -> bool:
        """Whether someone asked the study to stop (``Store.request_stop``), this runner's own
        interruption included."""
        if self._interrupted is not None:
            self.store.request_stop(self.name, reason=self._interrupted)
            self._interrupted = None
        return self.store.get_study(self.name).status == "stopping"

    def end(self, *, stopped: bool) -> None:
        """Leave the study ``stopped`` (with the stop's reason) or, when no runner has a trial
        in flight any more, ``completed``: with other runners on the study, the last one to
        finish completes it."""
        if stopped:
            self.store.set_study_status(self.name, "stopped",
                                        reason=self.store.get_study(self.name).status_reason)
        elif not self.store.list_trials(self.name, state="running"):
            self.store.set_study_status(self.name, "completed")

    def stop(self, reason: str) -> None:
        """Leave the study ``stopped`` at once, saying why."""
        self.store.set_study_status(self.name, "stopped", reason=reason)

    def fail(self, error: BaseException) -> None:
        """Leave the study ``failed``, saying why."""
        reason = f"{type(error).__name__}: {error}"[:500] or type(error).__name__
        self.store.set_study_status(self.name, "failed", reason=reason)
