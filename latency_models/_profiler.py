"""Profilers: measure an ONNX model (or a module) on one device and return latency statistics."""

from __future__ import annotations

import logging
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanosd_nas.latency_models._precision import (
    check_precision,
    convert,
    feeds_of,
    output_snr_db,
)
from nanosd_nas.latency_models._records import (
    DamagedArtifact,
    ReferenceStore,
    ReferenceTiming,
    fingerprint_difference,
    host_fingerprint,
)
from nanosd_nas.latency_models.agent import (
    LatencyStats,
    Protocol,
    Reference,
    fingerprint,
    time_model,
)

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


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
    #: What the models built here are converted to before they are measured (see
    #: ``latency_models._precision``); part of every fingerprint unless ``fp32``.
    precision: str = "fp32"

    @property
    def output_snr(self) -> list[tuple[str, float]]:
        """``(component, snr_db)`` of every converted model this profiler measured, oldest
        first: its outputs against the FP32 graph's on the same inputs."""
        log: list[tuple[str, float]] = self.__dict__.setdefault("_output_snr", [])
        return log

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """CPU model, runtime version, execution provider, threads of the device (and what
        each measurement carries besides, such as a local device's ``reference_ms``)."""

    def host_fingerprint(self) -> dict[str, Any]:
        """The device part of :meth:`fingerprint`: what a predictor or reference timing must
        have been made under to be used here. Implementations may answer it more cheaply."""
        return host_fingerprint(self.fingerprint())

    def notices(self) -> list[str]:
        """What the profiler did that its user should hear about, one line each (a foreign
        or damaged reference timing it replaced); empty by default."""
        return []

    @abstractmethod
    def measure_onnx(
        self, model: bytes | Path, shapes: dict[str, list[int]] | None = None
    ) -> LatencyStats:
        """Measure an ONNX model given as bytes or a path.

        Raises:
            latency_models.agent.InvalidModel: the model cannot be loaded by the runtime.
        """

    def with_precision(self, info: dict[str, Any]) -> dict[str, Any]:
        """``info`` (a fingerprint) with this profiler's precision, unless it is ``fp32`` (so
        that what was measured before precisions existed keeps its fingerprint)."""
        return info if self.precision == "fp32" else {**info, "precision": self.precision}

    def measure_module(
        self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], component: str, *,
        check_output: bool = True,
    ) -> LatencyStats:
        """Export ``module`` to ONNX (as ``spaces`` exports ``component``), convert it to the
        profiler's precision and measure it; with ``check_output``, a converted model's output
        SNR against FP32 is appended to :attr:`output_snr` (0.6 s for a ``mini`` U-Net, which
        calibration, reading only latencies, does without)."""
        from nanosd_nas.spaces import export_onnx_component

        with tempfile.TemporaryDirectory(prefix="nanosd-measure-") as folder:
            path = Path(folder) / f"{component}.onnx"
            names = export_onnx_component(module, inputs, path, component)
            if self.precision == "fp32":
                return self.measure_onnx(path)
            feeds = feeds_of(path, names, inputs)
            converted = convert(path, self.precision, feeds, what=component)
            if check_output:
                self.output_snr.append((component, output_snr_db(path, converted, feeds)))
            stats = self.measure_onnx(converted)
            return replace(stats, fingerprint=self.with_precision(stats.fingerprint))


