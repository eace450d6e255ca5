"""What the latency store keeps, as typed values: measurements, reference timings, predictor
identities; and the errors of stored artifacts that cannot be used."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from nanosd_nas.latency_models.agent import LatencyStats

#: What a measurement is of: a whole component of a spec, or one block of a block table.
MEASUREMENT_KINDS = ("model", "block")
#: Fingerprint entries that describe one measurement rather than the device: the reference
#: model's nominal time (timed per host, see :class:`LocalProfiler`) and the pipeline scale.
PER_MEASUREMENT_KEYS = ("reference_ms", "scale")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class LatencyInputError(ValueError):
    """A value given to ``latency_models`` is not valid (a device name, a calibration plan, a
    statistic the device does not report ...); the message shows the value."""


def check_device_name(name: str) -> str:
    """``name`` if it is a valid device name (letters, digits, ``-``, ``_``; at most 64)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise LatencyInputError(f"device name {name!r} must be 1-64 letters, digits, '-' or '_', "
                                "starting with a letter or digit")
    return name


def now_iso() -> str:
    """The current UTC time, ISO 8601 with milliseconds (how the store writes times)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def host_fingerprint(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The device part of a fingerprint (CPU, machine, runtime, provider, threads), without
    what varies per measurement (:data:`PER_MEASUREMENT_KEYS`)."""
    return {k: v for k, v in fingerprint.items() if k not in PER_MEASUREMENT_KEYS}


def fingerprint_difference(recorded: Mapping[str, Any], here: Mapping[str, Any]) -> str:
    """``recorded under cpu='A', threads=2; this host's is cpu='B', threads=1``: the entries
    that differ, each side in full."""
    keys = sorted(k for k in recorded.keys() | here.keys() if recorded.get(k) != here.get(k))

    def show(side: Mapping[str, Any]) -> str:
        return ", ".join(f"{k}={side.get(k)!r}" for k in keys) or "the same"

    return f"recorded under {show(recorded)}; this host's is {show(here)}"


class PredictorNotFound(LookupError):
    """The device has no predictor for that space and scale; the message says how to make one."""


class DamagedArtifact(ValueError):
    """A stored predictor, reference timing or measurement cannot be read back whole; the
    message names where it is and what is wrong. Never half-used."""


class ForeignPredictor(PredictorNotFound):
    """The stored predictor was made under another host fingerprint (or learned another
    statistic): it is not this device's; the message names it, both fingerprints and the
    command that calibrates again."""


@dataclass(frozen=True)
class MeasurementRecord:
    """One measurement.

    Attributes:
        device: registered device name.
        kind: ``model`` (a spec's component) or ``block`` (one block of a table).
        key: the spec id (``model``) or the block key (``block``).
        component: ``unet``, ``vae_encoder``, ``vae_decoder`` (or the block's component).
        scale: ``full`` or ``mini``.
        stats: the latency statistics with the device fingerprint.
        measured_at: ISO 8601 time, UTC; now if not given.
    """

    device: str
    kind: str
    key: str
    component: str
    scale: str
    stats: LatencyStats
    measured_at: str = field(default_factory=now_iso)

    def __post_init__(self) -> None:
        check_device_name(self.device)
        if self.kind not in MEASUREMENT_KINDS:
            raise LatencyInputError(f"measurement kind {self.kind!r} does not exist; kinds: "
                                    f"{', '.join(MEASUREMENT_KINDS)}")
        for name in ("key", "component", "scale"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise LatencyInputError(f"measurement {name}={value!r} must be a non-empty string")

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "kind": self.kind, "key": self.key,
                "component": self.component, "scale": self.scale,
                "stats": self.stats.to_dict(), "measured_at": self.measured_at}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> MeasurementRecord:
        return cls(device=document["device"], kind=document["kind"], key=document["key"],
                   component=document["component"], scale=document["scale"],
                   stats=LatencyStats.from_dict(document["stats"]),
                   measured_at=document["measured_at"])


