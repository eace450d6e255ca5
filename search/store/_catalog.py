"""What studies refer to: devices, architectures, latency predictors and measurements."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from nanosd_nas.search.store._errors import ArchitectureNotFound, UnknownDevice
from nanosd_nas.search.store._models import (
    ArchitectureRow,
    Base,
    DeviceRow,
    MeasurementRow,
    PredictorRow,
)
from nanosd_nas.search.store._records import DeviceRecord, PredictorRecord
from nanosd_nas.search.store._session import StoreBase
from nanosd_nas.search.store._types import utcnow
from nanosd_nas.spaces import ArchSpec

if TYPE_CHECKING:
    from nanosd_nas.latency_models import Device, MeasurementRecord


#: Spec ids bound in one ``IN`` clause (well under SQLite's limit on bound parameters).
_IDS_PER_QUERY = 500


def upsert_statement(session: Session, table: type[Base]) -> Any:
    """An ``INSERT`` of ``table`` with the backend's ``ON CONFLICT`` clauses (SQLite and
    PostgreSQL spell them alike)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table)


def _to_device(row: DeviceRow) -> DeviceRecord:
    return DeviceRecord(id=row.id, name=row.name, kind=row.kind, protocol=dict(row.protocol),
                        url=row.url, fingerprint=row.fingerprint, stored_at=row.stored_at,
                        updated_at=row.updated_at)


def _to_predictor(row: PredictorRow) -> PredictorRecord:
    return PredictorRecord(id=row.id, device=row.device.name, space=row.space,
                           space_digest=row.space_digest, scale=row.scale, version=row.version,
                           statistic=row.statistic, held_out=dict(row.held_out), path=row.path,
                           stored_at=row.stored_at)


