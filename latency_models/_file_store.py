"""The file latency store: the project home's ``measurements/``, ``predictors/`` and
``references/`` folders, for use without a database.

Layout (``<home>`` as :func:`project_home` resolves it)::

    measurements/DEVICE.jsonl                      one JSON line per measurement
    predictors/DEVICE/SPACE-DIGEST-SCALE/          predictor.json, model.safetensors,
                                                   block_table.json
    references/DEVICE.json                         the reference model's nominal time

A measurement is appended with one ``write`` of the whole line, then flushed and fsynced; every
other file is replaced whole (temporary file, then rename).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nanosd_nas.latency_models._files import project_home, write_json_atomic
from nanosd_nas.latency_models._predictor import (
    METADATA_FILE,
    LatencyPredictor,
    read_artifact,
    write_artifact,
)
from nanosd_nas.latency_models._records import (
    DamagedArtifact,
    MeasurementRecord,
    PredictorIdentity,
    PredictorNotFound,
    ReferenceTiming,
    StoredPredictor,
    check_device_name,
)
from nanosd_nas.latency_models._store import LatencyStore
from nanosd_nas.spaces import Space

logger = logging.getLogger(__name__)


class MeasurementStoreError(DamagedArtifact):
    """A measurement file holds a line that is not a record (edited by hand?)."""


def predictor_folder(device: str, space: Space, scale: str, *,
                     home: Path | str | None = None) -> Path:
    """Where the file store keeps the predictor of ``device`` for ``space`` at ``scale``;
    keyed by the space's digest too, so an edited or same-named user space gets its own."""
    return (project_home(home) / "predictors" / check_device_name(device)
            / f"{space.name}-{space.digest}-{scale}")


class FileLatencyStore(LatencyStore):
    """The :class:`LatencyStore` of one project home (see the module's layout). Thread-safe;
    processes may share a home.

    Args:
        home: the project home; ``None`` resolves it as :func:`project_home` does.
    """

    _append_lock = threading.Lock()

    def __init__(self, *, home: Path | str | None = None) -> None:
        self.home = project_home(home)
        self.folder = self.home / "measurements"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(home={str(self.home)!r})"

    # -- measurements ---------------------------------------------------------------------
    def path(self, device: str) -> Path:
        """The file that holds ``device``'s measurements."""
        return self.folder / f"{check_device_name(device)}.jsonl"

    def add_measurements(self, records: Iterable[MeasurementRecord]) -> int:
        by_device: dict[str, list[MeasurementRecord]] = {}
        for record in records:
            by_device.setdefault(record.device, []).append(record)
        for device, batch in by_device.items():
            # One write per device: a batch lands whole or (torn by a crash) not at all.
            self._append(self.path(device), "".join(
                json.dumps(r.to_dict(), sort_keys=True, separators=(",", ":")) + "\n"
                for r in batch).encode("utf-8"))
        return sum(len(batch) for batch in by_device.values())

    def _append(self, path: Path, payload: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._append_lock:
            descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                _drop_torn_tail(descriptor, path)
                # One write of whole lines: O_APPEND keeps concurrent writers apart.
                written = os.write(descriptor, payload)
                if written != len(payload):
                    raise OSError(f"short write to {path}: {written} of {len(payload)} bytes")
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def measurements(self, device: str | None = None, *, kind: str | None = None,
                     key: str | None = None) -> list[MeasurementRecord]:
        if device is not None:
            paths = [self.path(device)]
        else:
            paths = sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []
        return [record for path in paths for record in _read_records(path)
                if (kind is None or record.kind == kind) and (key is None or record.key == key)]

    # -- predictors -----------------------------------------------------------------------
    def save_predictor(self, predictor: LatencyPredictor) -> StoredPredictor:
        identity = predictor.identity
        folder = self._folder(identity.device, identity.space, identity.space_digest,
                              identity.scale)
        write_artifact(folder, predictor.to_artifact())
        return StoredPredictor(identity=identity, location=str(folder))

    def find_predictor(self, device: str, space: Space, scale: str) -> StoredPredictor | None:
        folder = self._folder(device, space.name, space.digest, scale)
        return self._stored(folder) if (folder / METADATA_FILE).is_file() else None

    def list_predictors(self, device: str | None = None) -> list[StoredPredictor]:
        root = self.home / "predictors"
        pattern = f"{check_device_name(device)}/*/{METADATA_FILE}" if device is not None \
            else f"*/*/{METADATA_FILE}"
        found = [self._stored(path.parent) for path in root.glob(pattern)] \
            if root.is_dir() else []
        return sorted(found, key=lambda s: (s.identity.created_at, s.location))

    def load_predictor(self, stored: StoredPredictor) -> LatencyPredictor:
        folder = Path(stored.location)
        try:
            artifact = read_artifact(folder)
        except FileNotFoundError:
            raise PredictorNotFound(f"the predictor at {folder} is no longer there") from None
        return LatencyPredictor.from_artifact(artifact, location=str(folder))

    def _folder(self, device: str, space: str, digest: str, scale: str) -> Path:
        return self.home / "predictors" / check_device_name(device) / f"{space}-{digest}-{scale}"

    @staticmethod
    def _stored(folder: Path) -> StoredPredictor:
        path = folder / METADATA_FILE
        try:
            metadata = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DamagedArtifact(f"predictor at {folder} is damaged: {path.name}: "
                                  f"{str(error)[:200]}") from None
        if not isinstance(metadata, dict):
            raise DamagedArtifact(f"predictor at {folder} is damaged: {path.name} is not a "
                                  "JSON object")
        identity = PredictorIdentity.from_metadata(metadata, location=str(folder))
        return StoredPredictor(identity=identity, location=str(folder))

    # -- reference timings ----------------------------------------------------------------
    def reference_path(self, device: str) -> Path:
        """The file that holds ``device``'s reference timing."""
        return self.home / "references" / f"{check_device_name(device)}.json"

    def save_reference(self, timing: ReferenceTiming) -> None:
        write_json_atomic(self.reference_path(timing.device), timing.to_dict())

    def load_reference(self, device: str) -> ReferenceTiming | None:
        path = self.reference_path(device)
        try:
            document: Any = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise DamagedArtifact(f"reference timing at {path} is damaged: "
                                  f"{str(error)[:200]}") from None
        try:
            return ReferenceTiming(
                device=device, nominal_ms=document["nominal_ms"],
                protocol=dict(document["protocol"]), fingerprint=dict(document["fingerprint"]),
                measured_at=str(document.get("measured_at", "")), location=str(path))
        except (KeyError, TypeError, ValueError) as error:
            raise DamagedArtifact(f"reference timing at {path} is damaged: {error}") from None


class MeasurementStore(FileLatencyStore):
    """The file store under its former name, with its former ``append`` and ``records``; for
    callers that have not moved to :class:`LatencyStore`'s methods yet."""

    def append(self, record: MeasurementRecord) -> None:
        """Store ``record`` (:meth:`add_measurements` of one)."""
        self.add_measurements([record])

    def records(self, device: str | None = None, *, kind: str | None = None,
                key: str | None = None) -> list[MeasurementRecord]:
        """:meth:`measurements`."""
        return self.measurements(device, kind=kind, key=key)


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
