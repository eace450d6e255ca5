"""The device side of latency: the measurement protocol and the remote device agent.

This package needs only onnxruntime and numpy (and the standard library), so that it can run on
an edge device without PyTorch or the rest of the project.
"""

from latency_models.agent._timing import (
    InvalidModel,
    LatencyStats,
    Protocol,
    fingerprint,
    open_session,
    time_model,
)

__all__ = ["InvalidModel", "LatencyStats", "Protocol", "fingerprint", "open_session", "time_model"]