def iso_time(moment: datetime) -> str:
    """``moment`` as the latency store's records write times (ISO 8601)."""
    # The file store writes milliseconds; keep them so that a record reads back as written.
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time of a latency record as an aware datetime (UTC if it has no zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r} is not ISO 8601") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class CatalogMixin(StoreBase):
    """Devices, architectures, predictors and measurements (see :class:`search.store.Store`)."""

    # -- devices ----------------------------------------------------------------------------
    def upsert_device(self, device: Device, *,
                      fingerprint: dict[str, Any] | None = None) -> DeviceRecord:
        """Store ``device`` (as the registry describes it; never its agent token), or update
        the stored one of that name. ``fingerprint`` (CPU, runtime, provider) is kept if given."""
        described = device.describe()
        # What every measurement is made at travels with the protocol (fp32 unless said).
        protocol = {**described["protocol"], "precision": described["precision"]}
        if described["torch_device"] is not None:
            protocol.update(torch_device=described["torch_device"], compile=described["compile"])
        fields: dict[str, Any] = {"kind": described["kind"], "protocol": protocol,
                                  "url": described["url"], "updated_at": utcnow()}
        if fingerprint is not None:
            fields["fingerprint"] = dict(fingerprint)
        with self._session(write=True) as session:
            statement = upsert_statement(session, DeviceRow).values(
                name=device.name, stored_at=utcnow(), **fields)
            session.execute(statement.on_conflict_do_update(index_elements=["name"],
                                                            set_=fields))
            row = session.scalar(select(DeviceRow).where(DeviceRow.name == device.name)
                                 .execution_options(populate_existing=True))
            return _to_device(self._found(row, device.name))

    def get_device(self, name: str) -> DeviceRecord:
        """The stored device called ``name``; :class:`UnknownDevice` if there is none."""
        if "\x00" in name:  # no stored name has one; PostgreSQL refuses it in a query
            raise UnknownDevice(name)
        with self._session() as session:
            row = session.scalar(select(DeviceRow).where(DeviceRow.name == name))
            return _to_device(self._found(row, name))

    def list_devices(self) -> list[DeviceRecord]:
        """Every stored device, by name."""
        with self._session() as session:
            return [_to_device(row) for row in
                    session.scalars(select(DeviceRow).order_by(DeviceRow.name))]

    # -- architectures ----------------------------------------------------------------------
    def upsert_architecture(self, spec: ArchSpec) -> str:
        """Store ``spec`` under its spec id unless it is there already; returns the id."""
        spec_id = spec.spec_id
        with self._session(write=True) as session:
            statement = upsert_statement(session, ArchitectureRow).values(
                spec_id=spec_id, schema_version=spec.schema_version, spec_json=spec.to_json(),
                stored_at=utcnow())
            session.execute(statement.on_conflict_do_nothing(index_elements=["spec_id"]))
        return spec_id

    def get_architecture(self, spec_id: str) -> ArchSpec:
        """The stored spec of ``spec_id``."""
        with self._session() as session:
            row = session.get(ArchitectureRow, spec_id)
            if row is None:
                raise ArchitectureNotFound(f"architecture {spec_id!r} is not stored")
            return ArchSpec.from_json(row.spec_json)

    def get_architectures(self, spec_ids: Iterable[str]) -> dict[str, ArchSpec]:
        """The stored specs of ``spec_ids`` by id, read together (a trials table's
        architectures); an id that is not stored is left out."""
        wanted = sorted(set(spec_ids))
        found: dict[str, ArchSpec] = {}
        with self._session() as session:
            for start in range(0, len(wanted), _IDS_PER_QUERY):
                chunk = wanted[start:start + _IDS_PER_QUERY]
                rows = session.execute(select(ArchitectureRow.spec_id, ArchitectureRow.spec_json)
                                       .where(ArchitectureRow.spec_id.in_(chunk)))
                found.update((spec_id, ArchSpec.from_json(text)) for spec_id, text in rows)
        return found

    # -- predictors -------------------------------------------------------------------------
    def record_predictor(self, *, device: str, space: str, space_digest: str, scale: str,
                         version: str, statistic: str | None = None,
                         held_out: dict[str, Any] | None = None,
                         path: str | None = None) -> PredictorRecord:
        """Store a latency predictor artifact (or update the one with the same device, space
        digest, scale and version) and return it; its ``id`` is what predicted values cite."""
        for name, value in (("space", space), ("space_digest", space_digest), ("scale", scale),
                            ("version", version)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"predictor {name}={value!r} must be a non-empty string")
        fields: dict[str, Any] = {"space": space, "statistic": statistic,
                                  "held_out": dict(held_out or {}), "path": path}
        with self._session(write=True) as session:
            device_id = self._device_id(session, device)
            key = {"device_id": device_id, "space_digest": space_digest, "scale": scale,
                   "version": version}
            statement = upsert_statement(session, PredictorRow).values(
                **key, **fields, stored_at=utcnow())
            session.execute(statement.on_conflict_do_update(index_elements=list(key),
                                                            set_=fields))
            row = session.scalars(select(PredictorRow).filter_by(**key)
                                  .execution_options(populate_existing=True)).one()
            return _to_predictor(row)

    def predictors(self, device: str | None = None) -> list[PredictorRecord]:
        """Stored predictors, oldest first, optionally of one device."""
        with self._session() as session:
            query = select(PredictorRow).order_by(PredictorRow.id)
            if device is not None:
                query = query.where(PredictorRow.device_id == self._device_id(session, device))
            return [_to_predictor(row) for row in session.scalars(query)]

    # -- measurements -----------------------------------------------------------------------
    def add_measurements(self, records: Iterable[MeasurementRecord]) -> int:
        """Store latency measurements (the file store's records) in one transaction; returns
        how many. Their devices must be stored."""
        with self._session(write=True) as session:
            device_ids: dict[str, int] = {}
            rows = []
            for record in records:
                if record.device not in device_ids:
                    device_ids[record.device] = self._device_id(session, record.device)
                stats = record.stats
                rows.append(MeasurementRow(
                    device_id=device_ids[record.device], kind=record.kind, key=record.key,
                    component=record.component, scale=record.scale, min_ms=stats.min_ms,
                    p10_ms=stats.p10_ms, median_ms=stats.median_ms, p90_ms=stats.p90_ms,
                    normalised_ms=stats.normalised_ms, n=stats.n,
                    fingerprint=dict(stats.fingerprint),
                    measured_at=parse_time(record.measured_at)))
            session.add_all(rows)
            return len(rows)

    def import_measurements(self, records: Iterable[MeasurementRecord]) -> int:
        """Store the records not stored yet (the same device, kind, key, component and time):
        how the file store's measurements move into the database, any number of times.
        Returns how many were new."""
        pending = list(records)
        if not pending:
            return 0
        with self._session() as session:
            stored = set()
            for name in {r.device for r in pending}:
                query = (select(MeasurementRow.kind, MeasurementRow.key, MeasurementRow.component,
                                MeasurementRow.measured_at)
                         .where(MeasurementRow.device_id == self._device_id(session, name)))
                stored |= {(name, kind, key, component, iso_time(at))
                           for kind, key, component, at in session.execute(query)}
        fresh = [r for r in pending
                 if (r.device, r.kind, r.key, r.component,
                     iso_time(parse_time(r.measured_at))) not in stored]
        return self.add_measurements(fresh) if fresh else 0

    def measurements(self, device: str | None = None, *, kind: str | None = None,
                     key: str | None = None) -> list[MeasurementRecord]:
        """Stored measurements in the order stored, optionally of one device, kind or key
        (none for a device never stored)."""
        from nanosd_nas.latency_models import (
            LatencyStats,
            MeasurementRecord,
        )

        with self._session() as session:
            query = select(MeasurementRow).order_by(MeasurementRow.id)
            if device is not None:  # a device never stored has no measurements
                query = query.where(MeasurementRow.device_id == select(DeviceRow.id).where(
                    DeviceRow.name == device).scalar_subquery())
            if kind is not None:
                query = query.where(MeasurementRow.kind == kind)
            if key is not None:
                query = query.where(MeasurementRow.key == key)
            return [MeasurementRecord(
                device=row.device.name, kind=row.kind, key=row.key, component=row.component,
                scale=row.scale, measured_at=iso_time(row.measured_at),
                stats=LatencyStats(min_ms=row.min_ms, p10_ms=row.p10_ms,
                                   median_ms=row.median_ms, p90_ms=row.p90_ms, n=row.n,
                                   fingerprint=dict(row.fingerprint),
                                   normalised_ms=row.normalised_ms))
                for row in session.scalars(query)]

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _found(row: DeviceRow | None, name: str) -> DeviceRow:
        if row is None:
            raise UnknownDevice(name)
        return row

    @staticmethod
    def _device_id(session: Session, name: str) -> int:
        device_id = session.scalar(select(DeviceRow.id).where(DeviceRow.name == name))
        if device_id is None:
            raise UnknownDevice(name)
        return device_id
