"""The database backend of :class:`latency_models.LatencyStore`: measurements, predictors stored
whole, reference timings; a predictor saved here is registered for the dashboard at once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from nanosd_nas.latency_models import (
    LatencyPredictor,
    LatencyStore,
    PredictorArtifact,
    PredictorIdentity,
    PredictorNotFound,
    ReferenceTiming,
    StoredPredictor,
    check_device_name,
)
from nanosd_nas.search.store._catalog import CatalogMixin, iso_time, parse_time, upsert_statement
from nanosd_nas.search.store._models import (
    DeviceRow,
    PredictorArtifactRow,
    PredictorRow,
    ReferenceTimingRow,
)
from nanosd_nas.search.store._types import utcnow
from nanosd_nas.spaces import Space


class LatencyMixin(CatalogMixin, LatencyStore):
    """The store's side of the latency store contract (see :class:`LatencyStore`).

    Measurements are :meth:`add_measurements` and :meth:`measurements` of the catalog. A saved
    predictor is a new row of ``nas_predictors`` (its ``version`` is its calibration time, so
    the rows that trial values cite are never overwritten) with its artifact beside it; the
    newest of a device, space and scale is the one found. Facts of a device not stored with
    :meth:`upsert_device` are refused with :class:`UnknownDevice`.
    """

    # -- predictors -----------------------------------------------------------------------
    def save_predictor(self, predictor: LatencyPredictor) -> StoredPredictor:
        identity = predictor.identity
        artifact = predictor.to_artifact()
        with self._session(write=True) as session:
            key = {"device_id": self._device_id(session, identity.device),
                   "space_digest": identity.space_digest, "scale": identity.scale,
                   "version": identity.created_at}
            fields: dict[str, Any] = {"space": identity.space, "statistic": identity.statistic,
                                      "held_out": dict(identity.held_out), "path": None}
            session.execute(upsert_statement(session, PredictorRow)
                            .values(**key, **fields, stored_at=utcnow())
                            .on_conflict_do_update(index_elements=list(key), set_=fields))
            predictor_id = session.scalars(select(PredictorRow.id).filter_by(**key)).one()
            parts: dict[str, Any] = {"document": artifact.metadata,
                                     "block_table": artifact.block_table,
                                     "model": artifact.model, "stored_at": utcnow()}
            session.execute(upsert_statement(session, PredictorArtifactRow)
                            .values(predictor_id=predictor_id, **parts)
                            .on_conflict_do_update(index_elements=["predictor_id"], set_=parts))
        return StoredPredictor(identity=identity, location=self._where(predictor_id),
                               id=predictor_id)

    def find_predictor(self, device: str, space: Space, scale: str) -> StoredPredictor | None:
        check_device_name(device)
        with self._session() as session:
            row = session.scalars(
                select(PredictorArtifactRow).join(PredictorArtifactRow.predictor)
                .join(PredictorRow.device)
                .where(DeviceRow.name == device, PredictorRow.space == space.name,
                       PredictorRow.space_digest == space.digest, PredictorRow.scale == scale)
                .order_by(PredictorRow.id.desc()).limit(1)).first()
            return None if row is None else self._stored(row)

    def list_predictors(self, device: str | None = None) -> list[StoredPredictor]:
        with self._session() as session:
            query = (select(PredictorArtifactRow).join(PredictorArtifactRow.predictor)
                     .join(PredictorRow.device).order_by(PredictorRow.id))
            if device is not None:
                query = query.where(DeviceRow.name == check_device_name(device))
            newest: dict[tuple[str, str, str, str], StoredPredictor] = {}
            for row in session.scalars(query):
                predictor = row.predictor
                newest[(predictor.device.name, predictor.space, predictor.space_digest,
                        predictor.scale)] = self._stored(row)
        return sorted(newest.values(), key=lambda s: (s.identity.created_at, s.id or 0))

    def load_predictor(self, stored: StoredPredictor) -> LatencyPredictor:
        with self._session() as session:
            row = None if stored.id is None else session.scalars(
                select(PredictorArtifactRow).options(undefer("*"))
                .where(PredictorArtifactRow.predictor_id == stored.id)).first()
            if row is None:
                raise PredictorNotFound(f"the predictor at {stored.location} is no longer "
                                        "stored")
            artifact = PredictorArtifact(metadata=dict(row.document),
                                         block_table=dict(row.block_table),
                                         model=bytes(row.model))
        return LatencyPredictor.from_artifact(artifact, location=stored.location)

    def _where(self, predictor_id: int) -> str:
        return f"predictor {predictor_id} of the database at {self.display_url}"

    def _stored(self, row: PredictorArtifactRow) -> StoredPredictor:
        location = self._where(row.predictor_id)
        return StoredPredictor(
            identity=PredictorIdentity.from_metadata(dict(row.document), location=location),
            location=location, id=row.predictor_id)

    # -- reference timings ----------------------------------------------------------------
    def save_reference(self, timing: ReferenceTiming) -> None:
        fields: dict[str, Any] = {"nominal_ms": float(timing.nominal_ms),
                                  "protocol": dict(timing.protocol),
                                  "fingerprint": dict(timing.fingerprint),
                                  "measured_at": parse_time(timing.measured_at)}
        with self._session(write=True) as session:
            device_id = self._device_id(session, timing.device)
            session.execute(upsert_statement(session, ReferenceTimingRow)
                            .values(device_id=device_id, **fields)
                            .on_conflict_do_update(index_elements=["device_id"], set_=fields))

    def load_reference(self, device: str) -> ReferenceTiming | None:
        check_device_name(device)
        with self._session() as session:
            row = self._reference_row(session, device)
            if row is None:
                return None
            return ReferenceTiming(
                device=device, nominal_ms=row.nominal_ms, protocol=dict(row.protocol),
                fingerprint=dict(row.fingerprint), measured_at=iso_time(row.measured_at),
                location=f"the reference timing of {device} in the database at "
                         f"{self.display_url}")

    @staticmethod
    def _reference_row(session: Session, device: str) -> ReferenceTimingRow | None:
        return session.scalars(select(ReferenceTimingRow).join(ReferenceTimingRow.device)
                               .where(DeviceRow.name == device)).first()
