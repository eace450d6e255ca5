"""The remote profiler: measures on a device agent (``nanosd-nas agent``) over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nanosd_nas.latency_models._precision import check_precision
from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models._records import LatencyInputError
from nanosd_nas.latency_models.agent import AgentClient, AgentError, LatencyStats, Protocol


class RemoteProfiler(Profiler):
    """Measures ONNX models on a remote device agent, with the same protocol as locally.

    The device measures one model at a time (the agent serialises), so a remote device can
    measure while this host works. The agent's ``/v1/info`` is asked once, on first need.

    Args:
        url: the agent's root, ``http://HOST:PORT``.
        token: the agent's bearer token.
        protocol: threads, warm-up, runs and execution provider on the device.
        timeout: seconds to wait for one answer (including waiting for the device).
        device: the registered device name.
        precision: what the models built here are converted to before they are measured
            (``fp32``, ``fp16``, ``int8``; see :meth:`Profiler.measure_module`).

    Raises (from the measuring methods):
        latency_models.agent.DeviceUnreachable: the agent does not answer.
        latency_models.agent.AgentError: the agent refused (``status`` 401: wrong token).
        latency_models.agent.InvalidModel: the device's runtime cannot load the model (it is
            also an ``AgentError`` with status 400).
        ValueError: the agent refused a parameter or the input shapes (an ``AgentError``
            with status 400, as the local profiler raises ``ValueError``).
    """

    def __init__(self, *, url: str, token: str, protocol: Protocol | None = None,
                 timeout: float = 600.0, device: str = "remote", precision: str = "fp32") -> None:
        self.client = AgentClient(url=url, token=token, timeout=timeout)
        self.protocol = protocol or Protocol()
        self.device = device
        self.precision = check_precision(precision)
        self._info: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return self.client.url

    def info(self) -> dict[str, Any]:
        """The agent's ``/v1/info`` (cached after the first call)."""
        if self._info is None:
            self._info = self.client.info()
        return self._info

    def fingerprint(self) -> dict[str, Any]:
        return self.with_precision({**self.info()["fingerprint"],
                                    "provider": self.protocol.provider,
                                    "threads": self.protocol.threads})

    def measure_onnx(
        self, model: bytes | Path, shapes: dict[str, list[int]] | None = None
    ) -> LatencyStats:
        if not isinstance(model, bytes) and Path(f"{model}.data").exists():
            raise LatencyInputError(f"{Path(model).name} keeps its weights in an external data "
                                    "file (a model over 2 GiB); such models cannot be sent to "
                                    "an agent")
        payload = model if isinstance(model, bytes) else Path(model).read_bytes()
        limit = self.info().get("max_upload_bytes")
        # Refused here rather than after uploading hundreds of megabytes for nothing.
        if isinstance(limit, int) and len(payload) > limit:
            raise AgentError(self.url, 413, f"model of {len(payload)} bytes exceeds this agent's "
                             f"limit of {limit} bytes (client-side check)", "too_large")
        return self.client.measure(payload, self.protocol, shapes)
