"""Profilers (local ONNX Runtime, remote device agent), block latency tables, learned predictor."""

from latency_models._profiler import LocalProfiler, Profiler
from latency_models.agent import InvalidModel, LatencyStats, Protocol

__all__ = ["InvalidModel", "LatencyStats", "LocalProfiler", "Profiler", "Protocol"]
