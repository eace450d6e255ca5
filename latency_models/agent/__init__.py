"""The device side of latency: the measurement protocol, the remote device agent and its client.

This package needs only onnxruntime, onnx and numpy (and the standard library), so that it can
run on an edge device without PyTorch or the rest of the project; onnx is what checks an upload
before the runtime loads it. Its imports are relative: the folder can be copied to a device on
its own and started with ``NANOSD_NAS_AGENT_TOKEN=TOKEN python -m agent``.
"""

from ._client import (
    CA_FILE_ENV,
    AgentBadRequest,
    AgentClient,
    AgentError,
    AgentInvalidModel,
    DeviceUnreachable,
)
from ._model_check import STANDARD_DOMAINS, check_onnx_upload
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
    MAX_INPUT_ELEMENTS,
    InvalidModel,
    InvalidParameter,
    LatencyStats,
    Protocol,
    Reference,
    cpu_identity,
    cpu_model,
    fingerprint,
    open_session,
    time_model,
)
from ._tls import tls_context

__all__ = [
    "AGENT_VERSION", "CA_FILE_ENV", "DEFAULT_MAX_UPLOAD_BYTES", "MAX_INPUT_ELEMENTS",
    "STANDARD_DOMAINS", "TOKEN_ENV", "AgentBadRequest", "AgentClient", "AgentError",
    "AgentInvalidModel", "AgentServer", "DeviceUnreachable", "InvalidModel", "InvalidParameter",
    "LatencyStats", "Protocol", "Reference",
    "check_onnx_upload", "cpu_identity", "cpu_model", "device_info", "fingerprint",
    "make_server", "open_session", "run_agent", "time_model", "tls_context",
]
