"""An evaluator's details travel from its Ray worker to the stored trial, JSON-safe, and
``study trials --json`` shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search import StudyRunner
from nanosd_nas.search.store import Store

HERE = Path(__file__).parent
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])  # Ray workers import plugins


def test_a_ray_workers_details_are_stored_with_the_trial_and_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    document = {"name": "detailed", "space": "nanosd", "scale": "mini", "device": "local-cpu",
                "objectives": [{"name": "fidelity"}, {"name": "params_m"}],
                "sampler": "random", "n_trials": 3, "parallelism": 1, "seed": 0,
                "accuracy": {"evaluator": "details_plugin:WithDetails"}}
    with Store.open(url, upgrade=True) as store:
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        store.create_study("detailed", document, device="local-cpu")
        assert StudyRunner(store, "detailed").run().complete == 3
        trials = store.list_trials("detailed")
    for trial in trials:
        fidelity = trial.value("fidelity")
        assert trial.state == "complete" and trial.details is not None
        assert trial.details["untrained_parameters"] == round((fidelity - 20.0) * 1000)
        assert trial.details["fidelity_ci95"] == [pytest.approx(fidelity - 0.5),
                                                  pytest.approx(fidelity + 0.5)]
        assert trial.details["fidelity_by_t"] == {
            "0-250": pytest.approx(fidelity + 2), "250-500": pytest.approx(fidelity),
            "500-750": pytest.approx(fidelity - 1), "750-1000": None}
        assert trial.details["vae_psnr_db_ci95"] == [None, None]
        assert trial.details["stage_errors"] == {"E1": 0.125}
        assert (trial.details["teacher"], trial.details["mode"]) == ("demo", "surgery")

    env = {**os.environ, "NANOSD_NAS_DATABASE_URL": url}
    shown = subprocess.run([sys.executable, "-m", "nanosd_nas", "study", "trials", "detailed",
                            "--json"], capture_output=True, text=True, timeout=120, env=env,
                           check=True)
    rows = {row["number"]: row for row in json.loads(shown.stdout)["trials"]}
    for trial in trials:
        row = rows[trial.number]
        assert row["fidelity_ci95"] == trial.details["fidelity_ci95"]
        assert row["fidelity_by_t"] == trial.details["fidelity_by_t"]
        assert row["untrained_parameters"] == trial.details["untrained_parameters"]
        assert "stage_errors" not in row
