"""A trial's life: asked of Optuna and stored, then completed or failed, always in the store
first and in Optuna second.

Every outcome goes to the store first: a runner that dies between the two leaves a trial that
the next run's recovery settles from the store (told to Optuna if the store has it complete,
asked again if the store says so).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import optuna

from nanosd_nas.search._execution import WORKER_DIED, Evaluation
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.run._optuna_study import OptunaStudy
from nanosd_nas.search.run._values import SpaceValues
from nanosd_nas.search.store import ObjectiveValue, Store, TrialRecord, TrialStateError
from nanosd_nas.spaces import ArchSpec

log = logging.getLogger(__name__)

#: Ends the fail reason of a trial whose parameters were asked again: such a trial does not
#: spend the study's budget (``Store.add_trial``'s ``rerun_mark``).
ASKED_AGAIN = "; asked again"
RERUN_REASON = "its runner stopped before the trial finished" + ASKED_AGAIN
#: How often one candidate is asked again after the worker evaluating it died; after that its
#: trial is failed for good (a candidate that kills every worker must not stall the study).
#: Counted in the store, across runners and runs.
MAX_REASKS = 2
#: Fail reasons are cut to this length.
REASON_CHARS = 480


def asked_again(reason: str | None) -> bool:
    """True for the fail reason of a trial whose parameters were asked again."""
    return bool(reason) and str(reason).endswith(ASKED_AGAIN)


def one_line(error: BaseException) -> str:
    """``error`` as one short line: its type, then its message."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


@dataclass(frozen=True)
class StartedTrial:
    """A trial asked and stored: Optuna's trial, the store's, the member, and the values the
    runner computed for it (sizes, predicted latency)."""

    trial: optuna.Trial
    record: TrialRecord
    spec: ArchSpec
    values: dict[str, ObjectiveValue]


class TrialLifecycle:
    """Starts, completes and fails a study's trials.

    Args:
        store: the service's database.
        name: the study.
        config: the study's configuration.
        optuna_study: its Optuna study.
        values: what the runner computes for a trial itself.
        runner_id: the runner, as its trials name it (``HOST:PID``).
    """

    def __init__(self, *, store: Store, name: str, config: StudyConfig,
                 optuna_study: OptunaStudy, values: SpaceValues, runner_id: str) -> None:
        self.store = store
        self.name = name
        self.config = config
        self.optuna = optuna_study
        self.values = values
        self.runner_id = runner_id

    def budget(self) -> int:
        """Trials still to start: every trial counts (running ones too, whichever runner holds
        them) but those failed to be asked again, as ``Store.add_trial`` counts them."""
        trials = self.store.list_trials(self.name)
        taken = sum(t.state != "failed" or not asked_again(t.fail_reason) for t in trials)
        return max(0, self.config.n_trials - taken)

    def start(self) -> StartedTrial | None:
        """Ask Optuna for a trial and store it; None when the study's budget is spent (other
        runners of the same study may have taken the last trials)."""
        try:
            trial = self.optuna.ask(self.runner_id)
            choices = self.optuna.choices(trial)
            spec = self.values.space.spec(choices, self.config.scale)
            self.optuna.describe(trial, spec)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another runner found the budget spent and failed this trial while it was being
            # asked (``Recovery.settle_when_spent``): there is nothing left to start.
            return None
        spec_id = self.store.upsert_architecture(spec)
        # The store names the member by dimension, whatever the encoding Optuna sees.
        params = dict(zip(self.optuna.names, choices, strict=True))
        record = self.store.add_trial(self.name, params=params, spec_id=spec_id,
                                      worker=self.runner_id,
                                      optuna_trial_number=trial.number,
                                      budget=self.config.n_trials, rerun_mark=ASKED_AGAIN)
        if record is None:
            # Another runner that found the budget spent may have failed it already.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                trial.set_user_attr("nas_not_needed", "the study's budget was spent meanwhile")
            self.optuna.tell_failed(trial)
            return None
        return StartedTrial(trial, record, spec, self.values.of(spec, choices))

    def may_ask_again(self, record: TrialRecord, cause: str, limit: int) -> bool:
        """Whether the candidate of ``record`` may be asked again after failing for ``cause``
        (the start of its reason): not once ``limit`` of its trials failed so (the store
        counts, whichever runner and run they were)."""
        earlier = sum(t.spec_id == record.spec_id and str(t.fail_reason).startswith(cause)
                      for t in self.store.list_trials(self.name, state="failed"))
        return earlier < limit

    def fail(self, started: StartedTrial, reason: str, *, worker: str | None = None,
             again: bool = False) -> bool:
        """Fail one trial in the store, then in Optuna; with ``again`` its parameters are
        asked again and it does not spend the budget. Returns ``again``."""
        if again:
            reason = reason[:REASON_CHARS - len(ASKED_AGAIN)] + ASKED_AGAIN
        self.store.fail_trial(started.record.id, reason, worker=worker)
        if not self.optuna.tell_failed(started.trial):
            return again  # another runner's recovery settled it first
        if again:
            self.optuna.ask_again(started.trial.params)
        log.warning("trial %d failed: %s", started.record.number, reason)
        return again

    def finish(self, started: StartedTrial, values: dict[str, ObjectiveValue],
               evaluation: Evaluation) -> bool:
        """Complete (or fail) one evaluated trial in the store, then tell Optuna. True if its
        parameters are to be asked again (its worker died), so it spent no budget."""
        # The trial's worker becomes the Ray worker that evaluated it (its node), in the same
        # transaction as its outcome; without one it stays the runner's host.
        worker = evaluation.node
        if evaluation.error is not None:
            # The worker, not the candidate: ask again, a bounded number of times.
            again = evaluation.lost and self.may_ask_again(started.record, WORKER_DIED,
                                                           MAX_REASKS)
            return self.fail(started, evaluation.error, worker=worker, again=again)
        if evaluation.objectives is not None:
            values = {**values, **{k: ObjectiveValue(v, "measured")
                                   for k, v in evaluation.objectives.items()}}
        plain = {k: v.value for k, v in values.items()}
        missing = [n for n in self.config.metric_names if n not in plain]
        if missing:
            reason = f"the evaluator gave no {', '.join(missing)} (it gave {sorted(plain)})"
            return self.fail(started, reason, worker=worker)
        # The evaluator's details (the fidelity's interval, its figures by timestep, ...) go
        # with the values; the store makes them JSON-safe.
        stored = self.store.complete_trial(started.record.id, values,
                                           constraints=self.optuna.constraints(plain),
                                           worker=worker, details=evaluation.details or None)
        self.optuna.tell_complete(started.trial, stored)
        return False


def release_trials(store: Store, name: str, runner_id: str) -> None:
    """Fail ``runner_id``'s trials of study ``name`` still in flight, to be asked again: a run
    that failed abandons them, and they must not wait for the stale-trial timeout (the process
    may live on, a worker serving the next study). The next run's recovery settles Optuna's
    side from the store."""
    for held in store.list_trials(name, state="running"):
        if held.worker == runner_id:
            with contextlib.suppress(TrialStateError):
                store.fail_trial(held.id, RERUN_REASON)
