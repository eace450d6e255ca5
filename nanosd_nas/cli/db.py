"""``nanosd-nas db``: the service's database (SQLite file or PostgreSQL server)."""

from __future__ import annotations

import typer

from nanosd_nas.cli._options import DbOption, JsonOption, open_store
from nanosd_nas.cli._output import console, emit_json

app = typer.Typer(help="The service's database: create or migrate its tables, show its revision.",
                  no_args_is_help=True)



@app.command("upgrade")
def upgrade(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Create the service's tables, or migrate them to this version (safe to repeat).
    Optuna's tables in the same database are left alone."""
    with open_store(db, require_schema=False) as store:
        before, after = store.upgrade()
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
    from nanosd_nas.search.store import SchemaOutdated, redact, resolve_database_url

    database, problem = redact(resolve_database_url(db)), None
    revision: str | None
    try:
        with open_store(db) as store:
            revision = head = store.head_revision()
            database = store.display_url
    except SchemaOutdated as outdated:
        revision, head, problem = outdated.current, outdated.head, str(outdated)
    if json_output:
        emit_json({"database": database, "revision": revision, "head": head,
                   "up_to_date": problem is None})
    else:
        console.print(problem or f"{database} is up to date (revision {revision})")
