"""The measurement store: every latency measured, one JSON line per measurement.

Files live in ``<home>/measurements/DEVICE.jsonl`` (see :func:`project_home`). A record is
appended with one ``write`` of the whole line, then flushed and fsynced: a reader never sees
half a record, and a measurement that failed stores nothing. (The search issue moves these
records into the database.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nanosd_nas.latency_models._devices import check_device_name
from nanosd_nas.latency_models._files import project_home
from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models.agent import LatencyStats

logger = logging.getLogger(__name__)

#: What a measurement is of: a whole component of a spec, or one block of a block table.
MEASUREMENT_KINDS = ("model", "block")


class MeasurementStoreError(Exception):
    """A measurement file holds a line that is not a record (edited by hand?)."""


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
    measured_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))

    def __post_init__(self) -> None:
        check_device_name(self.device)
        if self.kind not in MEASUREMENT_KINDS:
            raise ValueError(f"measurement kind {self.kind!r} does not exist; kinds: "
                             f"{', '.join(MEASUREMENT_KINDS)}")
        for name in ("key", "component", "scale"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"measurement {name}={value!r} must be a non-empty string")

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


class MeasurementStore:
    """Appends and reads measurement records of one project home. Thread-safe.

    Args:
        home: the project home; ``None`` resolves it as :func:`project_home` does.
    """

    _append_lock = threading.Lock()

    def __init__(self, *, home: Path | str | None = None) -> None:
        self.folder = project_home(home) / "measurements"

    def path(self, device: str) -> Path:
        """The file that holds ``device``'s records."""
        return self.folder / f"{check_device_name(device)}.jsonl"

    def append(self, record: MeasurementRecord) -> None:
        """Store ``record``, durably, as one whole line."""
        line = json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":")) + "\n"
        path = self.path(record.device)
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._append_lock:
            descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _drop_torn_tail(descriptor, path)
                payload = line.encode("utf-8")
                # One write of the whole line: O_APPEND keeps concurrent writers apart.
                written = os.write(descriptor, payload)
                if written != len(payload):
                    raise OSError(f"short write to {path}: {written} of {len(payload)} bytes")
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def measure(self, profiler: Profiler, model: bytes | Path, *, kind: str, key: str,
                component: str, scale: str,
                shapes: dict[str, list[int]] | None = None) -> MeasurementRecord:
        """Measure ``model`` with ``profiler``, store the record and return it.

        A failed measurement raises and stores nothing.
        """
        # Validated before measuring, so a bad key does not cost a measurement.
        MeasurementRecord(device=profiler.device, kind=kind, key=key, component=component,
                          scale=scale, stats=LatencyStats(0, 0, 0, 0, 1))
        stats = profiler.measure_onnx(model, shapes)
        record = MeasurementRecord(device=profiler.device, kind=kind, key=key,
                                   component=component, scale=scale, stats=stats)
        self.append(record)
        return record

    def records(self, device: str | None = None, *, kind: str | None = None,
                key: str | None = None) -> list[MeasurementRecord]:
        """Stored records in the order written, optionally of one device, kind or key."""
        if device is not None:
            paths = [self.path(device)]
        else:
            paths = sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []
        found = []
        for path in paths:
            for record in _read_records(path):
                if (kind is None or record.kind == kind) and (key is None or record.key == key):
                    found.append(record)
        return found


def _drop_torn_tail(descriptor: int, path: Path) -> None:
    """Cut a last line that has no newline (a write torn by a crash) before appending."""
    size = os.fstat(descriptor).st_size
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(descriptor, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end < size:
        logger.warning("%s: dropping an incomplete last line (%d bytes)", path, size - end)
        os.ftruncate(descriptor, end)


def _read_records(path: Path) -> list[MeasurementRecord]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    if lines[-1]:
        # The last line has no newline: a write torn by a crash, never a whole record.
        logger.warning("%s: ignoring an incomplete last line (%d bytes)", path, len(lines[-1]))
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            records.append(MeasurementRecord.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as error:
            raise MeasurementStoreError(f"{path}:{number}: not a measurement record "
                                        f"({error})") from None
    return records
