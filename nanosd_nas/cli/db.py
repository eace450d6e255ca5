"""``nanosd-nas db``: the service's database (SQLite file or PostgreSQL server)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nanosd_nas.cli._output import UserError, console, emit_json

if TYPE_CHECKING:
    from nanosd_nas.search.store import Store

app = typer.Typer(help="The service's database: create or migrate its tables, show its revision.",
                  no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", show_default=False,
    help="Database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
         "(default: $NANOSD_NAS_DATABASE_URL, else ./nanosd-nas.db).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _open(db: str | None) -> Store:
    # Imported here: the command line answers other commands without loading SQLAlchemy.
    from nanosd_nas.search.store import Store, StoreError

    try:
        return Store.open(db, require_schema=False)
    except StoreError as error:
        raise UserError(str(error)) from None


@app.command("upgrade")
def upgrade(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Create the service's tables, or migrate them to this version (safe to repeat).
    Optuna's tables in the same database are left alone."""
    from nanosd_nas.search.store import StoreError

    with _open(db) as store:
        try:
            before, after = store.upgrade()
        except StoreError as error:
            raise UserError(str(error)) from None
        summary = {"database": store.display_url, "from_revision": before,
                   "revision": after, "changed": before != after}
    if json_output:
        emit_json(summary)
    elif summary["changed"]:
        console.print(f"migrated {summary['database']} from revision {before or '(empty)'} "
                      f"to {after}")
    else:
        console.print(f"{summary['database']} is up to date (revision {after})")


@app.command("current")
def current(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Show the database's schema revision and whether it needs 'db upgrade' (a missing SQLite
    file is reported, not created)."""
    from nanosd_nas.search.store import (
        SchemaOutdated,
        Store,
        StoreError,
        redact,
        resolve_database_url,
    )

    database, problem = redact(resolve_database_url(db)), None
    revision: str | None
    try:
        with Store.open(db) as store:
            revision = head = store.head_revision()
            database = store.display_url
    except SchemaOutdated as outdated:
        revision, head, problem = outdated.current, outdated.head, str(outdated)
    except StoreError as error:
        raise UserError(str(error)) from None
    if json_output:
        emit_json({"database": database, "revision": revision, "head": head,
                   "up_to_date": problem is None})
    else:
        console.print(problem or f"{database} is up to date (revision {revision})")
