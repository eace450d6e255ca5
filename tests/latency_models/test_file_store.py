"""What only the file store has: its project-home layout, one JSON line per measurement, torn
lines, hand-edited files, and the files earlier builds wrote."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from latency_support import NANOSD, QUICK, fitted_predictor, this_host

from nanosd_nas.latency_models import (
    FileLatencyStore,
    LatencyStats,
    LocalProfiler,
    MeasurementRecord,
    MeasurementStore,
    MeasurementStoreError,
    predictor_folder,
)


@pytest.fixture
def store(tmp_path) -> FileLatencyStore:
    return FileLatencyStore(home=tmp_path)


def record(key="abc123", median=10.0) -> MeasurementRecord:
    stats = LatencyStats(min_ms=median - 1, p10_ms=median - 0.5, median_ms=median,
                         p90_ms=median + 2, n=30, fingerprint={"cpu": "test", "threads": 1})
    return MeasurementRecord(device="local-cpu", kind="model", key=key, component="unet",
                             scale="mini", stats=stats)


def test_the_project_home_layout(store, tmp_path):
    store.add_measurements([record()])
    saved = store.save_predictor(fitted_predictor())
    LocalProfiler(protocol=QUICK, references=store).fingerprint()
    assert store.path("local-cpu") == tmp_path / "measurements" / "local-cpu.jsonl"
    assert saved.location == str(predictor_folder("local-cpu", NANOSD, "mini", home=tmp_path))
    assert sorted(p.name for p in predictor_folder("local-cpu", NANOSD, "mini",
                                                   home=tmp_path).iterdir()) == [
        "block_table.json", "model.safetensors", "predictor.json"]
    reference = json.loads((tmp_path / "references" / "local-cpu.json").read_text())
    assert reference["fingerprint"] == this_host() and reference["nominal_ms"] > 0
    assert not list(tmp_path.rglob("*.tmp"))  # every file replaced whole


def test_a_batch_is_one_line_per_record(store):
    store.add_measurements([record(key="a"), record(key="b")])
    lines = store.path("local-cpu").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]


def test_a_line_torn_by_a_crash_is_ignored_then_cut_before_the_next_append(store):
    first, second = record(key="first"), record(key="second")
    store.add_measurements([first])
    with store.path("local-cpu").open("a") as stream:
        stream.write('{"device": "local-cpu", "kind": "mo')  # the process died here
    assert store.measurements() == [first]
    store.add_measurements([second])
    assert store.measurements() == [first, second]
    assert len(store.path("local-cpu").read_text().splitlines()) == 2


def test_a_line_that_is_not_a_record_is_an_error_naming_file_and_line(store):
    store.add_measurements([record()])
    with store.path("local-cpu").open("a") as stream:
        stream.write("{}\n")
    with pytest.raises(MeasurementStoreError, match=r"local-cpu\.jsonl:2: not a measurement"):
        store.measurements()


def test_a_reference_file_of_an_earlier_build_is_read(store):
    """Earlier builds wrote nominal_ms, protocol and fingerprint only."""
    path = store.reference_path("local-cpu")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"nominal_ms": 0.8, "fingerprint": this_host(), "protocol": {
        "threads": 1, "warmup": 0, "runs": 3, "provider": "CPUExecutionProvider"}}))
    profiler = LocalProfiler(protocol=QUICK, references=store)
    assert profiler.fingerprint()["reference_ms"] == 0.8 and profiler.notices() == []


def test_a_reference_timing_serves_every_split_of_the_runs_into_sessions(store):
    # The reference is timed in one session whatever the protocol's sessions.
    LocalProfiler(protocol=QUICK, references=store).fingerprint()
    nominal = store.load_reference("local-cpu").nominal_ms
    split = LocalProfiler(protocol=replace(QUICK, sessions=3), references=store)
    assert split.fingerprint()["reference_ms"] == round(nominal, 4)
    assert split.notices() == []


def test_the_former_measurement_store_still_appends_and_reads(tmp_path):
    former = MeasurementStore(home=tmp_path)
    former.append(record())
    assert former.records("local-cpu") == FileLatencyStore(home=tmp_path).measurements()
