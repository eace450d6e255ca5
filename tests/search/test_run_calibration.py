"""The latency phase of a run across runners: two runners of one study on a device that has no
predictor for the space calibrate it once (the store's lock: an advisory lock on PostgreSQL, a
lock file beside a SQLite database), and both search on that one predictor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import load_space

pytestmark = pytest.mark.slow  # two runner processes and a (tiny) calibration

TRIALS = 8

#: One runner in a process of its own, with a tiny calibration plan; it writes the phases its
#: progress saw to a JSON file.
RUNNER = """\
import json, sys
from nanosd_nas.latency_models import CalibrationPlan
from nanosd_nas.search import StudyRunner
from nanosd_nas.search.store import Store

url, name, out = sys.argv[1:4]
phases = []
with Store.open(url) as store:
    StudyRunner(store, name, calibration=CalibrationPlan(initial=4, rounds=1, per_round=2,
                                                         held_out=0),
                progress=lambda phase, done, total, facts: phases.append(phase)).run()
with open(out, "w", encoding="utf-8") as handle:
    json.dump(sorted(set(phases)), handle)
"""


def predicted_study(name: str) -> dict:
    """Sizes and predicted latency: no accuracy workers, so the runners race to calibrate."""
    return {"name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
            "objectives": [{"name": "latency_ms", "direction": "minimize"},
                           {"name": "params_m", "direction": "minimize"}],
            "latency": {"source": "predictor", "verify_front": False},
            "sampler": "random", "n_trials": TRIALS, "seed": 0}


def test_two_runners_of_one_study_calibrate_its_device_once(database_url, tmp_path):
    with Store.open(database_url, upgrade=True) as store:
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        store.create_study("racing", predicted_study("racing"), device="local-cpu")
        # Optuna's tables made before the race: on SQLite, runners that start together on a
        # fresh database race to create them (the store serialises that on PostgreSQL only).
        store.optuna_storage()
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path / "home")}
    outputs = [tmp_path / f"phases-{i}.json" for i in range(2)]
    runners = [subprocess.Popen([sys.executable, "-c", RUNNER, database_url, "racing",
                                 str(out)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for out in outputs]
    for process in runners:
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr
    phases = [json.loads(Path(out).read_text(encoding="utf-8")) for out in outputs]
    calibrated = [any(p.startswith("calibrate:") for p in seen) for seen in phases]
    assert sorted(calibrated) == [False, True], phases  # one calibrated, the other waited
    # The study's database is the one home of its latency facts: nothing in the project home.
    assert not (tmp_path / "home" / "predictors").exists()
    with Store.open(database_url) as store:
        [recorded] = store.predictors("local-cpu")  # both searched on the one predictor
        assert store.find_predictor("local-cpu", load_space("nanosd"), "mini") is not None
        trials = store.list_trials("racing")
        assert sum(t.state == "complete" for t in trials) == TRIALS
        assert {v.predictor_id for t in trials for v in t.values
                if v.name == "latency_ms"} == {recorded.id}
        assert store.get_study("racing").status == "completed"
