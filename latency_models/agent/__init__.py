"""The device side of latency: the measurement protocol, the remote device agent and its client.

This package needs only onnxruntime and numpy (and the standard library), so that it can run on
an edge device without PyTorch or the rest of the project. Its imports are relative: the folder
can be copied to a device on its own and started with ``python -m agent --token TOKEN``.
"""

from ._client import (
    AgentBadRequest,
    AgentClient,
    AgentError,
    AgentInvalidModel,
    DeviceUnreachable,
)
from ._server import (
    AGENT_VERSION,
    DEFAULT_MAX_UPLOAD_BYTES,
    TOKEN_ENV,
    AgentServer,
    device_info,
    make_server,
    run_agent,
)
from ._timing import (
    InvalidModel,
    LatencyStats,
    Protocol,
    Reference,
    fingerprint,
    open_session,
    time_model,
)

__all__ = [
    "AGENT_VERSION", "DEFAULT_MAX_UPLOAD_BYTES", "TOKEN_ENV", "AgentBadRequest", "AgentClient",
    "AgentError", "AgentInvalidModel", "AgentServer", "DeviceUnreachable", "InvalidModel",
    "LatencyStats", "Protocol", "Reference", "device_info", "fingerprint", "make_server",
    "open_session", "run_agent", "time_model",
]
