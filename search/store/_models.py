"""The service's tables (SQLAlchemy 2 declarative).

Every table name starts with ``nas_``: Optuna's RDB storage creates ``studies``, ``trials``,
``version_info`` and ``alembic_version`` in the same database, and neither may touch the other's.
A change here needs a migration in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from nanosd_nas.search.store._types import JSONDocument, UTCDateTime, utcnow

#: A study is ``created`` by the CLI (and run by ``study run``), or ``queued`` by the API for a
#: ``worker`` to claim; ``stopping`` asks its runner to finish the trials in flight and stop.
STUDY_STATUSES = ("created", "queued", "running", "stopping", "completed", "failed", "stopped")
TRIAL_STATES = ("running", "complete", "failed")
#: Where a trial's value comes from: measured on a device or evaluated on data, predicted by a
#: model (a latency predictor), or computed exactly from the spec (parameter and MAC counts).
PROVENANCES = ("measured", "predicted", "computed")
MEASUREMENT_KINDS = ("model", "block")
#: A point of the hypervolume history is recorded as trials land (``search``) or after the
#: front's latencies were measured on the device (``verify``).
HISTORY_PHASES = ("search", "verify")

#: Constraint names are spelled out so that they are the same on every backend, which later
#: migrations (SQLite's batch mode in particular) rely on.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSONDocument, float: Double()}


class DeviceRow(Base):
    """A device latency is measured on (the registry's description; never its agent token)."""

    __tablename__ = "nas_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[dict[str, Any]]
    url: Mapped[str | None] = mapped_column(String(512))
    fingerprint: Mapped[dict[str, Any] | None]
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ArchitectureRow(Base):
    """An architecture spec, keyed by its id; ``spec_json`` is exactly ``ArchSpec.to_json()``."""

    __tablename__ = "nas_architectures"

    spec_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    schema_version: Mapped[int]
    spec_json: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)


class PredictorRow(Base):
    """A latency predictor artifact of a device for one space (by digest) at one scale."""

    __tablename__ = "nas_predictors"
    __table_args__ = (UniqueConstraint("device_id", "space_digest", "scale", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("nas_devices.id"))
    space: Mapped[str] = mapped_column(String(128))
    space_digest: Mapped[str] = mapped_column(String(64))
    scale: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(64))
    statistic: Mapped[str | None] = mapped_column(String(32))
    held_out: Mapped[dict[str, Any]]
    path: Mapped[str | None] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)

    device: Mapped[DeviceRow] = relationship(lazy="joined")


class PredictorArtifactRow(Base):
    """A predictor stored whole (the file store's three files), so that the database alone can
    give it back: ``document`` is ``predictor.json`` (identity, fingerprint, training set,
    held-out metrics), ``block_table`` is ``block_table.json`` and ``model`` the safetensors
    bytes. Predictors recorded only by path (before migration 0004) have none."""

    __tablename__ = "nas_predictor_artifacts"

    predictor_id: Mapped[int] = mapped_column(
        ForeignKey("nas_predictors.id", ondelete="CASCADE"), primary_key=True)
    document: Mapped[dict[str, Any]]
    block_table: Mapped[dict[str, Any]] = mapped_column(JSONDocument, deferred=True)
    model: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)

    predictor: Mapped[PredictorRow] = relationship(lazy="joined")


class ReferenceTimingRow(Base):
    """The reference model's nominal time on a local device, with the protocol and host
    fingerprint it was timed under (one per device, replaced when timed again)."""

    __tablename__ = "nas_reference_timings"

    device_id: Mapped[int] = mapped_column(ForeignKey("nas_devices.id", ondelete="CASCADE"),
                                           primary_key=True)
    nominal_ms: Mapped[float]
    protocol: Mapped[dict[str, Any]]
    fingerprint: Mapped[dict[str, Any]]
    measured_at: Mapped[datetime]

    device: Mapped[DeviceRow] = relationship(lazy="joined")


