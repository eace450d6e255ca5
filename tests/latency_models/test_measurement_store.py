"""The measurement file store: exactly the records written, whole lines, nothing on failure."""

from __future__ import annotations

import json
import threading

import pytest
from agent_support import tiny_onnx

from nanosd_nas.latency_models import (
    InvalidModel,
    LatencyStats,
    LocalProfiler,
    MeasurementRecord,
    MeasurementStore,
    MeasurementStoreError,
    Protocol,
)


@pytest.fixture
def store(tmp_path) -> MeasurementStore:
    return MeasurementStore(home=tmp_path)


def record(device="local-cpu", kind="model", key="abc123", component="unet", scale="mini",
           median=10.0) -> MeasurementRecord:
    stats = LatencyStats(min_ms=median - 1, p10_ms=median - 0.5, median_ms=median,
                         p90_ms=median + 2, n=30, fingerprint={"cpu": "test", "threads": 1})
    return MeasurementRecord(device=device, kind=kind, key=key, component=component,
                             scale=scale, stats=stats)


def test_the_store_keeps_exactly_the_records_written_in_order(store):
    written = [record(key="a", median=1.0), record(kind="block", key="unet.E1.resnet", median=2),
               record(device="edge", key="a", median=3.0), record(key="b", median=4.0)]
    for one in written:
        store.append(one)
    assert store.records() == [written[2], written[0], written[1], written[3]]  # by device
    assert store.records("local-cpu") == [written[0], written[1], written[3]]
    assert store.records("local-cpu", kind="block") == [written[1]]
    assert store.records(key="a") == [written[2], written[0]]
    assert store.records("unknown-device") == []
    assert MeasurementStore(home=store.folder.parent).records("edge") == [written[2]]


def test_a_measurement_is_stored_with_the_profilers_device_and_stats(store):
    profiler = LocalProfiler(protocol=Protocol(warmup=1, runs=4))
    measured = store.measure(profiler, tiny_onnx(), kind="model", key="spec-1",
                             component="unet", scale="mini")
    assert measured.device == "local-cpu" and measured.stats.n == 4
    assert store.records() == [measured]


def test_a_failed_measurement_stores_nothing(store):
    profiler = LocalProfiler(protocol=Protocol(warmup=0, runs=2))
    with pytest.raises(InvalidModel):
        store.measure(profiler, b"corrupt", kind="model", key="k", component="unet",
                      scale="mini")
    with pytest.raises(ValueError, match="kind 'whole'"):  # refused before measuring
        store.measure(profiler, tiny_onnx(), kind="whole", key="k", component="unet",
                      scale="mini")
    assert store.records() == []
    assert not store.path("local-cpu").exists()


@pytest.mark.parametrize(("field", "value", "message"),
                         [("device", "../etc", "device name"), ("kind", "x", "kind 'x'"),
                          ("key", "", "key=''"), ("scale", "", "scale=''")])
def test_bad_records_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        record(**{field: value})


def test_each_line_is_one_whole_record_even_from_many_threads(store):
    def write(worker: int) -> None:
        for i in range(25):
            store.append(record(key=f"w{worker}-{i}", median=float(i + 1)))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = store.path("local-cpu").read_text().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["device"] == "local-cpu" for line in lines)
    assert sorted(r.key for r in store.records()) == sorted(
        f"w{w}-{i}" for w in range(8) for i in range(25))


def test_a_line_torn_by_a_crash_is_ignored_then_cut_before_the_next_append(store):
    first, second = record(key="first"), record(key="second")
    store.append(first)
    with store.path("local-cpu").open("a") as stream:
        stream.write('{"device": "local-cpu", "kind": "mo')  # the process died here
    assert store.records() == [first]
    store.append(second)
    assert store.records() == [first, second]
    assert len(store.path("local-cpu").read_text().splitlines()) == 2


def test_a_line_that_is_not_a_record_is_an_error_naming_file_and_line(store):
    store.append(record())
    with store.path("local-cpu").open("a") as stream:
        stream.write("{}\n")
    with pytest.raises(MeasurementStoreError, match=r"local-cpu\.jsonl:2: not a measurement"):
        store.records()
