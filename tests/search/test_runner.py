"""Running studies: Optuna ask/tell on Ray workers, the store and the front, on SQLite and on
PostgreSQL; a runner killed with SIGKILL and started again."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search import StudyRunner, pareto_mask
from nanosd_nas.search._encoding import Encoding
from nanosd_nas.search._execution import RayUnavailable
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import stage_layouts

HERE = Path(__file__).parent
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])  # Ray workers import plugins


def study_document(name: str, *, evaluator: str, trials: int, **extra: object) -> dict:
    return {
        "name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
        "objectives": [{"name": "fidelity", "direction": "maximize"},
                       {"name": "params_m", "direction": "minimize"}],
        "sampler": "tpe", "n_trials": trials, "parallelism": 2,
        "accuracy": {"evaluator": evaluator}, "seed": 0, **extra,
    }


def create(store: Store, document: dict) -> None:
    store.upsert_device(DeviceRegistry().get("local-cpu"))
    store.create_study(document["name"], document, device="local-cpu")


@pytest.fixture
def store(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    with Store.open(database_url, upgrade=True) as opened:
        yield opened


def test_a_study_runs_to_its_budget_and_optuna_sees_the_same_trials(store):
    create(store, study_document("plain", evaluator="evaluator_plugin:transformer_share",
                                 trials=12, constraints={"params_m": {"max": 30.0}}))
    summary = StudyRunner(store, "plain").run()
    trials = store.list_trials("plain")
    assert summary.complete == 12 == len(trials)
    assert sorted(t.number for t in trials) == list(range(12))
    assert store.get_study("plain").status == "completed"
    # Each trial names the Ray worker that evaluated it (HOST/NODE_IP:PID), one of the two;
    # local Ray stays on loopback.
    workers = {t.worker for t in trials}
    assert len(workers) <= 2 and all(
        re.fullmatch(rf"{re.escape(socket.gethostname())}/127\.0\.0\.1:\d+", w or "")
        for w in workers), workers
    loaded = optuna.load_study(study_name="plain", storage=store.url)
    # Plain Optuna (optuna-dashboard) reads the metric names and each trial's architecture.
    assert loaded.metric_names == ["fidelity", "params_m"]
    finished = loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(finished) == 12
    by_number = {t.optuna_trial_number: t for t in trials}
    for frozen in finished:
        stored = by_number[frozen.number]
        assert frozen.values == [stored.value("fidelity"), stored.value("params_m")]
        assert stored.value("params_m", "computed") is not None
        assert stored.value("fidelity", "measured") is not None
        spec = store.get_architecture(str(stored.spec_id))
        attrs = frozen.user_attrs
        assert attrs["nas_spec_id"] == stored.spec_id
        assert attrs["nas_layout"] == " ".join(f"{k}:{v}"
                                               for k, v in stage_layouts(spec).items())
        assert attrs["nas_layout"].startswith("E1:") and attrs["nas_layout"].count(":") == 6
        assert attrs["nas_widths"]["unet"] == [level.channels for level in spec.unet.levels]
        assert attrs["nas_values"]["fidelity"] == {"measured": stored.value("fidelity")}
        assert attrs["nas_values"]["params_m"] == {"computed": stored.value("params_m")}
    feasible = [t for t in trials if t.feasible]
    values = np.array([[t.value("fidelity"), t.value("params_m")] for t in feasible])
    expected = {t.id for t, m in zip(feasible, pareto_mask(values, ["maximize", "minimize"]),
                                     strict=True) if m}
    assert {t.id for t in store.front("plain")} == expected
    history = [p.hypervolume for p in store.hypervolume_history("plain")]
    assert history == sorted(history) and history[-1] == pytest.approx(summary.hypervolume)


def test_an_evaluation_that_raises_fails_its_trial_and_the_study_goes_on(store):
    # 12 trials: a sixth of them is the initial design, whose smallest member (no attention
    # anywhere) is asked first, so a trial fails whatever the runner's seed draws after it.
    create(store, study_document("flaky", trials=12, sampler="random",
                                 evaluator="evaluator_plugin:fails_without_attention_in_e1"))
    StudyRunner(store, "flaky").run()
    trials = store.list_trials("flaky")
    failed = [t for t in trials if t.state == "failed"]
    assert len(trials) == 12 and failed
    assert all("no attention in E1" in str(t.fail_reason) for t in failed)
    assert all(t.params["E1"] == 0 for t in failed)


def test_constraints_no_member_meets_stop_before_any_trial(store):
    create(store, study_document("impossible", evaluator="evaluator_plugin:transformer_share",
                                 trials=5, constraints={"params_m": {"max": 0.001}}))
    with pytest.raises(ValueError, match=r"params_m .* cannot be met"):
        StudyRunner(store, "impossible").run()
    assert store.list_trials("impossible") == []
    assert store.get_study("impossible").status == "failed"


def test_a_ray_address_that_does_not_answer_is_named(store):
    create(store, study_document("remote", evaluator="evaluator_plugin:transformer_share",
                                 trials=2))
    started = time.monotonic()
    with pytest.raises(RayUnavailable, match=r"127\.0\.0\.1:9"):
        StudyRunner(store, "remote", ray_address="127.0.0.1:9").run()
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_a_killed_runner_loses_and_repeats_nothing(database_url, tmp_path):
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path / "home"),
           "NANOSD_NAS_DATABASE_URL": database_url}
    with Store.open(database_url, upgrade=True) as store:
        create(store, study_document("killed", evaluator="evaluator_plugin:slow_share",
                                     trials=24))
    command = [sys.executable, "-m", "nanosd_nas", "study", "run", "killed", "--json"]
    kept: set[int] = set()
    for _ in range(2):
        runner = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        with Store.open(database_url) as store:
            while time.monotonic() < deadline:
                done = [t for t in store.list_trials("killed") if t.state == "complete"]
                if len(done) >= len(kept) + 4:
                    break
                time.sleep(0.2)
            os.killpg(runner.pid, signal.SIGKILL)  # the runner and its Ray processes
            runner.wait()
            complete = {t.id for t in store.list_trials("killed") if t.state == "complete"}
            assert kept <= complete
            kept = complete
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600,
                           check=False)
    assert final.returncode == 0, final.stderr
    with Store.open(database_url) as store:
        trials = store.list_trials("killed")
        complete = [t for t in trials if t.state == "complete"]
        assert len(complete) == 24
        assert kept <= {t.id for t in complete}
        assert all(t.state != "running" for t in trials)
        numbers = [t.optuna_trial_number for t in complete]
        assert len(set(numbers)) == len(numbers)
    loaded = optuna.load_study(study_name="killed", storage=database_url)
    states = [t.state for t in loaded.get_trials()]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 24
    assert optuna.trial.TrialState.RUNNING not in states


def test_a_study_that_measures_every_trial_stores_measured_latency(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    document = study_document("measured", evaluator="evaluator_plugin:transformer_share",
                              trials=2, latency={"source": "measured", "verify_front": True})
    document["objectives"].append({"name": "latency_ms", "direction": "minimize"})
    with Store.open(f"sqlite:///{tmp_path / 'nas.db'}", upgrade=True) as store:
        create(store, document)
        summary = StudyRunner(store, "measured").run()
        trials = store.list_trials("measured")
    assert summary.complete == 2 and summary.verified == 0  # nothing left to verify
    assert all(t.value("latency_ms", "measured") is not None for t in trials)
    assert all(t.value("latency_ms", "predicted") is None for t in trials)
    assert not (tmp_path / "home" / "predictors").exists()  # no calibration was needed


def test_a_study_starts_from_the_corners_of_its_space_once(store):
    from nanosd_nas.search._samplers import initial_design

    sizes = [{"name": "params_m", "direction": "minimize"},
             {"name": "macs_g", "direction": "minimize"}]
    for name, design in (("cornered", None), ("plain-tpe", "none")):
        document = {"name": name, "space": "nanosd", "scale": "mini", "objectives": sizes,
                    "sampler": "tpe", "n_trials": 30, "seed": 0}
        if design:
            document["initial_design"] = design
        create(store, document)
        StudyRunner(store, name).run()
    space = StudyRunner(store, "cornered").space
    names = [d.name for d in space.dimensions]
    corners = initial_design(space.cardinalities, 30, seed=0)
    trials = sorted(store.list_trials("cornered"), key=lambda t: t.number)
    assert len(trials) == 30 and len(corners) == 5
    assert [tuple(t.params[n] for n in names) for t in trials[:5]] == corners
    StudyRunner(store, "cornered").run()  # nothing left to do, and nothing queued again
    loaded = optuna.load_study(study_name="cornered", storage=store.url)
    assert loaded.user_attrs["initial_design"] == {"kind": "corners", "trials": 5}
    assert len(loaded.trials) == 30
    plain = optuna.load_study(study_name="plain-tpe", storage=store.url)
    assert "initial_design" not in plain.user_attrs
    first = [tuple(t.params[n] for n in names) for t in store.list_trials("plain-tpe")[:10]]
    assert first != corners


def test_a_study_begun_with_categorical_choices_goes_on_with_them(store):
    """Studies of earlier builds presented choices as categories; Optuna refuses a parameter
    that changes its kind, so such a study goes on with categories (and without corners)."""
    document = {"name": "older", "space": "nanosd", "scale": "mini", "sampler": "tpe",
                "objectives": [{"name": "params_m", "direction": "minimize"},
                               {"name": "macs_g", "direction": "minimize"}],
                "n_trials": 4, "seed": 0}
    create(store, document)
    space = StudyRunner(store, "older").space
    older = optuna.create_study(study_name="older", storage=store.url,
                                directions=["minimize", "minimize"])
    categorical = {d.name: optuna.distributions.CategoricalDistribution(list(range(n)))
                   for d, n in zip(space.dimensions, space.cardinalities, strict=True)}
    older.tell(older.ask(categorical), [5.0, 1.0])
    summary = StudyRunner(store, "older").run()
    assert summary.complete == 4
    loaded = optuna.load_study(study_name="older", storage=store.url)
    assert "initial_design" not in loaded.user_attrs
    for trial in loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert all(isinstance(d, optuna.distributions.CategoricalDistribution)
                   for d in trial.distributions.values())


def test_a_binary_study_asks_a_bit_per_layer_and_stores_members_by_dimension(store):
    from nanosd_nas.search._samplers import initial_design

    sizes = [{"name": "params_m", "direction": "minimize"},
             {"name": "macs_g", "direction": "minimize"}]
    create(store, {"name": "bits", "space": "nanosd", "scale": "mini", "objectives": sizes,
                   "sampler": "tpe", "n_trials": 15, "seed": 0, "encoding": "binary"})
    assert StudyRunner(store, "bits").run().complete == 15
    space = StudyRunner(store, "bits").space
    names = [d.name for d in space.dimensions]
    loaded = optuna.load_study(study_name="bits", storage=store.url)
    by_number = {t.optuna_trial_number: t for t in store.list_trials("bits")}
    for frozen in loaded.trials:
        assert sorted(frozen.params) == sorted(f"{n}.{j}" for n, c in zip(
            names, space.cardinalities, strict=True) for j in range(c.bit_length() - 1))
        stored = by_number[frozen.number]
        member = tuple(stored.params[n] for n in names)  # the store names choices, not bits
        assert sorted(stored.params) == sorted(names)
        assert all(frozen.params[f"{n}.{j}"] == member[i] >> j & 1
                   for i, n in enumerate(names) for j in range(3) if f"{n}.{j}" in frozen.params)
        spec = store.get_architecture(str(stored.spec_id))
        assert spec.spec_id == space.spec(member, "mini").spec_id
    corners = initial_design(space.cardinalities, 15, seed=0)
    first = sorted(by_number.values(), key=lambda t: t.number)[:len(corners)]
    assert [tuple(t.params[n] for n in names) for t in first] == corners


def test_a_study_begun_with_ordinal_choices_keeps_them_whatever_its_encoding_says(store):
    create(store, {"name": "ordinal-first", "space": "nanosd", "scale": "mini",
                   "objectives": [{"name": "params_m", "direction": "minimize"}],
                   "sampler": "tpe", "n_trials": 4, "seed": 0, "encoding": "binary",
                   "initial_design": "none"})
    space = StudyRunner(store, "ordinal-first").space
    older = optuna.create_study(study_name="ordinal-first", storage=store.url)
    ordinal = {d.name: optuna.distributions.IntDistribution(0, n - 1)
               for d, n in zip(space.dimensions, space.cardinalities, strict=True)}
    older.tell(older.ask(ordinal), 5.0)
    assert StudyRunner(store, "ordinal-first").run().complete == 4
    loaded = optuna.load_study(study_name="ordinal-first", storage=store.url)
    assert all(set(t.params) == set(ordinal) for t in loaded.trials)


def test_an_optuna_trial_orphaned_within_its_ask_is_failed_once_the_budget_is_spent(store):
    """A runner killed inside Optuna's ask leaves a RUNNING trial nobody names (too young for
    recovery to call dead); once the budget is spent nothing asks it again, so the runner
    fails it rather than leave it running for ever in Optuna's readers."""
    create(store, {"name": "orphan", "space": "nanosd", "scale": "mini",
                   "objectives": [{"name": "params_m", "direction": "minimize"}],
                   "sampler": "random", "n_trials": 3, "seed": 0})
    space = StudyRunner(store, "orphan").space
    optuna.create_study(study_name="orphan", storage=store.url)
    study = optuna.load_study(study_name="orphan", storage=store.url)
    study.ask(Encoding(space, "binary").distributions)  # the kill: no runner named in it
    assert StudyRunner(store, "orphan").run().complete == 3
    loaded = optuna.load_study(study_name="orphan", storage=store.url)
    states = [t.state for t in loaded.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3
    orphan = loaded.trials[0]
    assert orphan.state == optuna.trial.TrialState.FAIL
    assert "died within its ask" in orphan.user_attrs["nas_not_needed"]


def test_a_runner_asking_while_another_settles_the_spent_budget_starts_nothing(store):
    """The race of two runners at a spent budget: one fails the trials Optuna still holds
    running (the budget is spent) while the other is inside its start, before or after it
    named the member. The asker starts nothing and raises nothing, and Optuna keeps no
    trial running."""
    from nanosd_nas.search.run import OptunaStudy, TrialLifecycle

    create(store, {"name": "race", "space": "nanosd", "scale": "mini",
                   "objectives": [{"name": "params_m", "direction": "minimize"}],
                   "sampler": "random", "n_trials": 2, "seed": 0})
    late = StudyRunner(store, "race")
    optuna_study = OptunaStudy.open(store, "race", late.config, late.space)
    asked = optuna_study.ask("elsewhere:1")  # about to name its member
    named = optuna_study.ask("elsewhere:1")  # named, about to be stored
    optuna_study.describe(named, late.space.spec(optuna_study.choices(named),
                                                 late.config.scale))
    assert StudyRunner(store, "race").run().complete == 2  # settles both at the end
    lifecycle = TrialLifecycle(store=store, name="race", config=late.config,
                               optuna_study=optuna_study, values=late._latency(),
                               runner_id="elsewhere:1")
    optuna_study.ask = lambda runner_id: asked  # type: ignore[method-assign]
    assert lifecycle.start() is None
    optuna_study.ask = lambda runner_id: named  # type: ignore[method-assign]
    optuna_study.describe = lambda trial, spec: None  # type: ignore[method-assign]
    assert lifecycle.start() is None
    loaded = optuna.load_study(study_name="race", storage=store.url)
    states = [t.state for t in loaded.trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2
    assert len(store.list_trials("race")) == 2


def test_a_stopped_study_keeps_no_optuna_trial_running_and_resumes_the_orphans_member(
        store, monkeypatch):
    """A run interrupted (Ctrl-C) right after a runner died within Optuna's ask: the study ends
    'stopped' with the reason, the orphan (too young for recovery) is failed rather than left
    running, its member is asked again, and the resumed run evaluates it."""
    # However slow this machine, recovery never finds the orphan old enough to settle.
    monkeypatch.setattr("nanosd_nas.search.run._recovery.UNNAMED_AFTER_S", 3600.0)
    create(store, {"name": "halted", "space": "nanosd", "scale": "mini",
                   "objectives": [{"name": "params_m", "direction": "minimize"}],
                   "sampler": "random", "n_trials": 3, "seed": 0, "initial_design": "none"})
    runner = StudyRunner(store, "halted")
    optuna.create_study(study_name="halted", storage=store.url)
    study = optuna.load_study(study_name="halted", storage=store.url)
    orphan = study.ask(Encoding(runner.space, "binary").distributions)  # killed: unnamed
    runner.interrupt("interrupted (SIGINT)")
    assert runner.run().stopped
    halted = store.get_study("halted")
    assert (halted.status, halted.status_reason) == ("stopped", "interrupted (SIGINT)")
    loaded = optuna.load_study(study_name="halted", storage=store.url)
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in loaded.trials}
    assert "asked again" in loaded.trials[orphan.number].user_attrs["nas_not_needed"]
    assert StudyRunner(store, "halted").run().complete == 3
    members = [t.params for t in optuna.load_study(study_name="halted",
                                                   storage=store.url).trials
               if t.state == optuna.trial.TrialState.COMPLETE]
    assert orphan.params in members


def test_a_run_aborted_with_a_trial_in_flight_leaves_it_to_be_asked_again(store, monkeypatch):
    """The second Ctrl-C: KeyboardInterrupt right after a trial was started. The run leaves the
    study 'stopped', its trial in flight failed to be asked again in the store and in Optuna
    (nothing running in either), and the next run completes the budget."""
    from nanosd_nas.search.run import TrialLifecycle

    create(store, {"name": "aborted", "space": "nanosd", "scale": "mini",
                   "objectives": [{"name": "params_m", "direction": "minimize"}],
                   "sampler": "random", "n_trials": 4, "seed": 0})
    start = TrialLifecycle.start
    started = []

    def start_then_ctrl_c(self):
        started.append(start(self))
        if len(started) == 3:
            raise KeyboardInterrupt
        return started[-1]

    monkeypatch.setattr(TrialLifecycle, "start", start_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        StudyRunner(store, "aborted").run()
    aborted = store.get_study("aborted")
    assert aborted.status == "stopped" and "aborted" in str(aborted.status_reason)
    trials = store.list_trials("aborted")
    assert [t.state for t in trials] == ["complete", "complete", "failed"]
    loaded = optuna.load_study(study_name="aborted", storage=store.url)
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in loaded.trials}
    monkeypatch.setattr(TrialLifecycle, "start", start)
    assert StudyRunner(store, "aborted").run().complete == 4
    assert store.get_study("aborted").status == "completed"
