"""The options every command group shares, and the one way a command opens the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from nanosd_nas.search.store import Store

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DbOption = Annotated[str | None, typer.Option(
    "--db", show_default=False,
    help="Database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
         "(default: $NANOSD_NAS_DATABASE_URL, else nanosd-nas.db in the project home).")]
RayOption = Annotated[str | None, typer.Option(
    "--ray-address", show_default=False, help="A Ray cluster (HOST:PORT); local Ray if unset.")]


def open_store(db: str | None, *, upgrade: bool = False, require_schema: bool = True) -> Store:
    """The service's database at ``db`` (see :data:`DbOption`).

    Args:
        db: the ``--db`` URL, or None for the default.
        upgrade: create or migrate its tables first (commands that write).
        require_schema: refuse a database whose schema is not this build's (all but ``db``).

    Its errors (:class:`nanosd_nas.search.store.StoreError`) are the user's to fix: the
    command line prints them as one line. The store is imported here, so that commands that
    need no database start without SQLAlchemy.
    """
    from nanosd_nas.search.store import Store

    return Store.open(db, upgrade=upgrade, require_schema=require_schema)
