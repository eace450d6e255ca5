"""One way to a device's predictor, on this CPU's real runtime: loaded when it was made here,
calibrated when there is none, recalibrated when the stored one is another host's or damaged
(and the reason names it); and one way to measure a spec's components."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from latency_support import NANOSD, QUICK, elsewhere, features, fitted_predictor, this_host

from nanosd_nas import spaces
from nanosd_nas.latency_models import (
    CalibrationPlan,
    FileLatencyStore,
    ForeignPredictor,
    LatencyPredictor,
    LocalProfiler,
    PredictorOutcome,
    Protocol,
    ReferenceTiming,
    load_or_calibrate,
    load_predictor,
    measure_components,
)

TINY = CalibrationPlan(initial=2, rounds=0, per_round=0, held_out=1, pool=50)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> tuple[FileLatencyStore, PredictorOutcome]:
    """A project home whose local-cpu was calibrated for nanosd at mini (tiny plan)."""
    store = FileLatencyStore(home=tmp_path_factory.mktemp("home"))
    profiler = LocalProfiler(protocol=QUICK, references=store)
    return store, load_or_calibrate(NANOSD, "mini", profiler, store=store, plan=TINY)


def copy_facts(source: FileLatencyStore, target) -> None:
    """What a host already knows (its reference timing and block table) into ``target``."""
    target.save_reference(source.load_reference("local-cpu"))
    target.add_measurements(source.measurements("local-cpu", kind="block"))


def test_the_first_call_calibrates_and_saves_and_the_next_loads(calibrated):
    store, first = calibrated
    assert (first.action, first.reason) == ("calibrated", "")
    assert first.stored.location in first.message and "calibrated local-cpu" in first.message
    identity = first.predictor.identity
    assert identity.host_fingerprint == this_host() and identity.statistic == "normalised_ms"
    assert identity.held_out["pipeline"]["n"] == 1
    assert store.find_predictor("local-cpu", NANOSD, "mini") == first.stored

    again = load_or_calibrate(NANOSD, "mini", LocalProfiler(protocol=QUICK, references=store),
                              store=store, plan=TINY)
    assert (again.action, again.calibration) == ("loaded", None)
    assert again.message == f"loaded the predictor of local-cpu for nanosd at mini from " \
                            f"{first.stored.location}"
    assert again.predictor.identity == identity
    np.testing.assert_array_equal(again.predictor.predict_features(features()).mean["unet"],
                                  first.predictor.predict_features(features()).mean["unet"])


def test_another_hosts_predictor_is_recalibrated_naming_it_and_both_fingerprints(
        calibrated, backend):
    source, first = calibrated
    store = backend.store
    copy_facts(source, store)
    mine = first.predictor
    foreign = store.save_predictor(LatencyPredictor(
        table=mine.table, models=mine.models,
        metadata={**mine.metadata, "created": "2026-01-01T00:00:00.000+00:00",
                  "fingerprint": {**elsewhere(), "reference_ms": 2.5, "scale": "mini"}}))
    blocks_before = len(store.measurements("local-cpu", kind="block"))

    outcome = load_or_calibrate(NANOSD, "mini", LocalProfiler(protocol=QUICK, references=store),
                                store=store, plan=TINY)
    assert outcome.action == "recalibrated"
    for named in (foreign.location, "Apple M2 Max", this_host()["cpu"]):
        assert named in outcome.reason and named in outcome.message
    assert "\n" not in outcome.message
    assert outcome.predictor.identity.host_fingerprint == this_host()
    found = store.find_predictor("local-cpu", NANOSD, "mini")
    assert found == outcome.stored and found.identity.host_fingerprint == this_host()
    # the host's own block table was reused, the whole models measured again
    assert len(store.measurements("local-cpu", kind="block")) == blocks_before
    assert len(store.measurements("local-cpu", kind="model")) >= 3


def test_a_damaged_predictor_is_recalibrated_naming_it(calibrated, tmp_path):
    source, first = calibrated
    store = FileLatencyStore(home=tmp_path)
    copy_facts(source, store)
    stored = store.save_predictor(first.predictor)
    (Path(stored.location) / "block_table.json").write_text("{ half a table")
    outcome = load_or_calibrate(NANOSD, "mini", LocalProfiler(protocol=QUICK, references=store),
                                store=store, plan=TINY)
    assert outcome.action == "recalibrated"
    assert stored.location in outcome.reason and "damaged" in outcome.reason
    assert store.load_predictor(store.find_predictor("local-cpu", NANOSD, "mini"))


def test_asking_to_calibrate_again_replaces_a_usable_predictor(calibrated, tmp_path):
    source, first = calibrated
    store = FileLatencyStore(home=tmp_path)
    copy_facts(source, store)
    stored = store.save_predictor(first.predictor)
    outcome = load_or_calibrate(NANOSD, "mini", LocalProfiler(protocol=QUICK, references=store),
                                store=store, plan=TINY, recalibrate=True)
    assert outcome.action == "recalibrated" and "asked to" in outcome.reason
    assert outcome.predictor.identity.created_at != first.predictor.identity.created_at
    assert store.find_predictor("local-cpu", NANOSD, "mini").identity == \
        outcome.predictor.identity
    assert stored.location in outcome.reason


def test_another_hosts_reference_timing_is_named_and_timed_again(backend):
    store = backend.store
    foreign = ReferenceTiming(device="local-cpu", nominal_ms=7.5, protocol={
        "threads": 1, "warmup": 0, "runs": 3, "provider": "CPUExecutionProvider"},
        fingerprint=elsewhere())
    store.save_reference(foreign)
    location = store.load_reference("local-cpu").location
    profiler = LocalProfiler(protocol=QUICK, references=store)
    assert profiler.fingerprint()["reference_ms"] != 7.5  # never used
    [notice] = profiler.notices()
    for named in (location, "Apple M2 Max", this_host()["cpu"]):
        assert named in notice
    replaced = store.load_reference("local-cpu")
    assert replaced.fingerprint == this_host() and replaced.nominal_ms != 7.5
    # the next profiler of this host takes it without a word
    again = LocalProfiler(protocol=QUICK, references=store)
    assert again.fingerprint()["reference_ms"] == round(replaced.nominal_ms, 4)
    assert again.notices() == []


def test_a_reference_timing_of_another_cpu_generation_under_the_same_name_is_timed_again(
        tmp_path):
    # virtual machines often name every AMD generation "AMD EPYC"; one without VNNI runs INT8
    # ~4x slower, so its figures must not pass for this host's
    store = FileLatencyStore(home=tmp_path)
    older = {**this_host(), "cpu_id": "AuthenticAMD family 23 model 1",
             "cpu_isa": "avx avx2"}
    assert older["cpu"] == this_host()["cpu"] and older != this_host()
    store.save_reference(ReferenceTiming(device="local-cpu", nominal_ms=7.5, protocol={
        "threads": 1, "warmup": 0, "runs": 3, "provider": "CPUExecutionProvider"},
        fingerprint=older))
    profiler = LocalProfiler(protocol=QUICK, references=store)
    assert profiler.fingerprint()["reference_ms"] != 7.5
    [notice] = profiler.notices()
    assert "cpu_isa='avx avx2'" in notice and "family 23 model 1" in notice
    assert store.load_reference("local-cpu").fingerprint == this_host()


def test_a_damaged_reference_file_is_named_and_replaced(tmp_path):
    store = FileLatencyStore(home=tmp_path)
    path = store.reference_path("local-cpu")
    path.parent.mkdir(parents=True)
    path.write_text("nominal_ms: 0.9")
    profiler = LocalProfiler(protocol=QUICK, references=store)
    assert profiler.fingerprint()["reference_ms"] > 0
    [notice] = profiler.notices()
    assert str(path) in notice and "damaged" in notice
    assert json.loads(path.read_text())["fingerprint"] == this_host()


def test_components_are_measured_and_stored_together_or_not_at_all(latency_store):
    spec = NANOSD.spec(NANOSD.extremes()[0], "mini")
    measured = measure_components(spec, LocalProfiler(protocol=QUICK), scale="mini",
                                  store=latency_store)
    assert set(measured) == set(spaces.COMPONENTS)
    stored = latency_store.measurements("local-cpu", kind="model", key=spec.spec_id)
    assert {r.component: r.stats for r in stored} == measured
    assert all(s.fingerprint["scale"] == "mini" and s.normalised_ms > 0
               for s in measured.values())

    broken = LocalProfiler(protocol=Protocol(provider="NoSuchExecutionProvider"))
    with pytest.raises(ValueError, match="NoSuchExecutionProvider"):
        measure_components(spec, broken, scale="mini", store=latency_store)
    assert len(latency_store.measurements("local-cpu")) == 3


def test_the_project_homes_loader_refuses_another_hosts_predictor(tmp_path):
    store = FileLatencyStore(home=tmp_path)
    store.save_predictor(fitted_predictor())
    loaded = load_predictor("local-cpu", NANOSD, "mini", home=tmp_path)
    assert loaded.identity.host_fingerprint == this_host()
    stored = store.save_predictor(fitted_predictor(fingerprint=elsewhere()))
    with pytest.raises(ForeignPredictor) as caught:
        load_predictor("local-cpu", NANOSD, "mini", home=tmp_path)
    message = str(caught.value)
    for named in (stored.location, "Apple M2 Max", this_host()["cpu"],
                  "nanosd-nas device calibrate local-cpu --space nanosd --scale mini"):
        assert named in message


def test_what_another_process_calibrated_while_this_one_waited_is_loaded(calibrated, backend):
    source, first = calibrated
    store = backend.store
    copy_facts(source, store)
    entered = []

    @contextmanager
    def exclusive():
        # Another runner held the lock and calibrated while this one waited for it.
        store.save_predictor(first.predictor)
        entered.append(True)
        yield

    outcome = load_or_calibrate(NANOSD, "mini", LocalProfiler(protocol=QUICK, references=store),
                                store=store, plan=TINY, exclusive=exclusive)
    assert entered and (outcome.action, outcome.calibration) == ("loaded", None)
    assert outcome.predictor.identity == first.predictor.identity
    assert store.measurements("local-cpu", kind="model") == []  # nothing measured here
