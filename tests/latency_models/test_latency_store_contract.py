"""The latency store's contract (see ``LatencyStore``), held on every backend: the file store,
the database on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from latency_support import NANOSD, elsewhere, features, fitted_predictor, this_host

from nanosd_nas import spaces
from nanosd_nas.latency_models import (
    DamagedArtifact,
    LatencyStats,
    MeasurementRecord,
    PredictorNotFound,
    ReferenceTiming,
)


def record(device="local-cpu", kind="model", key="0a1b2c3d4e5f6a7b", component="unet",
           median=10.0, at="2026-12-01T10:00:00.123+00:00") -> MeasurementRecord:
    stats = LatencyStats(min_ms=median - 1, p10_ms=median - 0.5, median_ms=median,
                         p90_ms=median + 2, n=30, normalised_ms=median * 0.98,
                         fingerprint={**this_host(), "reference_ms": 0.91, "scale": "mini"})
    return MeasurementRecord(device=device, kind=kind, key=key, component=component,
                             scale="mini", stats=stats, measured_at=at)


# -- measurements -------------------------------------------------------------------------------
def test_measurements_are_read_back_as_written_each_devices_in_order(backend):
    store = backend.store
    written = [record(key="a", median=1.0), record(kind="block", key="unet/b0", median=2.0),
               record(device="edge-cpu", key="a", median=3.0), record(key="b", median=4.0)]
    assert store.add_measurements(written[:2]) == 2
    assert store.add_measurements(written[2:]) == 2
    assert store.measurements("local-cpu") == [written[0], written[1], written[3]]
    assert store.measurements("edge-cpu") == [written[2]]
    assert store.measurements("local-cpu", kind="block") == [written[1]]
    assert store.measurements(key="a", kind="model") in ([written[0], written[2]],
                                                         [written[2], written[0]])
    assert sorted(store.measurements(), key=lambda r: r.stats.median_ms) == written
    assert store.measurements("never-measured") == []
    with backend.reopen() as again:  # another process, later
        assert again.measurements("local-cpu") == [written[0], written[1], written[3]]


def test_a_batch_that_fails_half_way_stores_nothing(latency_store):
    def batch():
        yield record(key="first")
        raise OSError("the device went away")

    with pytest.raises(OSError, match="went away"):
        latency_store.add_measurements(batch())
    assert latency_store.measurements() == []


def test_measurements_from_many_threads_are_each_stored_whole(latency_store):
    def write(worker: int) -> None:
        for i in range(10):
            latency_store.add_measurements([record(key=f"w{worker}-{i}", median=i + 1.0)])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = latency_store.measurements("local-cpu")
    assert sorted(r.key for r in stored) == sorted(f"w{w}-{i}" for w in range(4)
                                                   for i in range(10))
    assert all(r.stats.fingerprint["cpu"] == this_host()["cpu"] for r in stored)


# -- predictors ---------------------------------------------------------------------------------
def test_a_saved_predictor_is_found_and_predicts_exactly_as_saved(backend):
    store = backend.store
    assert store.find_predictor("local-cpu", NANOSD, "mini") is None
    predictor = fitted_predictor()
    saved = store.save_predictor(predictor)
    assert saved.identity == predictor.identity
    assert saved.identity.host_fingerprint == this_host()
    with backend.reopen() as again:
        found = again.find_predictor("local-cpu", NANOSD, "mini")
        assert found == saved
        loaded = again.load_predictor(found)
    assert loaded.identity == predictor.identity
    assert loaded.table.entries == predictor.table.entries
    before, after = predictor.predict_features(features()), loaded.predict_features(features())
    for component in spaces.COMPONENTS:
        np.testing.assert_array_equal(after.mean[component], before.mean[component])
        np.testing.assert_array_equal(after.std[component], before.std[component])


def test_the_newest_predictor_of_a_device_space_and_scale_is_the_one_found(latency_store):
    first = latency_store.save_predictor(fitted_predictor(created="2026-12-01T10:00:00.000Z"))
    newer = latency_store.save_predictor(fitted_predictor(created="2026-12-02T10:00:00.000Z",
                                                          seed=3))
    other_scale = latency_store.save_predictor(fitted_predictor(scale="full"))
    other_device = latency_store.save_predictor(fitted_predictor(device="edge-cpu"))
    found = latency_store.find_predictor("local-cpu", NANOSD, "mini")
    assert found == newer and found != first
    assert latency_store.find_predictor("local-cpu", NANOSD, "full") == other_scale
    assert latency_store.find_predictor("local-cpu", spaces.load_space("vae"), "mini") is None
    assert latency_store.list_predictors("edge-cpu") == [other_device]
    listed = latency_store.list_predictors()
    assert sorted(s.location for s in listed) == sorted(
        s.location for s in (newer, other_scale, other_device))
    assert [s.identity.created_at for s in listed] == sorted(s.identity.created_at
                                                             for s in listed)


def test_a_store_keeps_another_hosts_predictor_as_given(latency_store):
    """Judging the fingerprint is load_or_calibrate's job: the store gives it back as is."""
    saved = latency_store.save_predictor(fitted_predictor(fingerprint=elsewhere()))
    found = latency_store.find_predictor("local-cpu", NANOSD, "mini")
    assert found.identity.host_fingerprint == elsewhere() != this_host()
    assert latency_store.load_predictor(found).identity == saved.identity


def test_a_damaged_predictor_is_refused_naming_where_it_is(backend):
    stored = backend.store.save_predictor(fitted_predictor())
    backend.damage_model(stored)
    with pytest.raises(DamagedArtifact) as caught:
        backend.store.load_predictor(stored)
    assert stored.location in str(caught.value) and "\n" not in str(caught.value)


def test_a_predictor_no_longer_stored_is_not_found(backend):
    stored = backend.store.save_predictor(fitted_predictor())
    if backend.name == "file":
        for path in __import__("pathlib").Path(stored.location).iterdir():
            path.unlink()
    else:
        from sqlalchemy import text

        with backend.store.engine.begin() as connection:
            connection.execute(text("DELETE FROM nas_predictor_artifacts"))
    assert backend.store.find_predictor("local-cpu", NANOSD, "mini") is None
    with pytest.raises(PredictorNotFound, match="no longer"):
        backend.store.load_predictor(stored)


# -- reference timings --------------------------------------------------------------------------
def test_the_reference_timing_is_kept_per_device_and_replaced_whole(backend):
    store = backend.store
    assert store.load_reference("local-cpu") is None
    timing = ReferenceTiming(device="local-cpu", nominal_ms=0.913,
                             protocol={"threads": 1, "warmup": 5, "runs": 60,
                                       "provider": "CPUExecutionProvider"},
                             fingerprint=this_host(), measured_at="2026-12-01T10:00:00.000+00:00")
    store.save_reference(timing)
    with backend.reopen() as again:
        loaded = again.load_reference("local-cpu")
    assert loaded == timing and loaded.location  # where it is, for messages
    assert store.load_reference("edge-cpu") is None
    foreign = ReferenceTiming(device="local-cpu", nominal_ms=0.42, protocol=timing.protocol,
                              fingerprint=elsewhere())
    store.save_reference(foreign)
    assert store.load_reference("local-cpu") == foreign


def test_bad_records_are_refused_before_they_reach_a_store():
    with pytest.raises(ValueError, match="device name"):
        record(device="../etc")
    with pytest.raises(ValueError, match="kind 'whole'"):
        record(kind="whole")
    with pytest.raises(ValueError, match="nominal_ms"):
        ReferenceTiming(device="local-cpu", nominal_ms=0.0, protocol={}, fingerprint={})
