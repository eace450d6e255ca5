"""How the command line talks: results on stdout (tables or ``--json``), errors as one line."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exit code of every user mistake (bad input, unknown name, invalid spec), as click uses it.
USAGE_ERROR = 2


class UserError(Exception):
    """A mistake in what the user asked for; shown as one line, exit code 2."""


def emit_json(document: Any) -> None:
    """Print ``document`` as indented JSON on stdout (no colour, no wrapping)."""
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def millions(n: int) -> str:
    return f"{n / 1e6:,.1f}M"


def giga(n: int) -> str:
    return f"{n / 1e9:,.2f}G"


def accuracy_table(title: str, rows: dict[str, dict[str, Any]]) -> Table:
    """Latency-prediction accuracy rows (within 5% / 10%, Spearman, RMSPE) as a table."""
    table = Table(title=title)
    for column in ("", "within 5%", "within 10%", "Spearman", "RMSPE"):
        table.add_column(column, justify="right")
    for name, m in rows.items():
        rho = "n/a" if m["spearman"] is None else f"{m['spearman']:.3f}"
        table.add_row(name, f"{m['within_5pct']:.1%}", f"{m['within_10pct']:.1%}", rho,
                      f"{m['rmspe']:.1%}")
    return table
