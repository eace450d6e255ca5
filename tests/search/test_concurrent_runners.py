"""Runners sharing one study on the real PostgreSQL server: several at once, and runners killed
with SIGKILL at random moments, again and again. The study ends with exactly its trial budget,
every completed trial kept once, and the stored front equal to the front of all its trials."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest

from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search import pareto_mask
from nanosd_nas.search._encoding import encoding_of_trials
from nanosd_nas.search._samplers import initial_design
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import load_space

pytestmark = pytest.mark.slow  # runner processes, a minute or two

TRIALS = 40
DIRECTIONS = ("minimize", "minimize")


def quick_study(name: str, sampler: str = "random") -> dict:
    """Sizes only: each trial takes milliseconds, so runners race for every step."""
    return {"name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
            "objectives": [{"name": "params_m", "direction": "minimize"},
                           {"name": "macs_g", "direction": "minimize"}],
            "n_trials": TRIALS, "sampler": sampler, "seed": 3}


def runner(url: str, name: str, tmp_path) -> subprocess.Popen[str]:
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path / "home"),
           "NANOSD_NAS_DATABASE_URL": url}
    return subprocess.Popen([sys.executable, "-m", "nanosd_nas", "study", "run", name,
                             "--json"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def assert_exact(url: str, name: str) -> None:
    with Store.open(url) as store:
        trials = store.list_trials(name)
        complete = [t for t in trials if t.state == "complete"]
        assert len(complete) == TRIALS, [(t.number, t.state, t.fail_reason) for t in trials]
        assert not [t for t in trials if t.state == "running"]
        numbers = [t.number for t in trials]
        assert sorted(numbers) == list(range(len(trials)))  # unique, no gaps
        optuna_numbers = [t.optuna_trial_number for t in complete]
        assert len(set(optuna_numbers)) == TRIALS  # no Optuna trial stored twice
        values = np.array([[t.value("params_m"), t.value("macs_g")] for t in complete])
        expected = {t.id for t, m in zip(complete, pareto_mask(values, DIRECTIONS),
                                         strict=True) if m}
        assert {t.id for t in store.front(name)} == expected
        assert store.get_study(name).status == "completed"
    loaded = optuna.load_study(study_name=name, storage=url)
    told = [t for t in loaded.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(told) == TRIALS
    assert optuna.trial.TrialState.RUNNING not in {t.state for t in loaded.get_trials()}


def create(url: str, name: str, sampler: str = "random") -> None:
    with Store.open(url, upgrade=True) as store:
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        store.create_study(name, quick_study(name, sampler), device="local-cpu")


def test_three_runners_on_one_study_make_exactly_its_budget(postgres_url, tmp_path):
    """TPE: the space's corners are queued once, by whichever runner comes first."""
    create(postgres_url, "shared", sampler="tpe")
    runners = [runner(postgres_url, "shared", tmp_path) for _ in range(3)]
    for process in runners:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    assert_exact(postgres_url, "shared")
    loaded = optuna.load_study(study_name="shared", storage=postgres_url)
    queued = [t for t in loaded.get_trials() if "fixed_params" in t.system_attrs]
    corners = initial_design((4, 4, 4, 8, 8, 8), TRIALS, seed=3)
    assert loaded.user_attrs["initial_design"]["trials"] == len(corners) == len(queued)
    coding = encoding_of_trials(load_space("nanosd"), loaded.trials, "binary")
    assert sorted(coding.member(t.params) for t in queued) == sorted(corners)


def test_runners_killed_at_random_moments_lose_and_repeat_nothing(postgres_url, tmp_path):
    create(postgres_url, "killed-often")
    chance = random.Random(7)
    kept: set[int] = set()
    for _ in range(5):
        pair = [runner(postgres_url, "killed-often", tmp_path) for _ in range(2)]
        time.sleep(chance.uniform(2.0, 6.0))  # imports take ~2 s: kills land mid-search
        for process in pair:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with Store.open(postgres_url) as store:
            complete = {t.id for t in store.list_trials("killed-often")
                        if t.state == "complete"}
        assert kept <= complete  # nothing completed is ever lost
        kept = complete
    final = runner(postgres_url, "killed-often", tmp_path)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr
    assert_exact(postgres_url, "killed-often")
    with Store.open(postgres_url) as store:
        assert kept <= {t.id for t in store.list_trials("killed-often")
                        if t.state == "complete"}
