"""``photo_latency_ms`` in a run: the tiles of the study's photo x the pipeline's latency, of the
same provenance, predicted while searching and measured again when the front is verified, on
SQLite and on PostgreSQL, with a real predictor and real measurements on ``local-cpu``."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanosd_nas import latency_models, spaces
from nanosd_nas.latency_models import (
    CalibrationPlan,
    DeviceRegistry,
    FileLatencyStore,
    LatencyPredictor,
    LocalProfiler,
    Protocol,
)
from nanosd_nas.search import StudyRunner
from nanosd_nas.search._study_config import PipelineConfig
from nanosd_nas.search.run import space_ranges
from nanosd_nas.search.store import Store

#: A 12-MP photo in mini's 128-px tiles, overlapping by a quarter tile (32 px): 42 x 31.
TILES = 42 * 31
LIMIT_MS = 1e9
NANOSD = spaces.load_space("nanosd")


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> LatencyPredictor:
    """``local-cpu``'s predictor for nanosd at mini from a tiny calibration (quick runs, four
    members): made on this host, so a run loads it instead of calibrating."""
    store = FileLatencyStore(home=tmp_path_factory.mktemp("calibration"))
    profiler = LocalProfiler(protocol=Protocol(threads=1, warmup=0, runs=3), references=store)
    plan = CalibrationPlan(initial=4, rounds=0, per_round=0, held_out=0)
    return latency_models.calibrate(NANOSD, "mini", profiler, plan=plan, store=store).predictor


@pytest.fixture
def store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    with Store.open(database_url, upgrade=True) as opened:
        opened.upsert_device(DeviceRegistry().get("local-cpu"))
        yield opened


def photo_study(name: str, source: str = "predictor", trials: int = 3) -> dict:
    return {"name": name, "space": "nanosd", "scale": "mini",
            "pipeline": {"steps": 2, "photo": [4000, 3000]},
            "objectives": [{"name": "photo_latency_ms"}, {"name": "params_m"}],
            "constraints": {"photo_latency_ms": {"max": LIMIT_MS}},
            "latency": {"source": source, "verify_front": True},
            "sampler": "random", "n_trials": trials, "seed": 0}


@pytest.mark.slow  # a tiny calibration (once), then three trials and the front measured
def test_photo_latency_is_its_tiles_times_the_pipelines_with_the_same_provenance(
        store, predictor):
    saved = store.save_predictor(predictor)
    store.create_study("photo", photo_study("photo"), device="local-cpu")
    summary = StudyRunner(store, "photo").run()
    trials = store.list_trials("photo", state="complete")
    assert summary.complete == 3 == len(trials)
    for trial in trials:
        for provenance in ("predicted", "measured"):
            latency = trial.value("latency_ms", provenance)
            photo = trial.value("photo_latency_ms", provenance)
            assert (photo is None) == (latency is None), (provenance, trial.values)
            if latency is not None:
                assert photo == pytest.approx(TILES * latency)
        cited = {v.name: v.predictor_id for v in trial.values if v.provenance == "predicted"}
        assert cited["photo_latency_ms"] == cited["latency_ms"] == saved.id
        # constrained on the predicted value, as latency_ms is
        assert trial.constraints == pytest.approx(
            {"photo_latency_ms.max": trial.value("photo_latency_ms", "predicted") - LIMIT_MS})
    front = store.front("photo")
    assert front and summary.verified >= len(front) and summary.unmeasured == 0
    for trial in front:  # measured on the device, then derived again
        measured = trial.value("latency_ms", "measured")
        assert measured is not None
        assert trial.value("photo_latency_ms") == pytest.approx(TILES * measured)


def test_a_study_that_measures_every_trial_measures_the_photo_too(store):
    store.create_study("measured", photo_study("measured", source="measured", trials=2),
                       device="local-cpu")
    summary = StudyRunner(store, "measured").run()
    trials = store.list_trials("measured", state="complete")
    assert summary.complete == 2 == len(trials)
    for trial in trials:
        latency = trial.value("latency_ms", "measured")
        assert latency is not None and trial.value("latency_ms", "predicted") is None
        assert trial.value("photo_latency_ms", "measured") == pytest.approx(TILES * latency)


@pytest.mark.slow  # shares the tiny calibration above
def test_the_photos_latency_ranges_over_the_space_as_its_tiles_times_the_pipelines(predictor):
    """The range that places the reference point and refuses constraints no member meets."""
    ranges = space_ranges(NANOSD, "mini", steps=2, names=("latency_ms", "photo_latency_ms"),
                          predictor=predictor, pipeline=PipelineConfig(photo=(4000, 3000)))
    assert ranges["photo_latency_ms"] == pytest.approx(
        tuple(TILES * ms for ms in ranges["latency_ms"]))
    assert "photo_latency_ms" not in space_ranges(
        NANOSD, "mini", steps=2, names=("photo_latency_ms",), predictor=predictor,
        pipeline=PipelineConfig())  # no photo, no range


@pytest.mark.slow  # a member measured at 256 px on each database: ~30 s
def test_a_study_at_an_image_size_measures_its_trials_at_that_tile(store):
    document = {**photo_study("tile", source="measured", trials=1),
                "pipeline": {"steps": 1, "image_size": 256, "photo": [4000, 3000]}}
    store.create_study("tile", document, device="local-cpu")
    assert StudyRunner(store, "tile").run().complete == 1
    [trial] = store.list_trials("tile", state="complete")
    records = store.measurements("local-cpu", kind="model")
    assert {r.scale for r in records} == {"mini@256"}
    # the stored architecture is the study's (mini, 128 px); what was timed ran on 256-px tiles
    assert store.get_architecture(str(trial.spec_id)).image_size == 128
    latency = trial.value("latency_ms", "measured")
    # 256-px tiles overlapping by 64 px start every 192 px: 21 x 16 of them
    assert trial.value("photo_latency_ms", "measured") == pytest.approx(21 * 16 * latency)
