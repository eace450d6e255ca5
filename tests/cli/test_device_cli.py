"""``device calibrate`` keeps the predictor in the database, where the dashboard lists it at
once; ``latency predict`` refuses another host's or a damaged predictor in one line naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from nanosd_nas import latency_models, spaces
from nanosd_nas.cli.device import held_out_headline, print_held_out
from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.latency_models import FEATURES, BlockLatencyTable, LatencyPredictor, LocalProfiler
from nanosd_nas.latency_models._predictor import RidgeEnsemble
from nanosd_nas.search.store import Store

NANOSD = spaces.load_space("nanosd")


def run(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NANOSD_NAS_HOME": str(home), "NANOSD_NAS_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, timeout=600, env=env, check=False)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.slow  # a calibration (tiny plan) of every block of nanosd at mini: ~30 s
def test_a_device_calibrated_from_the_command_line_is_on_the_dashboard_at_once(
        tmp_path, database_url):
    added = run(tmp_path, database_url, "device", "add", "quick-cpu", "--kind", "local",
                "--warmup", "0", "--runs", "3")
    assert added.returncode == 0, added.stderr
    calibrated = run(tmp_path, database_url, "device", "calibrate", "quick-cpu", "--space",
                     "nanosd", "--scale", "mini", "--initial", "2", "--rounds", "0",
                     "--per-round", "0", "--held-out", "1", "--json")
    assert calibrated.returncode == 0, calibrated.stderr
    summary = json.loads(calibrated.stdout)
    assert (summary["device"], summary["action"], summary["n_train"]) == ("quick-cpu",
                                                                         "calibrated", 2)
    assert str(summary["predictor_id"]) in summary["location"]
    # nanosd's VAE is the same in every member: the U-Net's figures lead, the pipeline's beside
    assert summary["held_out"]["varying"] == ["unet"]
    assert [c["name"] for c in summary["headline"]["components"]] == ["unet"]
    assert summary["headline"]["fixed"] == ["vae_encoder", "vae_decoder"]
    assert summary["headline"]["pipeline"]["n"] == 1
    assert not (tmp_path / "predictors").exists()  # one home: the database

    with Store.open(database_url) as store, TestClient(create_app(Settings(), store)) as client:
        devices = {d["name"]: d for d in client.get("/api/devices").json()}
        [predictor] = devices["quick-cpu"]["predictors"]
        assert (predictor["id"], predictor["space"], predictor["scale"]) == (
            summary["predictor_id"], "nanosd", "mini")
        assert predictor["held_out"]["pipeline"]["n"] == 1
        assert predictor["headline"]["varying"] == ["unet"]
        page = client.get("/devices")
        assert page.status_code == 200 and "quick-cpu" in page.text
        # the device's fingerprint is this host's, stored with the device
        assert store.get_device("quick-cpu").fingerprint == latency_models.host_fingerprint(
            summary["fingerprint"])

    predicted = run(tmp_path, database_url, "latency", "predict", "nanosd:0,0,0,0,0,0",
                    "--scale", "mini", "--device", "quick-cpu", "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["predictor_id"] == summary["predictor_id"]


def _accuracy(within_10pct: float, spearman: float | None) -> dict:
    return {"within_5pct": within_10pct / 2, "within_10pct": within_10pct, "spearman": spearman,
            "rmspe": 0.2 - within_10pct / 10, "n": 30}


#: Held-out figures of a nanosd predictor: half its U-Nets within 10%, every pipeline (the VAE,
#: the same in every member, dominates it).
HELD_OUT = {"unet": _accuracy(0.5, 0.4), "vae_encoder": _accuracy(1.0, None),
            "vae_decoder": _accuracy(1.0, None), "varying": ["unet"],
            "pipeline": {**_accuracy(1.0, 0.6), "steps": 1,
                         "points": {"predicted_ms": [1.0], "measured_ms": [1.0]}}}


def test_calibrate_leads_with_what_varies_and_prints_the_pipeline_beside(capsys):
    print_held_out(HELD_OUT)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0] == ("held-out within ±10%: unet 50.0% (pipeline 100.0%, with vae_encoder, "
                        "vae_decoder the same in every member)")
    rows = [line.replace("│", " ").split()[0] for line in lines if line.startswith("│")]
    assert rows == ["unet", "pipeline", "vae_encoder", "vae_decoder"]
    assert sum("(fixed)" in line for line in lines) == 2
    headline = held_out_headline(HELD_OUT)
    assert headline is not None
    assert headline["components"] == [{"name": "unet", **_accuracy(0.5, 0.4)}]
    assert headline["pipeline"] == {"name": "pipeline", "steps": 1, **_accuracy(1.0, 0.6)}
    assert held_out_headline({}) is None


def _predictor(fingerprint: dict) -> LatencyPredictor:
    """A real predictor of local-cpu for nanosd at mini, fitted without measuring."""
    x = np.random.default_rng(0).uniform(1, 2, size=(12, len(FEATURES)))
    models = {c: RidgeEnsemble.fit(x, x.sum(axis=1), members=2) for c in spaces.COMPONENTS}
    return LatencyPredictor(
        table=BlockLatencyTable(device="local-cpu", scale="mini", statistic="normalised_ms"),
        models=models,
        metadata={"device": "local-cpu", "space": "nanosd", "space_digest": NANOSD.digest,
                  "scale": "mini", "statistic": "normalised_ms",
                  "created": "2026-12-01T10:00:00.000+00:00",
                  "fingerprint": {**fingerprint, "reference_ms": 0.9, "scale": "mini"}})


def test_predict_refuses_another_hosts_predictor_naming_it_and_both_fingerprints(tmp_path):
    url = f"sqlite:///{tmp_path / 'nanosd-nas.db'}"
    here = LocalProfiler(protocol=latency_models.BUILTIN_DEVICES[0].protocol).host_fingerprint()
    with Store.open(url, upgrade=True) as store:
        store.upsert_device(latency_models.BUILTIN_DEVICES[0])
        stored = store.save_predictor(_predictor({**here, "cpu": "Apple M2 Max"}))
    line = one_line_error(run(tmp_path, url, "latency", "predict", "nanosd:0,0,0,0,0,0",
                              "--scale", "mini"))
    for named in (stored.location, "Apple M2 Max", here["cpu"],
                  "nanosd-nas device calibrate local-cpu --space nanosd --scale mini"):
        assert named in line


def test_predict_refuses_a_damaged_predictor_naming_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'nanosd-nas.db'}"
    here = LocalProfiler(protocol=latency_models.BUILTIN_DEVICES[0].protocol).host_fingerprint()
    with Store.open(url, upgrade=True) as store:
        store.upsert_device(latency_models.BUILTIN_DEVICES[0])
        stored = store.save_predictor(_predictor(here))
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE nas_predictor_artifacts SET model = :garbage"),
                               {"garbage": b"not a safetensors file"})
    line = one_line_error(run(tmp_path, url, "latency", "predict", "nanosd:0,0,0,0,0,0",
                              "--scale", "mini"))
    assert stored.location in line and "damaged" in line
