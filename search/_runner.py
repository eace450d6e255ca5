"""Running a study: Optuna ask/tell over the space, accuracy on Ray workers, latency from the
device, every trial and the Pareto front in the database.

On a local device the device is the host, so the phases of DESIGN.md section 4 run one after
the other: calibrate (if the device has no predictor for the space and scale), search on
predicted latency with the accuracy workers in parallel, then verify the front by measuring it.

A run survives its runner. Optuna's trials live in the same database (RDB storage) and every
trial is told to Optuna before it is completed in the service's tables; a new run first
settles what a dead one left: a trial that Optuna has complete is completed from Optuna's
values, any other is failed with a reason and its parameters are asked again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import InterfaceError, OperationalError

from nanosd_nas.latency_models import (
    AgentError,
    CalibrationPlan,
    LatencyPredictor,
    MeasurementRecord,
    MeasurementStore,
    PredictorNotFound,
    calibrate,
    load_predictor,
    predictor_folder,
    profiler_for,
    project_home,
)
from nanosd_nas.search._execution import WORKER_DIED, Evaluation, WorkerPool, ray_session
from nanosd_nas.search._front import hypervolume, pareto_mask
from nanosd_nas.search._objectives import LATENCY_OBJECTIVE, SIZE_OBJECTIVES, Bounds, pipeline_ms
from nanosd_nas.search._samplers import distributions, initial_design, make_sampler
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.store import (
    ObjectiveValue,
    Store,
    StoreError,
    StoreUnavailable,
    TrialRecord,
    TrialStateError,
)
from nanosd_nas.spaces import ArchSpec, Space, load_space

log = logging.getLogger(__name__)


#: What losing the database raises: the store's own error, or Optuna's (its storage wraps
#: SQLAlchemy's, or lets it through).
DATABASE_LOST: tuple[type[BaseException], ...] = (
    StoreUnavailable, optuna.exceptions.StorageInternalError, OperationalError, InterfaceError)


class DeviceLost(ConnectionError):
    """The study's device stopped answering measurements (its agent killed, the network down)."""

#: ``(phase, done, total, facts)``; facts hold feasible, front size and hypervolume.
RunProgress = Callable[[str, int, int, dict[str, Any]], None]

#: Ends the fail reason of a trial whose parameters were asked again: such a trial does not
#: spend the study's budget (``Store.add_trial``'s ``rerun_mark``).
ASKED_AGAIN = "; asked again"
RERUN_REASON = "its runner stopped before the trial finished" + ASKED_AGAIN
#: How often one candidate is asked again after the worker evaluating it died; after that its
#: trial is failed for good (a candidate that kills every worker must not stall the study).
#: Counted in the store, across runners and runs.
MAX_REASKS = 2
#: How the fail reason of a failed measurement begins.
DEVICE_FAILED = "measuring it on device"
#: Fail reasons are cut to this length.
REASON_CHARS = 480
#: Consecutive failed measurements on the study's device before the run stops: the device is
#: taken for gone rather than failing the rest of the budget one trial at a time.
MAX_DEVICE_FAILURES = 3
#: Losing the database: how long to wait for it each time, and how often per run.
DATABASE_WAIT_S = 60.0
MAX_RECONNECTS = 5
#: How often a runner tells the store it still holds its study (``Store.hold_study``); a
#: worker takes over a running study not held for ``search._worker.ORPHANED_AFTER_S``.
HOLD_EVERY_S = 15.0
#: A running trial whose runner has not beaten its heartbeat for this long is taken for dead
#: (runners on other hosts; a dead process of this host is recognised at once).
STALE_AFTER_S = 120.0
#: An Optuna trial that no runner has named yet is a dead runner's after this long.
UNNAMED_AFTER_S = 10.0


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


def asked_again(reason: str | None) -> bool:
    """True for the fail reason of a trial whose parameters were asked again."""
    return bool(reason) and str(reason).endswith(ASKED_AGAIN)


def _runner_is_dead(runner_id: str | None) -> bool:
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


