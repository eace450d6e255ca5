"""The service's first tables: devices, architectures, predictors, studies, trials and their
values, measurements, Pareto fronts and hypervolume history.

Revision ID: 0001
Revises:
Create Date: 2026-05-10

Written by hand and frozen: it spells out every type and constraint name instead of importing
the models, so that it creates the same schema however the models change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _ms(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Double(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "nas_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("protocol", _JSON, nullable=False),
        sa.Column("url", sa.String(512), nullable=True),
        sa.Column("fingerprint", _JSON, nullable=True),
        _time("stored_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_nas_devices"),
        sa.UniqueConstraint("name", name="uq_nas_devices_name"),
    )
    op.create_table(
        "nas_architectures",
        sa.Column("spec_id", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        _time("stored_at"),
        sa.PrimaryKeyConstraint("spec_id", name="pk_nas_architectures"),
    )
    op.create_table(
        "nas_predictors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("space", sa.String(128), nullable=False),
        sa.Column("space_digest", sa.String(64), nullable=False),
        sa.Column("scale", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("statistic", sa.String(32), nullable=True),
        sa.Column("held_out", _JSON, nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        _time("stored_at"),
        sa.PrimaryKeyConstraint("id", name="pk_nas_predictors"),
        sa.ForeignKeyConstraint(["device_id"], ["nas_devices.id"],
                                name="fk_nas_predictors_device_id_nas_devices"),
        sa.UniqueConstraint("device_id", "space_digest", "scale", "version",
                            name="uq_nas_predictors_device_id_space_digest_scale_version"),
    )
    op.create_table(
        "nas_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", _JSON, nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("next_trial_number", sa.Integer(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        _time("started_at", nullable=True),
        _time("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_nas_studies"),
        sa.UniqueConstraint("name", name="uq_nas_studies_name"),
        sa.CheckConstraint("status IN ('created', 'running', 'completed', 'failed', 'stopped')",
                           name="ck_nas_studies_status"),
        sa.ForeignKeyConstraint(["device_id"], ["nas_devices.id"], ondelete="SET NULL",
                                name="fk_nas_studies_device_id_nas_devices"),
    )
    op.create_table(
        "nas_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("spec_id", sa.String(64), nullable=True),
        sa.Column("params", _JSON, nullable=False),
        sa.Column("constraints", _JSON, nullable=True),
        sa.Column("feasible", sa.Boolean(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("optuna_trial_number", sa.Integer(), nullable=True),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        _time("started_at"),
        _time("heartbeat_at"),
        _time("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_nas_trials"),
        sa.UniqueConstraint("study_id", "number", name="uq_nas_trials_study_id_number"),
        sa.CheckConstraint("state IN ('running', 'complete', 'failed')",
                           name="ck_nas_trials_state"),
        sa.ForeignKeyConstraint(["study_id"], ["nas_studies.id"], ondelete="CASCADE",
                                name="fk_nas_trials_study_id_nas_studies"),
        sa.ForeignKeyConstraint(["spec_id"], ["nas_architectures.spec_id"],
                                name="fk_nas_trials_spec_id_nas_architectures"),
    )
    op.create_index("ix_nas_trials_study_id_state", "nas_trials", ["study_id", "state"])
    op.create_table(
        "nas_trial_values",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("provenance", sa.String(16), nullable=False),
        sa.Column("predictor_id", sa.Integer(), nullable=True),
        _time("recorded_at"),
        sa.PrimaryKeyConstraint("id", name="pk_nas_trial_values"),
        sa.UniqueConstraint("trial_id", "name", "provenance",
                            name="uq_nas_trial_values_trial_id_name_provenance"),
        sa.CheckConstraint("provenance IN ('measured', 'predicted', 'computed')",
                           name="ck_nas_trial_values_provenance"),
        sa.ForeignKeyConstraint(["trial_id"], ["nas_trials.id"], ondelete="CASCADE",
                                name="fk_nas_trial_values_trial_id_nas_trials"),
        sa.ForeignKeyConstraint(["predictor_id"], ["nas_predictors.id"],
                                name="fk_nas_trial_values_predictor_id_nas_predictors"),
    )
    op.create_table(
        "nas_measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("component", sa.String(32), nullable=False),
        sa.Column("scale", sa.String(16), nullable=False),
        _ms("min_ms"),
        _ms("p10_ms"),
        _ms("median_ms"),
        _ms("p90_ms"),
        _ms("normalised_ms", nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("fingerprint", _JSON, nullable=False),
        _time("measured_at"),
        sa.PrimaryKeyConstraint("id", name="pk_nas_measurements"),
        sa.CheckConstraint("kind IN ('model', 'block')", name="ck_nas_measurements_kind"),
        sa.ForeignKeyConstraint(["device_id"], ["nas_devices.id"],
                                name="fk_nas_measurements_device_id_nas_devices"),
    )
    op.create_index("ix_nas_measurements_device_id_kind_key", "nas_measurements",
                    ["device_id", "kind", "key"])
    op.create_table(
        "nas_front_members",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("study_id", "trial_id", name="pk_nas_front_members"),
        sa.ForeignKeyConstraint(["study_id"], ["nas_studies.id"], ondelete="CASCADE",
                                name="fk_nas_front_members_study_id_nas_studies"),
        sa.ForeignKeyConstraint(["trial_id"], ["nas_trials.id"], ondelete="CASCADE",
                                name="fk_nas_front_members_trial_id_nas_trials"),
    )
    op.create_table(
        "nas_hypervolume_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("n_complete", sa.Integer(), nullable=False),
        sa.Column("hypervolume", sa.Double(), nullable=False),
        _time("recorded_at"),
        sa.PrimaryKeyConstraint("id", name="pk_nas_hypervolume_history"),
        sa.ForeignKeyConstraint(["study_id"], ["nas_studies.id"], ondelete="CASCADE",
                                name="fk_nas_hypervolume_history_study_id_nas_studies"),
    )
    op.create_index("ix_nas_hypervolume_history_study_id", "nas_hypervolume_history",
                    ["study_id"])


def downgrade() -> None:
    for table in ("nas_hypervolume_history", "nas_front_members", "nas_measurements",
                  "nas_trial_values", "nas_trials", "nas_studies", "nas_predictors",
                  "nas_architectures", "nas_devices"):
        op.drop_table(table)