@dataclass(frozen=True)
class ReferenceTiming:
    """The nominal time of the reference model on one local device (see
    :class:`latency_models.agent.Reference`): what turns paired ratios into ``normalised_ms``.
    Valid only under the host fingerprint and protocol it was timed with.

    Attributes:
        device: registered device name.
        nominal_ms: the reference's p10 in its fastest window.
        protocol: threads, warm-up, runs, provider of the timing.
        fingerprint: the host fingerprint it was timed on (:func:`host_fingerprint`).
        measured_at: ISO 8601 time, UTC.
        location: where the store keeps it (a file, or a row of a database); set on load.
    """

    device: str
    nominal_ms: float
    protocol: dict[str, Any]
    fingerprint: dict[str, Any]
    measured_at: str = field(default_factory=now_iso)
    location: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_device_name(self.device)
        if not isinstance(self.nominal_ms, int | float) or not self.nominal_ms > 0:
            raise LatencyInputError(f"reference nominal_ms={self.nominal_ms!r} must be a positive "
                                    "number")

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "nominal_ms": self.nominal_ms,
                "protocol": dict(self.protocol), "fingerprint": dict(self.fingerprint),
                "measured_at": self.measured_at}


class ReferenceStore(Protocol):
    """The half of a :class:`LatencyStore` a profiler needs: its device's reference timing."""

    def load_reference(self, device: str) -> ReferenceTiming | None: ...

    def save_reference(self, timing: ReferenceTiming) -> None: ...


@dataclass(frozen=True)
class PredictorIdentity:
    """What a predictor is: for which device, space (name and digest) and scale, in which
    statistic, made on which host and when, and how accurate it was on held-out models.

    Attributes:
        device: registered device name.
        space: the space's name.
        space_digest: the space's digest when calibrated (an edited space is another space).
        scale: ``full`` or ``mini``.
        statistic: the latency statistic it predicts (``normalised_ms``, ``p10_ms`` ...).
        fingerprint: the profiler's fingerprint at calibration (with ``reference_ms`` for a
            local device, and ``scale``).
        created_at: ISO 8601 time, UTC, of the calibration; also its version.
        held_out: held-out accuracy per component and for the pipeline (empty if none).
    """

    device: str
    space: str
    space_digest: str
    scale: str
    statistic: str
    fingerprint: dict[str, Any]
    created_at: str
    held_out: dict[str, Any] = field(default_factory=dict)

    @property
    def host_fingerprint(self) -> dict[str, Any]:
        """The device part of :attr:`fingerprint` (what must match this host's)."""
        return host_fingerprint(self.fingerprint)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], *, location: str) -> PredictorIdentity:
        """The identity recorded in a predictor's metadata document (``predictor.json``).

        Raises:
            DamagedArtifact: a field is missing or of the wrong type, naming ``location``.
        """
        texts = {"device": "device", "space": "space", "space_digest": "space_digest",
                 "scale": "scale", "statistic": "statistic", "created_at": "created"}
        values: dict[str, Any] = {}
        for name, key in texts.items():
            value = metadata.get(key)
            if not isinstance(value, str) or not value:
                raise DamagedArtifact(f"predictor at {location} is damaged: its metadata has no "
                                      f"{key!r} (found {value!r})")
            values[name] = value
        for name in ("fingerprint", "held_out"):
            value = metadata.get(name, {} if name == "held_out" else None)
            if not isinstance(value, dict):
                raise DamagedArtifact(f"predictor at {location} is damaged: its metadata's "
                                      f"{name!r} is not a mapping (found {value!r})")
            values[name] = dict(value)
        return cls(**values)


@dataclass(frozen=True)
class StoredPredictor:
    """A predictor as a store lists it: its identity and where it is, without its model.

    Attributes:
        identity: what the predictor is.
        location: where the store keeps it (a folder, or a row of a database).
        id: the database's id of the predictor (what predicted trial values cite); ``None``
            in a file store.
    """

    identity: PredictorIdentity
    location: str
    id: int | None = None