class StudyRunner:
    """Runs one stored study to its trial budget (see the module docstring).

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
        self._report = progress or (lambda phase, done, total, facts: None)
        self._held_at = -HOLD_EVERY_S
        self.calibration = calibration
        self.config = StudyConfig.from_document(store.get_study(name).config,
                                                source=f"study {name!r}")
        self.space: Space = load_space(self.config.space)
        self.directions = [o.direction for o in self.config.objectives]
        self.names = [o.name for o in self.config.objectives]
        self.bounds = {name: Bounds(b.min, b.max) for name, b in self.config.constraints.items()}
        self.predictor: LatencyPredictor | None = None
        self.predictor_id: int | None = None
        wants_latency = LATENCY_OBJECTIVE in self.names or LATENCY_OBJECTIVE in self.bounds
        #: Every trial measured on the device rather than predicted (``latency.source``).
        self.measures = wants_latency and self.config.latency.source == "measured"
        #: Set when a stop was requested (``Store.request_stop``): no new trial is asked.
        self.stopped = False
        #: This runner, as its trials name it (``HOST:PID``).
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}"
        self.holder = holder or self.runner_id
        #: Set when this runner lost the database mid-run: its own trials in flight are dead.
        self._lost_own_trials = False
        self._encoding: dict[str, optuna.distributions.BaseDistribution] = {}
        #: Measurements that failed on the device in a row.
        self._device_failures = 0

    # -- setup ----------------------------------------------------------------------------

    def progress(self, phase: str, done: int, total: int, facts: dict[str, Any]) -> None:
        """Report progress (to the display), and hold the study while at it: every phase of
        a run reports often, calibration and bank building included."""
        self._hold()
        self._report(phase, done, total, facts)

    def _hold(self) -> None:
        """Tell the store this runner still holds the study, at most every
        :data:`HOLD_EVERY_S`."""
        now = time.monotonic()
        if now - self._held_at >= HOLD_EVERY_S:
            self.store.hold_study(self.name, self.holder)
            self._held_at = now

    def optuna_study(self) -> optuna.Study:
        """The study's Optuna study (created on first use), its sampler seeded with the
        study's seed plus the trials it already has: a seeded sampler rebuilt by a resumed run
        would otherwise replay the draws of the first (random search asking the same members
        again)."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=self.name, storage=self.store.optuna_storage(),
            directions=self.directions,
            sampler=make_sampler(self.config.sampler, self.config.seed), load_if_exists=True)
        asked = len(study.get_trials(deepcopy=False))
        if asked:
            study.sampler = make_sampler(self.config.sampler,
                                         (self.config.seed + asked) % 2**32)
        self._encoding = self._encoding_of(study)
        return study

    def _encoding_of(self, study: optuna.Study,
                     ) -> dict[str, optuna.distributions.BaseDistribution]:
        """Choices as ordinal integers; a study begun with categorical choices (by an earlier
        build) keeps them, since Optuna refuses a parameter that changes its kind."""
        names = [d.name for d in self.space.dimensions]
        for trial in study.get_trials(deepcopy=False):
            if any(isinstance(d, optuna.distributions.CategoricalDistribution)
                   for d in trial.distributions.values()):
                return {n: optuna.distributions.CategoricalDistribution(list(range(count)))
                        for n, count in zip(names, self.space.cardinalities, strict=True)}
            if trial.distributions:
                break
        return dict(distributions(names, self.space.cardinalities))

    def _distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return self._encoding

    def _seed_initial_design(self, study: optuna.Study) -> int:
        """Queue the study's initial design (once per study, whichever runner comes first);
        returns how many trials were queued."""
        if self.config.design == "none":
            return 0
        design = initial_design(self.space.cardinalities, self.config.n_trials,
                                self.config.seed)
        names = [d.name for d in self.space.dimensions]
        with self.store.exclusive(f"initial design of {self.name}"):
            if "initial_design" in study.user_attrs:
                return 0  # queued by an earlier runner
            asked = {tuple(t.params.get(n) for n in names)
                     for t in study.get_trials(deepcopy=False)}
            if not asked <= set(design):
                return 0  # a study begun before initial designs: it goes on as it was
            # Whatever a runner that died half-way through left queued is not queued twice.
            missing = [member for member in design if member not in asked]
            for member in missing:
                study.enqueue_trial(dict(zip(names, member, strict=True)))
            study.set_user_attr("initial_design", {"kind": self.config.design,
                                                   "trials": len(design)})
        return len(missing)

    def _latency_model(self) -> None:
        """Load the device's predictor for the space, calibrating it first if there is none."""
        config = self.config
        if LATENCY_OBJECTIVE not in self.names and LATENCY_OBJECTIVE not in self.bounds:
            return
        if self.measures:
            return
        try:
            self.predictor = load_predictor(config.device, self.space, config.scale)
        except PredictorNotFound:
            profiler = profiler_for(config.device)
            result = calibrate(self.space, config.scale, profiler, plan=self.calibration,
                               store=MeasurementStore(),
                               on_progress=lambda p, d, t: self.progress(f"calibrate: {p}", d,
                                                                         t, {}))
            folder = predictor_folder(config.device, self.space, config.scale)
            result.predictor.save(folder)
            self.predictor = result.predictor
        # The calibration's measurements (the file store's) move into the database too.
        self.store.import_measurements(MeasurementStore().records(config.device))
        folder = predictor_folder(config.device, self.space, config.scale)
        self.predictor_id = self.store.record_predictor(
            device=config.device, space=self.space.name, space_digest=self.space.digest,
            scale=config.scale, version=str(self.predictor.metadata.get("created", "1")),
            statistic=str(self.predictor.metadata.get("statistic")),
            held_out=self.predictor.metadata.get("held_out", {}), path=str(folder)).id

    def _check_feasible_at_all(self) -> None:
        """Constraints that no member of the space can meet are the user's mistake."""
        steps = self.config.pipeline.steps
        for name, bounds in self.bounds.items():
            if name in SIZE_OBJECTIVES:
                smallest, largest = (SIZE_OBJECTIVES[name](self.space.spec(c, self.config.scale),
                                                           steps)
                                     for c in self.space.extremes())
                low, high = min(smallest, largest), max(smallest, largest)
            elif name == LATENCY_OBJECTIVE and self.predictor is not None:
                latencies = self._predicted_latency(np.array(list(self.space.extremes())))
                low, high = float(latencies.min()), float(latencies.max())
            else:
                continue
            if (bounds.high is not None and low > bounds.high) or (
                    bounds.low is not None and high < bounds.low):
                raise ValueError(f"constraint {name} in [{bounds.low}, {bounds.high}] cannot be "
                                 f"met: the space {self.space.name!r} at {self.config.scale} "
                                 f"ranges over {low:.3g}..{high:.3g}")

    def _predicted_latency(self, choices: np.ndarray) -> np.ndarray:
        assert self.predictor is not None
        prediction = self.predictor.predict_choices(self.space, choices)
        return np.asarray(pipeline_ms(prediction.mean, self.config.pipeline.steps))

    # -- recovery -------------------------------------------------------------------------

    def _recover(self, study: optuna.Study) -> int:
        """Settle what dead runners left, leaving live runners' trials alone; returns how many
        trials are asked again.

        A stored trial still ``running`` belongs to a dead runner when that runner was a
        process of this host that no longer exists, or when its heartbeat is older than
        :data:`STALE_AFTER_S` (a runner elsewhere). Optuna's side follows the store: a trial
        complete there is told, one failed for a dead runner is failed and asked again; one
        Optuna handed out but the store never saw is asked again once it is that old.
        """
        for held in self.store.list_trials(self.name, state="running"):
            if self._is_dead(held.worker) or _age_s(held.heartbeat_at) > STALE_AFTER_S:
                with contextlib.suppress(TrialStateError):  # another runner settled it first
                    self.store.fail_trial(held.id, RERUN_REASON)
        by_number = {t.optuna_trial_number: t for t in self.store.list_trials(self.name)}
        again = 0
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            stored = by_number.get(frozen.number)
            if stored is not None and stored.state == "running":
                continue  # a live runner's
            if stored is None and not self._orphaned(frozen):
                continue  # just asked by a live runner, about to be stored
            trial = optuna.Trial(study, frozen._trial_id)
            try:
                if stored is not None and stored.state == "complete":
                    self._tell(study, trial, stored)
                    continue
                study.tell(trial, state=TrialState.FAIL)
            except (ValueError, RuntimeError):  # told meanwhile by the runner that holds it
                continue
            if stored is None or asked_again(stored.fail_reason):
                study.enqueue_trial(dict(frozen.params))
                again += 1
        return again

    def _is_dead(self, runner_id: str | None) -> bool:
        """A dead runner's, or this runner's own after it lost the database (what it had in
        flight then is gone with its Ray session)."""
        return _runner_is_dead(runner_id) or (self._lost_own_trials
                                              and runner_id == self.runner_id)

    def _orphaned(self, frozen: optuna.trial.FrozenTrial) -> bool:
        """An Optuna trial the store never saw: its runner (named in the trial right after the
        ask) is dead, or it is too old for a live runner to be still storing it."""
        age = _age_s(frozen.datetime_start) if frozen.datetime_start else float("inf")
        holder = frozen.user_attrs.get("nas_runner")
        if holder is None:  # died within the ask itself
            return age > UNNAMED_AFTER_S
        return self._is_dead(str(holder)) or age > STALE_AFTER_S

    # -- one trial ------------------------------------------------------------------------

    def _start(self, study: optuna.Study,
               ) -> tuple[optuna.Trial, TrialRecord, ArchSpec, dict[str, Any]] | None:
        """Ask Optuna for a trial and store it; None when the study's budget is spent (other
        runners of the same study may have taken the last trials)."""
        trial = study.ask(self._distributions())
        trial.set_user_attr("nas_runner", self.runner_id)  # whose it is, should the runner die now
        choices = tuple(int(trial.params[d.name]) for d in self.space.dimensions)
        spec = self.space.spec(choices, self.config.scale)
        spec_id = self.store.upsert_architecture(spec)
        record = self.store.add_trial(self.name, params=dict(trial.params), spec_id=spec_id,
                                      worker=self.runner_id,
                                      optuna_trial_number=trial.number,
                                      budget=self.config.n_trials, rerun_mark=ASKED_AGAIN)
        if record is None:
            trial.set_user_attr("nas_not_needed", "the study's budget was spent meanwhile")
            study.tell(trial, state=TrialState.FAIL)
            return None
        values: dict[str, ObjectiveValue] = {
            name: ObjectiveValue(function(spec, self.config.pipeline.steps), "computed")
            for name, function in SIZE_OBJECTIVES.items()
        }
        if self.predictor is not None:
            latency = float(self._predicted_latency(np.array([choices]))[0])
            values[LATENCY_OBJECTIVE] = ObjectiveValue(latency, "predicted", self.predictor_id)
        return trial, record, spec, values

    def _constraints(self, values: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, bounds in self.bounds.items():
            if bounds.high is not None:
                out[f"{name}<={bounds.high:g}"] = values[name] - bounds.high
            if bounds.low is not None:
                out[f"{name}>={bounds.low:g}"] = bounds.low - values[name]
        return out

    def _may_ask_again(self, record: TrialRecord, cause: str, limit: int) -> bool:
        """Whether the candidate of ``record`` may be asked again after failing for ``cause``
        (the start of its reason): not once ``limit`` of its trials failed so (the store
        counts, whichever runner and run they were)."""
        earlier = sum(t.spec_id == record.spec_id and str(t.fail_reason).startswith(cause)
                      for t in self.store.list_trials(self.name, state="failed"))
        return earlier < limit

    def _fail(self, study: optuna.Study, trial: optuna.Trial, record: TrialRecord,
              reason: str, *, worker: str | None = None, again: bool = False) -> bool:
        """Fail one trial in the store, then in Optuna; with ``again`` its parameters are
        asked again and it does not spend the budget. Returns ``again``.

        The store goes first: a runner that dies between the two leaves a trial that the next
        run's recovery settles from the store (and asks again if the store says so).
        """
        if again:
            reason = reason[:REASON_CHARS - len(ASKED_AGAIN)] + ASKED_AGAIN
        self.store.fail_trial(record.id, reason, worker=worker)
        try:
            study.tell(trial, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another runner's recovery settled it first
            return again
        if again:
            study.enqueue_trial(dict(trial.params))
        log.warning("trial %d failed: %s", record.number, reason)
        return again

    def _finish(self, study: optuna.Study, trial: optuna.Trial, record: TrialRecord,
                values: dict[str, ObjectiveValue], evaluation: Evaluation | None) -> bool:
        """Complete (or fail) one trial in the store, then tell Optuna. True if the trial's
        parameters are to be asked again (its worker died), so it spent no budget."""
        # The trial's worker becomes the Ray worker that evaluated it (its node), in the same
        # transaction as its outcome; without one it stays the runner's host.
        worker = evaluation.node if evaluation is not None else None
        if evaluation is not None and evaluation.error is not None:
            # The worker, not the candidate: ask again, a bounded number of times.
            again = evaluation.lost and self._may_ask_again(record, WORKER_DIED, MAX_REASKS)
            return self._fail(study, trial, record, evaluation.error, worker=worker,
                              again=again)
        if evaluation is not None and evaluation.objectives is not None:
            values = {**values, **{k: ObjectiveValue(v, "measured")
                                   for k, v in evaluation.objectives.items()}}
        plain = {k: v.value for k, v in values.items()}
        missing = [n for n in [*self.names, *self.bounds] if n not in plain]
        if missing:
            reason = f"the evaluator gave no {', '.join(missing)} (it gave {sorted(plain)})"
            return self._fail(study, trial, record, reason, worker=worker)
        stored = self.store.complete_trial(record.id, values,
                                           constraints=self._constraints(plain), worker=worker)
        self._tell(study, trial, stored)
        return False

    def _tell(self, study: optuna.Study, trial: optuna.Trial, stored: TrialRecord) -> None:
        plain = {v.name: float(v.value) for v in stored.values}
        plain.update({n: value for n in plain if (value := stored.value(n)) is not None})
        for key, value in self._constraints(plain).items():
            trial.set_constraint(key, value)
        trial.set_user_attr("nas_trial_id", stored.id)
        study.tell(trial, [plain[n] for n in self.names])

    # -- the front ------------------------------------------------------------------------

    def _reference(self, study: optuna.Study, first: dict[str, float]) -> list[float]:
        """The hypervolume reference point, fixed at the study's first completed trial: dB
        objectives at 0, size and latency 10% beyond the space's largest member, others a
        step beyond the first value."""
        if "reference_point" in study.user_attrs:
            return list(study.user_attrs["reference_point"])
        largest = self.space.spec(self.space.extremes()[1], self.config.scale)
        steps = self.config.pipeline.steps
        reference = []
        for name, direction in zip(self.names, self.directions, strict=True):
            if name in SIZE_OBJECTIVES:
                reference.append(1.1 * SIZE_OBJECTIVES[name](largest, steps))
            elif name == LATENCY_OBJECTIVE and self.predictor is not None:
                reference.append(1.1 * float(self._predicted_latency(
                    np.array([self.space.extremes()[1]]))[0]))
            elif direction == "maximize":
                reference.append(0.0 if name.endswith("_db") or name == "fidelity"
                                 else first[name] - max(abs(first[name]), 1.0))
            else:
                reference.append(first[name] + max(abs(first[name]), 1.0))
        study.set_user_attr("reference_point", reference)
        return reference

    def update_front(self, study: optuna.Study, *,
                     record: bool = True) -> tuple[int, int, float | None]:
        """Recompute the stored front from every complete feasible trial (and, if ``record``,
        append its hypervolume to the history); returns (feasible, front size, hypervolume)."""
        complete = self.store.list_trials(self.name, state="complete")
        feasible = [t for t in complete if t.feasible is not False]
        if not feasible:
            self.store.replace_front(self.name, [], seen_complete=len(complete))
            return 0, 0, None
        values = np.array([[t.value(n) for n in self.names] for t in feasible], dtype=float)
        mask = pareto_mask(values, self.directions)
        first = {n: float(values[0, i]) for i, n in enumerate(self.names)}
        volume = hypervolume(values[mask], self.directions, self._reference(study, first))
        self.store.replace_front(self.name, [t.id for t, m in zip(feasible, mask, strict=True)
                                             if m], hypervolume=volume if record else None,
                                 seen_complete=len(complete))
        return len(feasible), int(mask.sum()), volume

    # -- the run --------------------------------------------------------------------------

    def _budget(self) -> int:
        """Trials still to start: every trial counts (running ones too, whichever runner holds
        them) but those failed to be asked again, as ``Store.add_trial`` counts them."""
        trials = self.store.list_trials(self.name)
        taken = sum(t.state != "failed" or not asked_again(t.fail_reason) for t in trials)
        return max(0, self.config.n_trials - taken)

    def _needs_workers(self) -> bool:
        from_elsewhere = set(SIZE_OBJECTIVES) | {LATENCY_OBJECTIVE}
        return any(n not in from_elsewhere for n in [*self.names, *self.bounds])

    def run(self) -> RunSummary:
        """Run the study until its trial budget is spent (continuing an earlier run)."""
        started = time.perf_counter()
        # A stop asked for between a worker's claim and this point is kept: the search loop
        # sees it before the first trial.
        if self.store.get_study(self.name).status != "stopping":
            self.store.set_study_status(self.name, "running")
        self._hold()
        try:
            summary = self._run_reconnecting(started)
        except BaseException as error:
            reason = f"{type(error).__name__}: {error}"[:500] or type(error).__name__
            with contextlib.suppress(StoreError):  # the database may be what failed
                self._release_own_trials()
                self.store.set_study_status(self.name, "failed", reason=reason)
            raise
        if self.stopped:
            self.store.set_study_status(self.name, "stopped",
                                        reason=self.store.get_study(self.name).status_reason)
        elif not self.store.list_trials(self.name, state="running"):
            # With other runners on the study, the last one to finish completes it.
            self.store.set_study_status(self.name, "completed")
        return summary

    def _release_own_trials(self) -> None:
        """Fail this runner's trials still in flight, to be asked again: a run that failed
        abandons them, and they must not wait for the stale-trial timeout (the process may
        live on, a worker serving the next study). The next run's recovery settles Optuna's
        side from the store."""
        for held in self.store.list_trials(self.name, state="running"):
            if held.worker == self.runner_id:
                with contextlib.suppress(TrialStateError):
                    self.store.fail_trial(held.id, RERUN_REASON)

    def _run_reconnecting(self, started: float) -> RunSummary:
        """:meth:`_run`, started again when the database was lost and came back.

        Each transaction is whole or absent, so losing the database half-writes nothing; what
        this runner had in flight is failed and asked again by the next :meth:`_recover`, as a
        dead runner's would be. It waits :data:`DATABASE_WAIT_S` for the database each time,
        :data:`MAX_RECONNECTS` times per run, then stops with the reason.
        """
        for attempt in itertools.count(1):
            try:
                return self._run(started)
            except DATABASE_LOST as error:
                if not self._database_lost(error):
                    raise
                if attempt > MAX_RECONNECTS:
                    raise StoreUnavailable(f"lost the database {attempt} times in one run "
                                           f"(last: {_one_line(error)})") from error
                log.warning("study %s: lost the database (%s); waiting for it", self.name,
                            _one_line(error))
                self._wait_for_database(error, attempt)
                self._lost_own_trials = True
        raise AssertionError("unreachable")

    def _database_lost(self, error: BaseException) -> bool:
        """``error`` came from losing the database (a dropped connection, or a database that
        does not answer now), not from a statement it refused (a deadlock, a lock timeout,
        bad input): only the first is waited for."""
        cause: BaseException | None = error
        while cause is not None:
            if isinstance(cause, StoreUnavailable) or getattr(
                    cause, "connection_invalidated", False):
                return True
            cause = cause.__cause__ or cause.__context__
        try:
            self.store.ping()
        except StoreError:
            return True
        return False

    def _wait_for_database(self, error: BaseException, attempt: int) -> None:
        deadline = time.monotonic() + DATABASE_WAIT_S
        while True:
            self._report(f"database lost: reconnecting ({attempt} of {MAX_RECONNECTS})",
                         0, 1, {})
            try:
                self.store.ping()
                return
            except StoreError:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"lost the database at {self.store.display_url} and it did not come "
                        f"back within {DATABASE_WAIT_S:.0f} s ({_one_line(error)}); completed "
                        f"trials are kept: run 'nanosd-nas study run {self.name}' again once "
                        "it is back") from error
                time.sleep(1.0)

    def _run(self, started: float) -> RunSummary:
        study = self.optuna_study()
        self._recover(study)
        self._seed_initial_design(study)
        self._latency_model()
        self._check_feasible_at_all()
        if self._needs_workers():
            self._prepare_accuracy()
        total = self.config.n_trials
        if not self._needs_workers():  # sizes and latency come from here: no Ray at all
            self._search(study, None, total)
        else:
            with ray_session(self.ray_address, num_cpus=self.config.parallelism):
                pool = WorkerPool(self._pool_size(), self.config.accuracy.model_dump(),
                                  str(project_home().resolve()))
                self._search(study, pool, total)
        verified = 0
        for _ in range(3):  # measured values can move the front; measure newcomers, bounded
            measured = self._verify(study) if self._should_verify() and not self.stopped else 0
            # Measured values can change the front: a new point of history only then.
            feasible, front, volume = self.update_front(study, record=measured > 0)
            verified += measured
            if not measured:
                break
        trials = self.store.list_trials(self.name)
        return RunSummary(
            study=self.name, complete=sum(t.state == "complete" for t in trials),
            failed=sum(t.state == "failed" for t in trials), feasible=feasible,
            front_size=front, hypervolume=volume, seconds=time.perf_counter() - started,
            verified=verified)

    def _prepare_accuracy(self) -> None:
        """One-off evaluator work (the block bank) before workers start, so that workers do
        not distil the same entries twice."""
        from nanosd_nas.search.evaluators import make_evaluator

        evaluator = make_evaluator(self.config.accuracy)
        evaluator.prepare(self.space, self.config.scale,
                          lambda what, done, total: self.progress(what, done, total, {}))

    def _search(self, study: optuna.Study, pool: WorkerPool | None, total: int) -> None:
        running: dict[int, tuple[optuna.Trial, TrialRecord, ArchSpec,
                                 dict[str, ObjectiveValue]]] = {}
        budget = self._budget()
        facts: dict[str, Any] = {}
        self.progress("trials", total - budget, total, facts)
        while budget > 0 or running:
            if budget > 0 and self._stop_requested():
                log.info("study %s: stop requested; finishing %d trials in flight", self.name,
                         len(running))
                self.stopped, budget = True, 0
            while budget > 0 and (pool is None or pool.free > 0):
                started = self._start(study)
                if started is None:
                    budget = 0
                    break
                trial, record, spec, values = started
                budget -= 1
                if pool is None:  # one trial at a time; the outer loop looks for a stop
                    if self._settle(study, trial, record, spec, values, None):
                        budget += not self.stopped
                    facts = self._landed(study, total)
                    break
                running[record.id] = (trial, record, spec, values)
                pool.submit(record.id, spec.to_json())
            if pool is None:
                continue
            for evaluation in pool.collect(timeout=5.0):
                trial, record, spec, values = running.pop(evaluation.trial_id)
                # An evaluation error fails (and spends) its trial; the study goes on. A dead
                # worker's trial is asked again and gives its budget back.
                if self._settle(study, trial, record, spec, values, evaluation):
                    budget += not self.stopped
                facts = self._landed(study, total)
            if running:
                self.store.heartbeat([entry[1].id for entry in running.values()])
            self._hold()
        self.progress("trials", total - self._budget(), total, facts)

    def _settle(self, study: optuna.Study, trial: optuna.Trial, record: TrialRecord,
                spec: ArchSpec, values: dict[str, ObjectiveValue],
                evaluation: Evaluation | None) -> bool:
        """Measure a trial (when the study measures every trial) and finish it; True if its
        parameters were asked again (it spent no budget)."""
        if evaluation is None or evaluation.error is None:
            try:
                values = self._measured(spec, values)
            except StoreError:
                raise
            except Exception as error:  # a failed measurement fails its trial, with the reason
                return self._measurement_failed(study, trial, record, error)
            self._device_failures = 0
        return self._finish(study, trial, record, values, evaluation)

    def _device_is_gone(self, error: Exception) -> bool:
        """The device, not the model, failed the measurement: it did not answer, or it failed
        with a 5xx and does not answer now either (a model it cannot run fails with a 5xx
        while the agent stays up)."""
        if isinstance(error, ConnectionError | TimeoutError):
            return True
        if not (isinstance(error, AgentError) and error.status >= 500):
            return False
        profiler = profiler_for(self.config.device)
        try:
            profiler.fingerprint()
        except (ConnectionError, TimeoutError, AgentError):
            return True
        return False

    def _measurement_failed(self, study: optuna.Study, trial: optuna.Trial,
                            record: TrialRecord, error: Exception) -> bool:
        """Fail a trial whose measurement raised. A model the device refused or could not run
        fails for good; a device that went away (its agent killed, the network down) fails the
        trial and asks it again, and :data:`MAX_DEVICE_FAILURES` of those in a row stop the
        run; a refused token stops it at once. Nothing of the failed measurement is stored:
        :meth:`measure` stores a model's records only once every component is measured."""
        device = self.config.device
        reason = f"{DEVICE_FAILED} {device!r} failed: {_one_line(error)}"
        if isinstance(error, AgentError) and error.status in (401, 403):
            raise error  # the device's token: nothing any trial can do about it
        if not self._device_is_gone(error):  # the device answers: the model was the trouble
            return self._fail(study, trial, record, reason)
        self._device_failures += 1
        # A run stops after MAX_DEVICE_FAILURES in a row: a candidate cut off that often (a
        # run's worth) is failed for good, in case it is what brings the agent down.
        self._fail(study, trial, record, reason,
                   again=self._may_ask_again(record, DEVICE_FAILED, MAX_DEVICE_FAILURES))
        if self._device_failures >= MAX_DEVICE_FAILURES:
            raise DeviceLost(
                f"device {device!r} failed {self._device_failures} measurements in a row "
                f"(last: {error}); completed trials are kept: run 'nanosd-nas study run "
                f"{self.name}' again once the device answers")
        return True

    def _stop_requested(self) -> bool:
        return self.store.get_study(self.name).status == "stopping"

    def _landed(self, study: optuna.Study, total: int) -> dict[str, Any]:
        feasible, front, volume = self.update_front(study)
        facts = {"feasible": feasible, "front": front, "hypervolume": volume}
        self.progress("trials", total - self._budget(), total, facts)
        return facts

    # -- measured latency -----------------------------------------------------------------

    def _pool_size(self) -> int:
        """A local device is the host: while it measures, no worker may run, so a study that
        measures every trial on it evaluates one trial at a time."""
        from nanosd_nas.latency_models import DeviceRegistry

        if self.measures and DeviceRegistry().get(self.config.device).kind == "local":
            return 1
        return self.config.parallelism

    def _measured(self, spec: ArchSpec, values: dict[str, ObjectiveValue]
                  ) -> dict[str, ObjectiveValue]:
        """``values`` with the trial's latency measured on the device (when the study measures
        every trial; the runner measures one model at a time, so the device is never shared)."""
        if not self.measures:
            return values
        return {**values, LATENCY_OBJECTIVE: ObjectiveValue(self.measure(spec), "measured")}

    def measure(self, spec: ArchSpec) -> float:
        """The pipeline latency of ``spec`` measured on the study's device, in its statistic."""
        from nanosd_nas.spaces import build

        profiler = profiler_for(self.config.device)
        model = build(spec)
        inputs, modules = model.example_inputs(), model.components()
        stats = {c: profiler.measure_module(m, inputs[c], c) for c, m in modules.items()}
        self.store.import_measurements(
            MeasurementRecord(device=self.config.device, kind="model", key=spec.spec_id,
                              component=c, scale=self.config.scale, stats=s)
            for c, s in stats.items())
        per = {c: np.asarray(float(getattr(s, profiler.statistic))) for c, s in stats.items()}
        return float(pipeline_ms(per, self.config.pipeline.steps))

    # -- verification ---------------------------------------------------------------------

    def _should_verify(self) -> bool:
        return (self.config.latency.verify_front and self.predictor is not None
                and LATENCY_OBJECTIVE in self.names)

    def _verify(self, study: optuna.Study) -> int:
        """Measure the front's members on the device (nothing else runs now) and store the
        measured latency beside the predicted one."""

        front = [t for t in self.store.front(self.name)
                 if t.value(LATENCY_OBJECTIVE, "measured") is None]
        for i, trial in enumerate(front):
            self.progress("verify front", i, len(front), {})
            measured = self.measure(self.store.get_architecture(str(trial.spec_id)))
            self.store.add_values(trial.id, {LATENCY_OBJECTIVE: ObjectiveValue(measured,
                                                                               "measured")})
        self.progress("verify front", len(front), len(front), {})
        return len(front)
