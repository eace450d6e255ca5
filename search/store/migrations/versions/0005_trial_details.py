"""Trial details: what the accuracy evaluator reports beside a trial's values (the fidelity's
95% interval and its figures by timestep, the parameters no teacher weight initialised, the
per-stage errors, the teacher), kept with the trial as one JSON document.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08

Written by hand and frozen, like 0001-0004. A nullable column: trials stored before it have
none. Adding it rebuilds nothing; the downgrade drops it (SQLite rebuilds nas_trials in batch
mode, with foreign keys off, so the trials' values and front memberships stay).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision: str | None = "0004"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("nas_trials") as batch:
        batch.add_column(sa.Column("details", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nas_trials") as batch:
        batch.drop_column("details")
