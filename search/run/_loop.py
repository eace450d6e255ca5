"""The search loop: ask and store trials while the pool has room, settle what it returns, keep
the front, until the budget is spent or a stop is asked for.

There is one loop for every study. Accuracy is evaluated on Ray workers (:class:`WorkerPool`);
a study whose values all come from the runner runs the same loop over a
:class:`SequentialPool`, one trial at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nanosd_nas.latency_models import project_home
from nanosd_nas.search._execution import (
    Evaluation,
    EvaluationPool,
    SequentialPool,
    WorkerPool,
    ray_session,
)
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.run._device import StudyDevice
from nanosd_nas.search.run._front_upkeep import FrontKeeper
from nanosd_nas.search.run._lease import StudyLease
from nanosd_nas.search.run._optuna_study import OptunaStudy
from nanosd_nas.search.run._trials import StartedTrial, TrialLifecycle
from nanosd_nas.search.run._values import latency_values
from nanosd_nas.search.store import ObjectiveValue, StoreError
from nanosd_nas.spaces import Space

log = logging.getLogger(__name__)

#: ``(phase, done, total, facts)``; facts hold feasible, front size and hypervolume.
RunProgress = Callable[[str, int, int, dict[str, Any]], None]
#: How long one look at the pool waits for an evaluation to finish.
COLLECT_TIMEOUT_S = 5.0


@contextmanager
def evaluation_pool(config: StudyConfig, space: Space, *, ray_address: str | None, size: int,
                    progress: Callable[[str, int, int], None]) -> Iterator[EvaluationPool]:
    """The pool a study's trials go through: Ray workers when they need the accuracy
    evaluator (its one-off work, such as the block bank, done first, so that workers do not
    distil the same entries twice), else a :class:`SequentialPool` and no Ray at all."""
    if not config.needs_accuracy:
        yield SequentialPool()
        return
    from nanosd_nas.search.evaluators import make_evaluator

    make_evaluator(config.accuracy).prepare(space, config.scale, progress)
    with ray_session(ray_address, num_cpus=config.parallelism):
        yield WorkerPool(size, config.accuracy.model_dump(), str(project_home().resolve()))


class SearchLoop:
    """Runs a study's trials to its budget.

    Args:
        config: the study.
        optuna_study: its Optuna study.
        trials: starts and settles its trials.
        device: measures them, when the study measures every trial.
        front: keeps the front as they land.
        lease: the runner's hold on the study, and where a stop request is seen.
        progress: called as trials land.
    """

    def __init__(self, *, config: StudyConfig, optuna_study: OptunaStudy,
                 trials: TrialLifecycle, device: StudyDevice, front: FrontKeeper,
                 lease: StudyLease, progress: RunProgress) -> None:
        self.config = config
        self.optuna = optuna_study
        self.trials = trials
        self.device = device
        self.front = front
        self.lease = lease
        self.progress = progress
        #: Set when a stop was requested (``Store.request_stop``): no new trial is asked.
        self.stopped = False

    def run(self, pool: EvaluationPool) -> None:
        """Start trials while ``pool`` has room and the budget lasts; settle each as it comes
        back. A trial asked again gives its budget back (unless the run is stopping)."""
        running: dict[int, StartedTrial] = {}
        total = self.config.n_trials
        budget = self.trials.budget()
        facts: dict[str, Any] = {}
        self.progress("trials", total - budget, total, facts)
        while budget > 0 or running:
            if budget > 0 and self.lease.stop_requested():
                log.info("study %s: stop requested; finishing %d trials in flight",
                         self.trials.name, len(running))
                self.stopped, budget = True, 0
            while budget > 0 and pool.free > 0:
                started = self.trials.start()
                if started is None:  # other runners took the last trials
                    budget = 0
                    break
                budget -= 1
                running[started.record.id] = started
                pool.submit(started.record.id, started.spec.to_json())
            for evaluation in pool.collect(timeout=COLLECT_TIMEOUT_S):
                # An evaluation error fails (and spends) its trial; the study goes on. A dead
                # worker's trial is asked again and gives its budget back.
                if self._settle(running.pop(evaluation.trial_id), evaluation):
                    budget += not self.stopped
                facts = self._landed(total)
            if running:
                self.trials.store.heartbeat([s.record.id for s in running.values()])
            self.lease.hold()
        self.progress("trials", total - self.trials.budget(), total, facts)

    def _settle(self, started: StartedTrial, evaluation: Evaluation) -> bool:
        """Measure a trial (when the study measures every trial) and finish it; True if its
        parameters were asked again (it spent no budget)."""
        values = started.values
        if evaluation.error is None:
            try:
                values = self._measured(started)
            except StoreError:
                raise
            except Exception as error:  # a failed measurement fails its trial, with the reason
                return self.device.failed(self.trials, started, error)
            self.device.measured()
        return self.trials.finish(started, values, evaluation)

    def _measured(self, started: StartedTrial) -> dict[str, ObjectiveValue]:
        """The trial's values with its latency measured on the device (when the study measures
        every trial; the runner measures one model at a time, so the device is never
        shared)."""
        if not self.config.measures_latency:
            return started.values
        latency = ObjectiveValue(self.device.measure(started.spec), "measured")
        return {**started.values, **latency_values(latency, started.spec, self.config.pipeline)}

    def _landed(self, total: int) -> dict[str, Any]:
        state = self.front.update(self.optuna)
        facts = {"feasible": state.feasible, "front": state.size,
                 "hypervolume": state.hypervolume}
        self.progress("trials", total - self.trials.budget(), total, facts)
        return facts
