"""The device registry: where latency is measured, kept as one JSON file per device.

Files live in ``<home>/devices/NAME.json`` (see :func:`project_home`); a remote device's file holds
its agent token and is readable by the owner only. ``local-cpu`` is built in and always present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnxruntime as ort

from nanosd_nas.latency_models._file_store import FileLatencyStore
from nanosd_nas.latency_models._files import project_home, write_json_atomic
from nanosd_nas.latency_models._precision import PRECISIONS
from nanosd_nas.latency_models._profiler import LocalProfiler, Profiler
from nanosd_nas.latency_models._records import (
    LatencyInputError,
    ReferenceStore,
    check_device_name,
)
from nanosd_nas.latency_models._remote import RemoteProfiler
from nanosd_nas.latency_models._torch_profiler import TORCH_DTYPES, TORCH_TARGETS, TorchProfiler
from nanosd_nas.latency_models.agent import AgentClient, Protocol

#: The device that always exists: this host's CPU, one intra-op thread.
LOCAL_CPU = "local-cpu"
DEVICE_KINDS = ("local", "remote", "torch")
#: What each kind of device can measure at: ONNX kinds convert the exported graph (see
#: ``latency_models._precision``); a ``torch`` device runs the module in a PyTorch dtype.
KIND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "local": PRECISIONS, "remote": PRECISIONS, "torch": TORCH_DTYPES,
}


class DeviceError(Exception):
    """A device registry problem the user can fix (unknown name, duplicate, unreadable file)."""


class DeviceNotFound(DeviceError, LookupError):
    """No device of that name is registered."""


class DeviceExists(DeviceError):
    """A device of that name is already registered."""


@dataclass(frozen=True)
class Device:
    """A registered device.

    Attributes:
        name: the registry name (``local-cpu``, ``pixel-9`` ...).
        kind: ``local`` (ONNX Runtime on this host), ``remote`` (a device agent) or ``torch``
            (the module timed in PyTorch on this host's CPU or GPU).
        protocol: threads, warm-up, runs and execution provider of every measurement.
        url: the agent's root (remote only).
        token: the agent's token (remote only; never shown by :meth:`describe`).
        added_at: when it was registered (ISO 8601, UTC); empty for the built-in device.
        precision: what every model is measured at (:data:`KIND_PRECISIONS`): ``fp32``,
            ``fp16`` or ``int8`` (static QDQ) for ONNX kinds, the dtype for ``torch``.
        torch_device: ``cpu`` or ``cuda`` (torch only).
        compile: run the module through ``torch.compile`` first (torch only).
    """

    name: str
    kind: str
    protocol: Protocol = field(default_factory=Protocol)
    url: str | None = None
    token: str | None = field(default=None, repr=False)
    added_at: str = ""
    precision: str = "fp32"
    torch_device: str | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        check_device_name(self.name)
        if self.kind not in DEVICE_KINDS:
            raise LatencyInputError(f"device kind {self.kind!r} does not exist; kinds: "
                                    f"{', '.join(DEVICE_KINDS)}")
        allowed = KIND_PRECISIONS[self.kind]
        if self.precision not in allowed:
            raise LatencyInputError(f"a {self.kind} device measures at {', '.join(allowed)}; "
                                    f"not {self.precision!r}")
        if self.kind == "torch":
            if self.torch_device not in TORCH_TARGETS:
                raise LatencyInputError(f"torch device {self.name!r} needs a torch device: "
                                        f"{', '.join(TORCH_TARGETS)}")
        elif self.torch_device is not None or self.compile:
            raise LatencyInputError(f"{self.kind} device {self.name!r} takes no torch device "
                                    "or compile (those are for --kind torch)")
        if self.kind == "remote" and not (self.url and self.token):
            raise LatencyInputError(f"remote device {self.name!r} needs an agent URL and token")
        if self.kind != "remote" and (self.url or self.token):
            raise LatencyInputError(f"{self.kind} device {self.name!r} takes no URL or token")

    @property
    def builtin(self) -> bool:
        return self.name == LOCAL_CPU

    def profiler(self, *, timeout: float = 600.0, home: Path | str | None = None,
                 store: ReferenceStore | None = None,
                 precision: str | None = None) -> Profiler:
        """The profiler that measures on this device, at its precision (or at ``precision``,
        as a benchmark asks). A local device keeps its reference model's nominal time in
        ``store`` (by default the file store of the project home), so its ``normalised_ms``
        figures compare across processes."""
        at = self.precision if precision is None else precision
        if at not in KIND_PRECISIONS[self.kind]:
            raise LatencyInputError(f"a {self.kind} device measures at "
                                    f"{', '.join(KIND_PRECISIONS[self.kind])}; not {at!r}")
        if self.kind == "local":
            references = store if store is not None else FileLatencyStore(home=home)
            return LocalProfiler(device=self.name, protocol=self.protocol,
                                 references=references, precision=at)
        if self.kind == "torch":
            return TorchProfiler(device=self.name, protocol=self.protocol,
                                 target=str(self.torch_device), dtype=at, compile=self.compile)
        return RemoteProfiler(url=str(self.url), token=str(self.token), protocol=self.protocol,
                              timeout=timeout, device=self.name, precision=at)

    def describe(self) -> dict[str, Any]:
        """What ``device list`` shows: everything but the token."""
        return {"name": self.name, "kind": self.kind, "builtin": self.builtin,
                "protocol": _protocol_dict(self.protocol), "url": self.url,
                "added_at": self.added_at, "precision": self.precision,
                "torch_device": self.torch_device, "compile": self.compile}

    def to_dict(self) -> dict[str, Any]:
        """The device file's content (with the token)."""
        return {**self.describe(), "token": self.token}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Device:
        return cls(name=document["name"], kind=document["kind"],
                   protocol=Protocol(**document.get("protocol", {})), url=document.get("url"),
                   token=document.get("token"), added_at=document.get("added_at", ""),
                   precision=document.get("precision", "fp32"),
                   torch_device=document.get("torch_device"),
                   compile=bool(document.get("compile", False)))


def _protocol_dict(protocol: Protocol) -> dict[str, Any]:
    return {"threads": protocol.threads, "warmup": protocol.warmup, "runs": protocol.runs,
            "provider": protocol.provider, "graph_optimization": protocol.graph_optimization,
            "sessions": protocol.sessions}


#: 60 paired runs: the median model/reference ratio settles better than with 30, and a U-Net at
#: ``mini`` costs under 10 ms a run, so the export (seconds) still dominates a measurement. One
#: session: three repeat better (see :class:`Protocol`) but cost a calibration at INT8 about a
#: second a member, which the 10-minute budget of ``nanosd-scaled`` at ``mini`` does not have.
BUILTIN_DEVICES = (
    Device(name=LOCAL_CPU, kind="local", protocol=Protocol(threads=1, warmup=5, runs=60)),
)


class DeviceRegistry:
    """The registered devices of one project home.

    Args:
        home: the project home; ``None`` resolves it as :func:`project_home` does.
    """

    def __init__(self, *, home: Path | str | None = None) -> None:
        self.folder = project_home(home) / "devices"

    def devices(self) -> list[Device]:
        """Built-in devices first, then the registered ones by name."""
        registered = sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []
        return [*BUILTIN_DEVICES, *(self._read(path) for path in registered)]

    def get(self, name: str) -> Device:
        """The device called ``name``; :class:`DeviceNotFound` lists the known ones."""
        for device in BUILTIN_DEVICES:
            if device.name == name:
                return device
        check_device_name(name)
        path = self.folder / f"{name}.json"
        if not path.is_file():
            known = ", ".join(d.name for d in self.devices())
            raise DeviceNotFound(f"device {name!r} is not registered; known devices: {known} "
                                 "(add one with 'nanosd-nas device add')")
        return self._read(path)

    def add(self, device: Device, *, check: bool = True) -> Device:
        """Register ``device`` (with its ``added_at`` set) and return it.

        With ``check`` a local device's execution provider must be installed, and a remote
        device's agent must answer with this token and offer the provider — nothing is stored
        otherwise.

        Raises:
            DeviceExists: the name is taken (names differing only in case count as taken).
            ValueError: the execution provider is not available.
            latency_models.agent.DeviceUnreachable: the agent does not answer.
            latency_models.agent.AgentError: the agent refused (401: wrong token).
        """
        self._refuse_duplicate(device.name)
        if check:
            _check_reachable(device)
        stamped = replace(device, added_at=datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            write_json_atomic(self.folder / f"{device.name}.json", stamped.to_dict(),
                              private=True, exclusive=True)
        except FileExistsError:  # registered concurrently
            raise DeviceExists(f"device {device.name!r} is already registered") from None
        return stamped

    def remove(self, name: str) -> None:
        """Forget the device called ``name`` (its measurements stay in the store)."""
        if any(d.name == name for d in BUILTIN_DEVICES):
            raise DeviceError(f"device {name!r} is built in and cannot be removed")
        self.get(name)
        (self.folder / f"{name}.json").unlink()

    def _refuse_duplicate(self, name: str) -> None:
        for existing in self.devices():
            if existing.name.lower() == name.lower():
                raise DeviceExists(f"device {existing.name!r} is already registered"
                                   + ("" if existing.name == name else f" (as {name!r})"))

    def _read(self, path: Path) -> Device:
        try:
            return Device.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DeviceError(f"device file {path} is unreadable: {error}") from None


def _check_reachable(device: Device) -> None:
    provider = device.protocol.provider
    if device.kind == "torch":
        TorchProfiler.check_target(str(device.torch_device), device.precision)
        return
    if device.kind == "local":
        available = list(ort.get_available_providers())
        where = "on this host"
    else:
        client = AgentClient(url=str(device.url), token=str(device.token), timeout=10.0)
        available = list(client.info().get("providers", []))
        where = f"on the agent at {client.url}"
    if provider not in available:
        raise LatencyInputError(f"execution provider {provider!r} is not available {where}; "
                                f"available: {', '.join(available)}")


def profiler_for(device: str, *, home: Path | str | None = None, timeout: float = 600.0,
                 store: ReferenceStore | None = None) -> Profiler:
    """The profiler of the registered device called ``device``; a local device keeps its
    reference timing in ``store`` (by default the file store of the project home).

    Raises:
        DeviceNotFound: no such device.
    """
    return DeviceRegistry(home=home).get(device).profiler(timeout=timeout, home=home,
                                                          store=store)
