"""``study rescore``, end to end on SQLite and on PostgreSQL: a tiny real study on ``local-cpu``,
a second local device (two intra-op threads) with its own tiny real predictor, the study's
trials predicted and measured there, stored beside their own values, its front on each device
from the library, the API and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from nanosd_nas import latency_models, spaces
from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.latency_models import (
    CalibrationPlan,
    Device,
    DeviceRegistry,
    FileLatencyStore,
    LatencyPredictor,
    LocalProfiler,
    Protocol,
)
from nanosd_nas.search import StudyRunner, device_fronts, rescore_study
from nanosd_nas.search.store import Store, TrialRecord

pytestmark = pytest.mark.slow  # two tiny calibrations, runs, measurements

OTHER = "two-threads"
#: The second device: two intra-op threads (its own host fingerprint), quick measurements.
OTHER_PROTOCOL = Protocol(threads=2, warmup=0, runs=3)
TINY = CalibrationPlan(initial=4, rounds=0, per_round=0, held_out=0)
NANOSD = spaces.load_space("nanosd")
STEPS = 2
#: A 12-MP photo in mini's 128-px tiles, overlapping by a quarter tile (32 px): 42 x 31.
TILES = 42 * 31


@pytest.fixture(scope="module")
def predictors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LatencyPredictor]:
    """Each device's predictor for nanosd at mini from a tiny calibration, made on this host:
    a run, and a rescoring, load it instead of calibrating."""
    store = FileLatencyStore(home=tmp_path_factory.mktemp("calibration"))
    made = {}
    for device, protocol in (("local-cpu", Protocol(threads=1, warmup=0, runs=3)),
                             (OTHER, OTHER_PROTOCOL)):
        profiler = LocalProfiler(device=device, protocol=protocol, references=store)
        made[device] = latency_models.calibrate(NANOSD, "mini", profiler, plan=TINY,
                                                store=store).predictor
    return made


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project home where the second device is registered."""
    folder = tmp_path / "home"
    monkeypatch.setenv("NANOSD_NAS_HOME", str(folder))
    DeviceRegistry().add(Device(name=OTHER, kind="local", protocol=OTHER_PROTOCOL))
    return folder


@pytest.fixture
def store(database_url: str, home: Path) -> Iterator[Store]:
    with Store.open(database_url, upgrade=True) as opened:
        for device in ("local-cpu", OTHER):
            opened.upsert_device(DeviceRegistry().get(device))
        yield opened


def photo_study(name: str, trials: int) -> dict:
    return {"name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
            "pipeline": {"steps": STEPS, "photo": [4000, 3000]},
            "objectives": [{"name": "latency_ms", "direction": "minimize"},
                           {"name": "params_m", "direction": "minimize"}],
            "constraints": {"photo_latency_ms": {"max": 1e9}},
            "latency": {"source": "predictor", "verify_front": False},
            "sampler": "random", "n_trials": trials, "seed": 0}


def run_study(store: Store, name: str, trials: int) -> list[TrialRecord]:
    store.create_study(name, photo_study(name, trials), device="local-cpu")
    assert StudyRunner(store, name).run().complete == trials
    return store.list_trials(name, state="complete")


def pareto_numbers(points: dict[int, tuple[float, float]]) -> list[int]:
    """The trials no other beats in both (minimised) values, by number."""
    return sorted(n for n, p in points.items()
                  if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in points.values()))