class LocalProfiler(Profiler):
    """ONNX Runtime on this host (``local-cpu``, or any installed execution provider).

    The host is shared and its speed drifts, so by default every timed run is paired with a run
    of a fixed reference model and ``normalised_ms`` is reported (see
    :class:`latency_models.agent.Reference`); that is the statistic its predictors learn. The
    reference is INT8 for an ``int8`` profiler and FP32 otherwise
    (:func:`~latency_models._reference.reference_precision`); a stored timing of the other
    reference (the same device name at another precision) is timed again, without a notice.

    Args:
        device: the registered device name.
        protocol: threads, warm-up, runs and execution provider.
        normalise: time against the reference model and report ``normalised_ms``.
        references: where the device's reference timing is kept, so that every process of
            the device shares one nominal time; a stored timing made under another host
            fingerprint, or that cannot be read, is named (see :meth:`notices`) and replaced
            by a fresh one, never used. ``None``: timed anew by each profiler.
        precision: what the models built here are converted to before they are measured
            (``fp32``, ``fp16``, ``int8``; see :meth:`Profiler.measure_module`).
    """

    def __init__(self, *, device: str = "local-cpu", protocol: Protocol | None = None,
                 normalise: bool = True, references: ReferenceStore | None = None,
                 precision: str = "fp32") -> None:
        self.device = device
        self.protocol = protocol or Protocol()
        self.precision = check_precision(precision)
        self.normalise = normalise
        self.statistic = "normalised_ms" if normalise else "p10_ms"
        self.references = references
        self._reference: Reference | None = None
        self._notices: list[str] = []

    @property
    def reference(self) -> Reference | None:
        """The reference, timed on first use; its nominal time comes from :attr:`references`
        when they hold one of this reference timed on this host with this protocol (stored
        when timed anew)."""
        if self.normalise and self._reference is None:
            from nanosd_nas.latency_models._reference import reference_model

            nominal = self._stored_nominal()
            self._reference = Reference(reference_model(self.precision), self.protocol,
                                        rounds=1 if nominal else 5)
            if nominal:
                self._reference.nominal_ms = nominal
            elif self.references is not None:
                self.references.save_reference(ReferenceTiming(
                    device=self.device, nominal_ms=self._reference.nominal_ms,
                    protocol=asdict(self.protocol), fingerprint=self._reference_fingerprint()))
        return self._reference

    def with_precision(self, info: dict[str, Any]) -> dict[str, Any]:
        """``info`` with the precision, and for an INT8 device that times against the INT8
        reference, that reference's name: figures timed against another model (an earlier
        INT8 reference) have another fingerprint and are never mixed with these."""
        from nanosd_nas.latency_models._reference import INT8_REFERENCE

        info = super().with_precision(info)
        if self.normalise and self.precision == "int8":
            info = {**info, "reference": INT8_REFERENCE}
        return info

    def _reference_fingerprint(self) -> dict[str, Any]:
        """This host's fingerprint; for a reference at the device's own precision (INT8), with
        that precision and the reference's name, as the device's figures carry them."""
        from nanosd_nas.latency_models._reference import reference_precision

        here = fingerprint(self.protocol)
        return here if reference_precision(self.precision) == "fp32" else self.with_precision(here)

    def _stored_nominal(self) -> float | None:
        if self.references is None:
            return None
        try:
            stored = self.references.load_reference(self.device)
        except DamagedArtifact as error:
            self._notice(f"{error}; timed the reference again on this host")
            return None
        if stored is None:
            return None
        here = self._reference_fingerprint()
        recorded = host_fingerprint(stored.fingerprint)
        if any(recorded.get(key) != here.get(key) for key in ("precision", "reference")):
            return None  # another reference model (precision): timed again, nothing foreign
        if recorded != here:
            self._notice(f"reference timing at {stored.location} was "
                         f"{fingerprint_difference(recorded, here)}"
                         "; timed the reference again on this host")
            return None
        # A timing stored before the protocol named its graph optimisation had it on; the
        # reference is timed in one session whatever the protocol's sessions.
        recorded_protocol = {"graph_optimization": True, **stored.protocol, "sessions": 1}
        if recorded_protocol != asdict(replace(self.protocol, sessions=1)):
            return None  # this host under another protocol: timed again, nothing foreign
        return float(stored.nominal_ms)

    def _notice(self, line: str) -> None:
        logger.warning("%s", line)
        self._notices.append(line)

    def notices(self) -> list[str]:
        return list(self._notices)

    def host_fingerprint(self) -> dict[str, Any]:
        return self.with_precision(fingerprint(self.protocol))  # without timing the reference

    def fingerprint(self) -> dict[str, Any]:
        info = self.with_precision(fingerprint(self.protocol))
        if self.reference is not None:
            info["reference_ms"] = round(self.reference.nominal_ms, 4)
        return info

    def measure_onnx(
        self, model: bytes | Path, shapes: dict[str, list[int]] | None = None
    ) -> LatencyStats:
        source = model if isinstance(model, bytes) else str(model)
        return time_model(source, self.protocol, shapes, reference=self.reference)