class StudyRow(Base):
    """A study: its configuration document, status and trial counter."""

    __tablename__ = "nas_studies"
    __table_args__ = (CheckConstraint(_one_of("status", STUDY_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="created")
    config: Mapped[dict[str, Any]]
    device_id: Mapped[int | None] = mapped_column(ForeignKey("nas_devices.id",
                                                             ondelete="SET NULL"))
    #: The number the next trial gets; bumped by one atomic UPDATE (see ``add_trial``).
    next_trial_number: Mapped[int] = mapped_column(default=0)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: The runner holding a running study (``HOST:PID``) and when it last said so.
    runner: Mapped[str | None] = mapped_column(String(200))
    runner_seen_at: Mapped[datetime | None]

    device: Mapped[DeviceRow | None] = relationship(lazy="joined")


class TrialRow(Base):
    """One candidate evaluated in a study; ``(study_id, number)`` is unique."""

    __tablename__ = "nas_trials"
    __table_args__ = (
        UniqueConstraint("study_id", "number"),
        CheckConstraint(_one_of("state", TRIAL_STATES), name="state"),
        Index(None, "study_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("nas_studies.id", ondelete="CASCADE"))
    number: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="running")
    spec_id: Mapped[str | None] = mapped_column(ForeignKey("nas_architectures.spec_id"))
    params: Mapped[dict[str, Any]]
    #: Optuna's convention: a value <= 0 is satisfied.
    constraints: Mapped[dict[str, Any] | None]
    feasible: Mapped[bool | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    optuna_trial_number: Mapped[int | None]
    fail_reason: Mapped[str | None] = mapped_column(Text)
    #: What the accuracy evaluator reported beside the values (JSON-safe; migration 0005).
    details: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    study: Mapped[StudyRow] = relationship(lazy="joined")
    values: Mapped[list[TrialValueRow]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True,
        order_by="TrialValueRow.id")


class TrialValueRow(Base):
    """One value of a trial with its provenance; a name may hold a predicted and a measured
    value side by side (the front is re-measured after a predictor-backed search)."""

    __tablename__ = "nas_trial_values"
    __table_args__ = (
        UniqueConstraint("trial_id", "name", "provenance"),
        CheckConstraint(_one_of("provenance", PROVENANCES), name="provenance"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("nas_trials.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float]
    provenance: Mapped[str] = mapped_column(String(16))
    predictor_id: Mapped[int | None] = mapped_column(ForeignKey("nas_predictors.id"))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class RescoredValueRow(Base):
    """A value of a trial rescored for another device than its study's (``study rescore``):
    kept beside the trial's own values, never in their place; one per trial, device and name
    (a device rescored again replaces its values)."""

    __tablename__ = "nas_rescored_values"
    __table_args__ = (
        UniqueConstraint("trial_id", "device_id", "name"),
        CheckConstraint(_one_of("provenance", PROVENANCES), name="provenance"),
        Index(None, "study_id", "device_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("nas_studies.id", ondelete="CASCADE"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("nas_trials.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("nas_devices.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float]
    provenance: Mapped[str] = mapped_column(String(16))
    predictor_id: Mapped[int | None] = mapped_column(ForeignKey("nas_predictors.id"))
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)

    trial: Mapped[TrialRow] = relationship(lazy="joined")
    device: Mapped[DeviceRow] = relationship(lazy="joined")


class MeasurementRow(Base):
    """A latency measurement: a whole component of a spec (``model``) or one ``block``."""

    __tablename__ = "nas_measurements"
    __table_args__ = (
        CheckConstraint(_one_of("kind", MEASUREMENT_KINDS), name="kind"),
        Index(None, "device_id", "kind", "key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("nas_devices.id"))
    kind: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(255))
    component: Mapped[str] = mapped_column(String(32))
    scale: Mapped[str] = mapped_column(String(16))
    min_ms: Mapped[float]
    p10_ms: Mapped[float]
    median_ms: Mapped[float]
    p90_ms: Mapped[float]
    normalised_ms: Mapped[float | None]
    n: Mapped[int]
    fingerprint: Mapped[dict[str, Any]]
    measured_at: Mapped[datetime]

    device: Mapped[DeviceRow] = relationship(lazy="joined")


class FrontMemberRow(Base):
    """A trial on the stored Pareto front of its study."""

    __tablename__ = "nas_front_members"

    study_id: Mapped[int] = mapped_column(ForeignKey("nas_studies.id", ondelete="CASCADE"),
                                          primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("nas_trials.id", ondelete="CASCADE"),
                                          primary_key=True)


class HypervolumeRow(Base):
    """One point of a study's hypervolume history, in the order recorded."""

    __tablename__ = "nas_hypervolume_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("nas_studies.id", ondelete="CASCADE"),
                                          index=True)
    n_complete: Mapped[int]
    hypervolume: Mapped[float]
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    phase: Mapped[str] = mapped_column(String(16), default="search", server_default="search")

    __table_args__ = (CheckConstraint(_one_of("phase", HISTORY_PHASES), name="phase"),)
