"""One contract, every profiler: the local runtime and a real remote agent answer alike."""

from __future__ import annotations

import pytest
from agent_support import TOKEN, running_agent, tiny_onnx

from nanosd_nas.latency_models import (
    InvalidModel,
    LocalProfiler,
    Profiler,
    Protocol,
    RemoteProfiler,
)

PROTOCOL = Protocol(threads=1, warmup=2, runs=9)


@pytest.fixture(scope="module")
def agent_url():
    with running_agent() as (url, _):
        yield url


@pytest.fixture(params=["local", "remote"])
def profiler(request) -> Profiler:
    if request.param == "local":
        return LocalProfiler(device="local-cpu", protocol=PROTOCOL)
    url = request.getfixturevalue("agent_url")
    return RemoteProfiler(url=url, token=TOKEN, protocol=PROTOCOL, device="loopback")


def test_stats_are_ordered_counted_and_fingerprinted(profiler):
    stats = profiler.measure_onnx(tiny_onnx())
    assert 0 < stats.min_ms <= stats.p10_ms <= stats.median_ms <= stats.p90_ms < 1_000
    assert stats.n == PROTOCOL.runs
    assert set(stats.to_dict()) == {"min_ms", "p10_ms", "median_ms", "p90_ms", "n",
                                    "fingerprint", "normalised_ms"}
    assert stats.fingerprint == profiler.fingerprint()
    assert {"cpu", "machine", "runtime", "provider", "threads"} <= set(stats.fingerprint)
    # the statistic the device's predictors learn is one the profiler reports
    assert getattr(stats, profiler.statistic) > 0
    if isinstance(profiler, LocalProfiler):  # timed against the reference model
        assert stats.fingerprint["reference_ms"] > 0 and stats.normalised_ms > 0
    assert (stats.fingerprint["provider"], stats.fingerprint["threads"]) == (
        PROTOCOL.provider, PROTOCOL.threads)


def test_a_model_file_measures_like_its_bytes(profiler, tmp_path):
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_onnx())
    assert profiler.measure_onnx(path).n == PROTOCOL.runs


def test_dynamic_inputs_take_their_shapes(profiler):
    assert profiler.measure_onnx(tiny_onnx(batch="N"), shapes={"x": [3, 64]}).n == PROTOCOL.runs


def test_an_unloadable_model_is_invalid_model(profiler):
    with pytest.raises(InvalidModel, match="not a loadable ONNX model"):
        profiler.measure_onnx(b"\x08\x01garbage")


def test_a_dynamic_input_without_its_shape_is_a_value_error_naming_it(profiler):
    with pytest.raises(ValueError, match=r"'x'.*dynamic"):
        profiler.measure_onnx(tiny_onnx(batch="N"))
