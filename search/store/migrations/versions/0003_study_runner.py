"""Study runner: which runner holds a running study and when it was last seen, so that a study
whose worker died can be claimed again instead of staying ``running`` for ever.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Written by hand and frozen, like 0001 and 0002. Adding nullable columns needs no table rebuild
on either backend.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nas_studies") as batch:
        batch.add_column(sa.Column("runner", sa.String(200), nullable=True))
        batch.add_column(sa.Column("runner_seen_at", sa.DateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nas_studies") as batch:
        batch.drop_column("runner_seen_at")
        batch.drop_column("runner")
