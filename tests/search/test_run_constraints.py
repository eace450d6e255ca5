"""Constraints as a study tells them: named as ``StudyConfig.constraint_values`` names them, in
the store and in Optuna alike; a study begun by an earlier build keeps that build's names."""

from __future__ import annotations

import optuna
import pytest

from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search import StudyConfig, StudyRunner
from nanosd_nas.search.store import Store

SIZES = [{"name": "params_m", "direction": "minimize"},
         {"name": "macs_g", "direction": "minimize"}]
CONSTRAINTS = {"params_m": {"max": 6.0}, "macs_g": {"min": 0.5}}


@pytest.fixture
def store(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    with Store.open(database_url, upgrade=True) as opened:
        opened.upsert_device(DeviceRegistry().get("local-cpu"))
        yield opened


def constrained(name: str) -> dict:
    return {"name": name, "space": "nanosd", "scale": "mini", "objectives": SIZES,
            "constraints": CONSTRAINTS, "sampler": "random", "n_trials": 5, "seed": 2}


def test_a_study_names_its_constraints_as_its_config_does(store):
    store.create_study("bounded", constrained("bounded"), device="local-cpu")
    StudyRunner(store, "bounded").run()
    config = StudyConfig.from_document(constrained("bounded"))
    trials = store.list_trials("bounded", state="complete")
    assert len(trials) == 5
    for trial in trials:
        plain = {n: trial.value(n) for n in ("params_m", "macs_g")}
        assert trial.constraints == pytest.approx(config.constraint_values(plain))
        assert trial.feasible == all(v <= 0 for v in trial.constraints.values())
    loaded = optuna.load_study(study_name="bounded", storage=store.url)
    for frozen in loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        assert set(frozen.constraints) == {"params_m.max", "macs_g.min"}


def test_a_study_begun_with_bound_names_goes_on_with_them(store):
    """An earlier build named constraints ``NAME<=MAX``; the GP sampler refuses a study whose
    trials name them differently, so such a study keeps those names."""
    store.create_study("older", constrained("older"), device="local-cpu")
    older = optuna.create_study(study_name="older", storage=store.url,
                                directions=["minimize", "minimize"])
    trial = older.ask({"E1": optuna.distributions.IntDistribution(0, 3)})
    trial.set_constraint("params_m<=6", -1.0)
    trial.set_constraint("macs_g>=0.5", -1.0)
    older.tell(trial, [5.0, 1.0])
    StudyRunner(store, "older").run()
    loaded = optuna.load_study(study_name="older", storage=store.url)
    complete = loaded.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 6
    assert all(set(t.constraints) == {"params_m<=6", "macs_g>=0.5"} for t in complete)
    assert all(set(t.constraints or {}) == {"params_m<=6", "macs_g>=0.5"}
               for t in store.list_trials("older", state="complete"))
