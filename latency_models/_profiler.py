"""Profilers: measure an ONNX model (or a module) on one device and return latency statistics."""

from __future__ import annotations

import json
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanosd_nas.latency_models._files import write_json_atomic
from nanosd_nas.latency_models.agent import (
    LatencyStats,
    Protocol,
    Reference,
    fingerprint,
    time_model,
)

if TYPE_CHECKING:
    import torch


class Profiler(ABC):
    """Measures ONNX models on one device, with the protocol of ``latency_models.agent``.

    A device measures one model at a time: callers serialise measurements per device (on
    ``local-cpu`` the host is the device, so nothing else of the service may run meanwhile).
    Implementations are not thread-safe.
    """

    #: Registered device name this profiler measures on.
    device: str
    #: The statistic a predictor of this device should learn (the one that repeats best).
    statistic: str = "p10_ms"

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """CPU model, runtime version, execution provider, threads of the device."""

    @abstractmethod
    def measure_onnx(
        self, model: bytes | Path, shapes: dict[str, list[int]] | None = None
    ) -> LatencyStats:
        """Measure an ONNX model given as bytes or a path.

        Raises:
            latency_models.agent.InvalidModel: the model cannot be loaded by the runtime.
        """

    def measure_module(
        self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], component: str
    ) -> LatencyStats:
        """Export ``module`` to ONNX (as ``spaces`` exports ``component``) and measure it."""
        from nanosd_nas.spaces._export import export_onnx_component

        with tempfile.TemporaryDirectory(prefix="nanosd-measure-") as folder:
            path = Path(folder) / f"{component}.onnx"
            export_onnx_component(module, inputs, path, component)
            return self.measure_onnx(path)


class LocalProfiler(Profiler):
    """ONNX Runtime on this host (``local-cpu``, or any installed execution provider).

    The host is shared and its speed drifts, so by default every timed run is paired with a run
    of a fixed reference model and ``normalised_ms`` is reported (see
    :class:`latency_models.agent.Reference`); that is the statistic its predictors learn.
    """

    def __init__(self, *, device: str = "local-cpu", protocol: Protocol | None = None,
                 normalise: bool = True, nominal_file: Path | None = None) -> None:
        self.device = device
        self.protocol = protocol or Protocol()
        self.normalise = normalise
        self.statistic = "normalised_ms" if normalise else "p10_ms"
        self.nominal_file = nominal_file
        self._reference: Reference | None = None

    @property
    def reference(self) -> Reference | None:
        """The reference, timed on first use. Its nominal time comes from ``nominal_file`` when
        that exists (written the first time), so that every process of a device shares it."""
        if self.normalise and self._reference is None:
            from nanosd_nas.latency_models._reference import reference_model

            nominal = self._stored_nominal()
            self._reference = Reference(reference_model(), self.protocol,
                                        rounds=1 if nominal else 5)
            if nominal:
                self._reference.nominal_ms = nominal
            elif self.nominal_file is not None:
                write_json_atomic(self.nominal_file, {
                    "nominal_ms": self._reference.nominal_ms,
                    "protocol": asdict(self.protocol), "fingerprint": fingerprint(self.protocol)})
        return self._reference

    def _stored_nominal(self) -> float | None:
        if self.nominal_file is None or not self.nominal_file.exists():
            return None
        document = json.loads(self.nominal_file.read_text())
        if document.get("protocol") != asdict(self.protocol):
            return None  # measured under another protocol: time it again
        return float(document["nominal_ms"])

    def fingerprint(self) -> dict[str, Any]:
        info = fingerprint(self.protocol)
        if self.reference is not None:
            info["reference_ms"] = round(self.reference.nominal_ms, 4)
        return info

    def measure_onnx(
        self, model: bytes | Path, shapes: dict[str, list[int]] | None = None
    ) -> LatencyStats:
        source = model if isinstance(model, bytes) else str(model)
        return time_model(source, self.protocol, shapes, reference=self.reference)
