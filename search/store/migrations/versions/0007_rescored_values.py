"""Rescored values: a finished study's trials predicted (or measured) again for another device
than the study's (``study rescore``), kept beside the trials' own values, never in their place,
so that the study's front can be drawn on every device it was rescored for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10

Written by hand and frozen, like 0001-0006. One new table; no existing table changes, so
nothing is rebuilt on either backend. The downgrade drops it (the rescored values go with it;
every study's own values stay).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "nas_rescored_values",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("provenance", sa.String(16), nullable=False),
        sa.Column("predictor_id", sa.Integer(), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_nas_rescored_values"),
        sa.UniqueConstraint("trial_id", "device_id", "name",
                            name="uq_nas_rescored_values_trial_id_device_id_name"),
        sa.CheckConstraint("provenance IN ('measured', 'predicted', 'computed')",
                           name="ck_nas_rescored_values_provenance"),
        sa.ForeignKeyConstraint(["study_id"], ["nas_studies.id"], ondelete="CASCADE",
                                name="fk_nas_rescored_values_study_id_nas_studies"),
        sa.ForeignKeyConstraint(["trial_id"], ["nas_trials.id"], ondelete="CASCADE",
                                name="fk_nas_rescored_values_trial_id_nas_trials"),
        sa.ForeignKeyConstraint(["device_id"], ["nas_devices.id"], ondelete="CASCADE",
                                name="fk_nas_rescored_values_device_id_nas_devices"),
        sa.ForeignKeyConstraint(["predictor_id"], ["nas_predictors.id"],
                                name="fk_nas_rescored_values_predictor_id_nas_predictors"),
    )
    op.create_index("ix_nas_rescored_values_study_id_device_id", "nas_rescored_values",
                    ["study_id", "device_id"])


def downgrade() -> None:
    op.drop_table("nas_rescored_values")
