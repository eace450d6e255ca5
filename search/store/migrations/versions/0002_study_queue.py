"""Study queue: studies submitted through the API wait as ``queued`` for a worker, and a
running study can be asked to stop (``stopping``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Written by hand and frozen, like 0001 (but for the constraint's name in the downgrade, which
could not find the constraint the upgrade made). SQLite cannot alter a CHECK constraint in
place, so the table is rebuilt in batch mode there; PostgreSQL drops and re-creates it.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None

_BEFORE = ("created", "running", "completed", "failed", "stopped")
_AFTER = ("created", "queued", "running", "stopping", "completed", "failed", "stopped")


def _statuses(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def _replace_check(values: tuple[str, ...], *, drop: str, create: str) -> None:
    with op.batch_alter_table("nas_studies") as batch:
        batch.drop_constraint(drop, type_="check")
        batch.create_check_constraint(create, _statuses(values))


# 0001's constraint went through the naming convention a second time when it was created (its
# name was already the full one), and the names below are given so as to meet each table as it
# is: the upgrade drops 0001's by the same route and creates ck_nas_studies_status; the
# downgrade drops that final name (op.f) and puts 0001's back as 0001 made it.
def upgrade() -> None:
    _replace_check(_AFTER, drop="ck_nas_studies_status", create="status")


def downgrade() -> None:
    op.execute("UPDATE nas_studies SET status = 'created' WHERE status = 'queued'")
    op.execute("UPDATE nas_studies SET status = 'running' WHERE status = 'stopping'")
    _replace_check(_BEFORE, drop=op.f("ck_nas_studies_status"), create="ck_nas_studies_status")
