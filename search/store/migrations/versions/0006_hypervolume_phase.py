"""The phase of each point of a study's hypervolume history: ``search`` while trials land,
``verify`` once the front's predicted latencies are replaced by ones measured on the device (a
drop there is the measurement, not the search).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Written by hand and frozen, like 0001-0005. Points recorded before it were all recorded as
trials landed or at the end of a run without telling the two apart: they read ``search``. The
downgrade drops the column (SQLite rebuilds the table in batch mode).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nas_hypervolume_history") as batch:
        batch.add_column(sa.Column("phase", sa.String(16), nullable=False,
                                   server_default="search"))
        batch.create_check_constraint("phase", "phase IN ('search', 'verify')")  # ck_..._phase


def downgrade() -> None:
    with op.batch_alter_table("nas_hypervolume_history") as batch:
        batch.drop_constraint(op.f("ck_nas_hypervolume_history_phase"), type_="check")
        batch.drop_column("phase")
