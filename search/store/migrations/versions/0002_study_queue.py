"""Study queue: studies submitted through the API wait as ``queued`` for a worker, and a
running study can be asked to stop (``stopping``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Written by hand and frozen, like 0001. SQLite cannot alter a CHECK constraint in place, so the
table is rebuilt in batch mode there; PostgreSQL drops and re-creates the constraint.
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


def _replace_check(values: tuple[str, ...]) -> None:
    with op.batch_alter_table("nas_studies") as batch:
        batch.drop_constraint("ck_nas_studies_status", type_="check")
        batch.create_check_constraint("status", _statuses(values))


def upgrade() -> None:
    _replace_check(_AFTER)


def downgrade() -> None:
    op.execute("UPDATE nas_studies SET status = 'created' WHERE status = 'queued'")
    op.execute("UPDATE nas_studies SET status = 'running' WHERE status = 'stopping'")
    _replace_check(_BEFORE)
