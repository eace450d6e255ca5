"""Running a study: Optuna ask/tell over the space, accuracy on Ray workers, latency from the
device, every trial and the Pareto front in the database.

A run goes through its phases in order: recover what dead runners left, queue the initial
design, get the latency model (calibrating the device if it has no predictor for the space and
scale), search on predicted latency with the accuracy workers in parallel, then verify the front
by measuring it. Each phase is a module of this package; the runner only
puts them together.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from nanosd_nas.latency_models import CalibrationPlan
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.run._device import StudyDevice
from nanosd_nas.search.run._front_upkeep import FrontKeeper, FrontState
from nanosd_nas.search.run._latency import ensure_latency_model
from nanosd_nas.search.run._lease import StudyLease
from nanosd_nas.search.run._loop import RunProgress, SearchLoop, evaluation_pool
from nanosd_nas.search.run._optuna_study import OptunaStudy
from nanosd_nas.search.run._recovery import DATABASE_LOST, Recovery, run_reconnecting
from nanosd_nas.search.run._trials import TrialLifecycle, release_trials
from nanosd_nas.search.run._values import SpaceValues
from nanosd_nas.search.store import Store, StoreError
from nanosd_nas.spaces import Space


@dataclass
class RunSummary:
    """What a run left in the database."""

    study: str
    complete: int
    failed: int
    feasible: int
    front_size: int
    hypervolume: float | None
    seconds: float
    verified: int = 0
    #: Front members whose latency objective is only predicted: verification is off
    #: (``verify_front``) or the run was stopped before it (0 without a latency objective).
    unmeasured: int = 0
    #: The run was stopped (a stop request, or the runner interrupted) before its budget.
    stopped: bool = False


class StudyRunner:
    """Runs one stored study to its trial budget (see the module docstring).

    A run survives its runner: killed at any moment and started again, it continues; no
    completed trial is lost or repeated. Several runners may share one study.

    Args:
        store: the service's database (Optuna shares it).
        name: the study's name.
        ray_address: a Ray cluster; a local Ray on loopback when None.
        progress: called as trials land.
        calibration: how to calibrate a device that has no predictor for the space.
        holder: the name the runner holds the study under (``Store.hold_study``); a study
            worker's starts with ``queue:``. This runner's ``HOST:PID`` if None.
    """

    def __init__(self, store: Store, name: str, *, ray_address: str | None = None,
                 progress: RunProgress | None = None,
                 calibration: CalibrationPlan | None = None,
                 holder: str | None = None) -> None:
        self.store = store
        self.name = name
        self.ray_address = ray_address
        self.calibration = calibration
        self.config = StudyConfig.from_document(store.get_study(name).config,
                                                source=f"study {name!r}")
        self.space: Space = self.config.load_space()
        #: This runner, as its trials name it (``HOST:PID``).
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}"
        self.lease = StudyLease(store=store, name=name, holder=holder or self.runner_id)
        self.device = StudyDevice(store=store, study=name, config=self.config)
        self._report = progress or (lambda phase, done, total, facts: None)
        self._recovery = Recovery(store=store, name=name, runner_id=self.runner_id)
        #: Set when a stop was requested (``Store.request_stop``): no new trial was asked.
        self.stopped = False
        self._optuna: OptunaStudy | None = None

    def interrupt(self, reason: str) -> None:
        """Stop the run as a stop request does (safe in a signal handler): no new trial is
        asked, the trials in flight land, and the study ends ``stopped`` with ``reason``, to
        be resumed by the next run."""
        self.lease.interrupt(reason)

    def progress(self, phase: str, done: int, total: int, facts: dict[str, Any]) -> None:
        """Report progress (to the display), and hold the study while at it: every phase of
        a run reports often, calibration and bank building included."""
        self.lease.hold()
        self._report(phase, done, total, facts)

    def run(self) -> RunSummary:
        """Run the study until its trial budget is spent (continuing an earlier run)."""
        started = time.perf_counter()
        self.lease.begin()
        try:
            summary = run_reconnecting(
                lambda: self._phases(started), store=self.store, name=self.name,
                report=lambda line: self._report(line, 0, 1, {}), on_lost=self._lost)
        except BaseException as error:
            with contextlib.suppress(StoreError):  # the database may be what failed
                release_trials(self.store, self.name, self.runner_id)
                if isinstance(error, KeyboardInterrupt):
                    self._abandon()
                else:
                    self.lease.fail(error)
            raise
        self.lease.end(stopped=self.stopped)
        return summary

    def _abandon(self) -> None:
        """Aborted (a second Ctrl-C): the trials this runner had in flight, released in the
        store, are failed in Optuna too and asked again, and the study is left ``stopped``,
        to be resumed."""
        if self._optuna is not None:
            self._recovery.lost_own_trials = True  # its own trials are dead ones now
            with contextlib.suppress(*DATABASE_LOST):
                self._recovery.recover(self._optuna)
        self.lease.stop("aborted (interrupted twice); the trials in flight are asked again "
                        "when the study resumes")

    def _lost(self) -> None:
        """The database came back: what this runner had in flight is gone (its Ray session
        with it), and the next recovery settles it as a dead runner's."""
        self._recovery.lost_own_trials = True

    def _phases(self, started: float) -> RunSummary:
        """recover -> initial design -> latency -> search loop -> verify."""
        optuna_study = self._optuna = OptunaStudy.open(self.store, self.name, self.config,
                                                       self.space, runner_id=self.runner_id)
        self._recovery.recover(optuna_study)
        optuna_study.seed_initial_design(self.store)
        values = self._latency()
        trials = TrialLifecycle(store=self.store, name=self.name, config=self.config,
                                optuna_study=optuna_study, values=values,
                                runner_id=self.runner_id)
        front = FrontKeeper(store=self.store, name=self.name, config=self.config,
                            values=values)
        self._search(optuna_study, trials, front)
        # Once more: a runner killed within Optuna's ask left a trial that only its age gives
        # away, and it may have been too young for the first pass.
        self._recovery.recover(optuna_study)
        if self.stopped:
            self._recovery.settle_when_stopped(optuna_study)
        elif trials.budget() == 0:
            self._recovery.settle_when_spent(optuna_study)
        state, verified = front.verify(optuna_study, self.device, self._phase_progress,
                                       stopped=self.stopped)
        return self._summary(state, verified, started, unmeasured=front.unmeasured())

    def _latency(self) -> SpaceValues:
        """The latency model (calibrating the device first if it has none), and the check
        that the constraints can be met at all."""
        latency = ensure_latency_model(
            self.store, self.config, self.space, plan=self.calibration,
            on_progress=lambda phase, done, total: self.progress(f"calibrate: {phase}", done,
                                                                 total, {}),
            waiting=self.lease.kept)
        values = SpaceValues(config=self.config, space=self.space, latency=latency)
        values.check_feasible_at_all()
        return values

    def _search(self, optuna_study: OptunaStudy, trials: TrialLifecycle,
                front: FrontKeeper) -> None:
        loop = SearchLoop(config=self.config, optuna_study=optuna_study, trials=trials,
                          device=self.device, front=front, lease=self.lease,
                          progress=self.progress)
        with evaluation_pool(self.config, self.space, ray_address=self.ray_address,
                             size=self._pool_size(), progress=self._phase_progress) as pool:
            loop.run(pool)
        self.stopped = loop.stopped

    def _pool_size(self) -> int:
        """A local device is the host: while it measures, no worker may run, so a study that
        measures every trial on it evaluates one trial at a time."""
        if self.config.measures_latency and self.device.is_local():
            return 1
        return self.config.parallelism

    def _phase_progress(self, phase: str, done: int, total: int) -> None:
        self.progress(phase, done, total, {})

    def _summary(self, front: FrontState, verified: int, started: float, *,
                 unmeasured: int = 0) -> RunSummary:
        trials = self.store.list_trials(self.name)
        return RunSummary(
            study=self.name, complete=sum(t.state == "complete" for t in trials),
            failed=sum(t.state == "failed" for t in trials), feasible=front.feasible,
            front_size=front.size, hypervolume=front.hypervolume,
            seconds=time.perf_counter() - started, verified=verified, unmeasured=unmeasured,
            stopped=self.stopped)
