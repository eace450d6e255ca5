"""Alembic environment of the service's own tables.

Run through :func:`search.store.upgrade_schema` (``nanosd-nas db upgrade``), which hands over an
open connection; no ``alembic.ini`` is involved. The version table is the service's own, because
Optuna keeps its revision in ``alembic_version`` of the same database, and autogenerate looks at
``nas_*`` tables only.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from nanosd_nas.search.store._migrate import VERSION_TABLE
from nanosd_nas.search.store._models import Base


def _ours(name: str | None, type_: str, _parent_names: Any) -> bool:
    return type_ != "table" or bool(name and name.startswith("nas_"))


def run_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_name=_ours,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
