"""``nanosd-nas space``: the shipped search spaces."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from nanosd_nas import spaces
from nanosd_nas.cli._options import JsonOption
from nanosd_nas.cli._output import console, emit_json, giga, millions

app = typer.Typer(help="Search spaces: list them, show one.", no_args_is_help=True)

ScaleOption = Annotated[str, typer.Option("--scale", help="full (SD-1.5 size) or mini.")]


@app.command("list")
def list_spaces(json_output: JsonOption = False) -> None:
    """List the shipped search spaces and architecture points."""
    rows: list[dict[str, Any]] = []
    for name in spaces.list_spaces():
        space = spaces.load_space(name)
        rows.append({"name": name, "size": space.size, "dimensions": len(space.dimensions),
                     "description": space.description})
    points = spaces.list_points()
    if json_output:
        emit_json({"spaces": rows, "points": points})
        return
    table = Table(title="Search spaces")
    for column in ("name", "size", "dimensions", "description"):
        table.add_column(column, justify="right" if column in ("size", "dimensions") else "left")
    for row in rows:
        table.add_row(row["name"], f"{row['size']:,}", str(row["dimensions"]), row["description"])
    console.print(table)
    console.print(f"Points: {', '.join(points)}")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="A shipped space or a space YAML file.")],
    scale: ScaleOption = "full",
    json_output: JsonOption = False,
) -> None:
    """Size, dimensions and parameter range of a space."""
    spaces.get_scale(scale)
    description = spaces.load_space(name).describe(scale)
    if json_output:
        emit_json(description)
        return
    console.print(f"[bold]{description['name']}[/bold] ({scale}): {description['description']}")
    console.print(f"size: {description['size']:,} architectures")
    table = Table(title="Dimensions")
    for column in ("name", "kind", "choices"):
        table.add_column(column)
    for dim in description["dimensions"]:
        table.add_row(dim["name"], dim["kind"], " | ".join(dim["choices"]))
    console.print(table)
    ranges = Table(title="Range (smallest .. largest member)")
    for column in ("component", "parameters", "MACs"):
        ranges.add_column(column)
    for component, (low, high) in description["params_range"].items():
        mac_low, mac_high = description["macs_range"][component]
        ranges.add_row(component, f"{millions(low)} .. {millions(high)}",
                       f"{giga(mac_low)} .. {giga(mac_high)}")
    low, high = description["total_params_range"]
    ranges.add_row("total", f"{millions(low)} .. {millions(high)}", "")
    console.print(ranges)
