"""Latency store: predictors stored whole (metadata, block table, safetensors model) and each
local device's reference timing, so that the database alone is the home of a device's latency
facts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Written by hand and frozen, like 0001-0003. Two new tables; no existing table changes, so
nothing is rebuilt on either backend. The downgrade drops them (the predictors' rows in
nas_predictors stay, as 0003 knew them: without an artifact).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision: str | None = "0003"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "nas_predictor_artifacts",
        sa.Column("predictor_id", sa.Integer(), nullable=False),
        sa.Column("document", _JSON, nullable=False),
        sa.Column("block_table", _JSON, nullable=False),
        sa.Column("model", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("predictor_id", name="pk_nas_predictor_artifacts"),
        sa.ForeignKeyConstraint(["predictor_id"], ["nas_predictors.id"], ondelete="CASCADE",
                                name="fk_nas_predictor_artifacts_predictor_id_nas_predictors"),
    )
    op.create_table(
        "nas_reference_timings",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("nominal_ms", sa.Double(), nullable=False),
        sa.Column("protocol", _JSON, nullable=False),
        sa.Column("fingerprint", _JSON, nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name="pk_nas_reference_timings"),
        sa.ForeignKeyConstraint(["device_id"], ["nas_devices.id"], ondelete="CASCADE",
                                name="fk_nas_reference_timings_device_id_nas_devices"),
    )


def downgrade() -> None:
    op.drop_table("nas_reference_timings")
    op.drop_table("nas_predictor_artifacts")