def test_a_finished_study_rescored_for_another_device_keeps_its_own_front_and_gains_one(
        store: Store, database_url: str, home: Path,
        predictors: dict[str, LatencyPredictor]) -> None:
    saved = {device: store.save_predictor(p) for device, p in predictors.items()}
    trials = run_study(store, "photo", trials=6)
    before = (trials, store.front("photo"), store.hypervolume_history("photo"))

    outcome = rescore_study(store, "photo", OTHER)
    assert (outcome.source.provenance, outcome.source.action) == ("predicted", "loaded")
    assert outcome.source.predictor_id == saved[OTHER].id
    assert f"loaded the predictor of {OTHER} for nanosd at mini" in outcome.source.message
    for trial in trials:
        spec = store.get_architecture(str(trial.spec_id))
        choices = np.array([NANOSD.choices(spec, "mini")])
        expected = predictors[OTHER].predict_choices(NANOSD, choices).pipeline(STEPS)[0]
        values = outcome.values[trial.id]
        assert values["latency_ms"].value == pytest.approx(expected)
        assert values["photo_latency_ms"].value == pytest.approx(TILES * expected)
        assert {(v.provenance, v.predictor_id) for v in values.values()} == {
            ("predicted", saved[OTHER].id)}
        # the other device's latency is not the study's own
        assert trial.value("latency_ms") != pytest.approx(expected)
    stored = store.rescored_values("photo", OTHER)
    assert {(v.trial_id, v.name): v.value for v in stored} == {
        (t, n): v.value for t, named in outcome.values.items() for n, v in named.items()}
    assert (store.list_trials("photo", state="complete"), store.front("photo"),
            store.hypervolume_history("photo")) == before

    own, on_other = device_fronts(store, "photo")
    assert (own.device, own.own) == ("local-cpu", True)
    assert [m.trial.id for m in own.members] == [t.id for t in store.front("photo")]
    expected_front = pareto_numbers({t.number: (outcome.values[t.id]["latency_ms"].value,
                                                float(t.value("params_m") or 0))
                                     for t in trials})
    assert (on_other.device, on_other.scored, on_other.feasible) == (OTHER, 6, 6)
    assert [m.trial.number for m in on_other.members] == expected_front
    assert [m.trial.number for m in outcome.front.members] == expected_front

    with TestClient(create_app(Settings(database_url=database_url))) as client:
        answer = client.get("/api/studies/photo/fronts")
        assert answer.status_code == 200
        document = answer.json()
        assert [(f["device"], f["own"]) for f in document["fronts"]] == [
            ("local-cpu", True), (OTHER, False)]
        assert [m["number"] for m in document["fronts"][0]["front"]] == [
            t.number for t in store.front("photo")]
        assert [m["number"] for m in document["fronts"][1]["front"]] == expected_front
        for member in document["fronts"][1]["front"]:
            latency = member["objectives"]["latency_ms"]
            assert (latency["provenance"], latency["predictor_id"]) == (
                "predicted", saved[OTHER].id)
        assert client.get("/api/studies/no-such-study/fronts").status_code == 404

    # The command line: the same values, from the same stored predictor, loaded.
    environment = {**os.environ, "NANOSD_NAS_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "nanosd_nas", "study", "rescore", "photo",
                             "--device", OTHER, "--db", database_url, "--json"],
                            capture_output=True, text=True, timeout=300, env=environment,
                            check=False)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert (printed["study"], printed["study_device"], printed["device"]) == (
        "photo", "local-cpu", OTHER)
    assert (printed["action"], printed["predictor_id"], printed["n_trials"]) == (
        "loaded", saved[OTHER].id, 6)
    assert printed["front_size"] == len(expected_front)
    by_number = {t.number: t for t in trials}
    for row in printed["trials"]:
        trial = by_number[row["number"]]
        assert row["values"]["latency_ms"]["value"] == pytest.approx(
            outcome.values[trial.id]["latency_ms"].value)
        assert row["study_values"]["latency_ms"] == pytest.approx(trial.value("latency_ms"))
        assert row["on_front"] == (row["number"] in expected_front)
    assert len(store.rescored_values("photo", OTHER)) == 2 * 6  # replaced, not added


def test_a_device_without_a_predictor_is_calibrated_then_measuring_replaces_the_predictions(
        store: Store, predictors: dict[str, LatencyPredictor]) -> None:
    store.save_predictor(predictors["local-cpu"])
    trials = run_study(store, "measured", trials=2)
    phases: list[str] = []
    predicted = rescore_study(store, "measured", OTHER, plan=TINY,
                              on_progress=lambda phase, done, total: phases.append(phase))
    assert predicted.source.action == "calibrated" and phases  # with its progress
    [made] = store.predictors(OTHER)
    assert predicted.source.predictor_id == made.id

    measured = rescore_study(store, "measured", OTHER, measure=True)
    assert (measured.source.provenance, measured.source.predictor_id) == ("measured", None)
    models = {m.key for m in store.measurements(OTHER, kind="model")}
    assert {t.spec_id for t in trials} <= models  # kept as every measurement is
    rescored = store.rescored_values("measured", OTHER)
    assert {v.provenance for v in rescored} == {"measured"} and len(rescored) == 2 * 2
    for trial in trials:
        values = measured.values[trial.id]
        assert values["latency_ms"].value > 0
        assert values["photo_latency_ms"].value == pytest.approx(
            TILES * values["latency_ms"].value)
    assert store.list_trials("measured", state="complete") == trials  # its own untouched
