"""``nanosd-nas device``: the devices latency is measured on."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

import latency_models
from nanosd_nas.cli._output import UserError, console, emit_json

app = typer.Typer(help="Devices latency is measured on: add, list, remove.",
                  no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Device name: letters, digits, '-' and '_'.")],
    kind: Annotated[str, typer.Option(
        "--kind", help="local (ONNX Runtime on this host) or remote (a device agent).")],
    provider: Annotated[str, typer.Option(
        "--provider", help="ONNX Runtime execution provider on the device.",
    )] = "CPUExecutionProvider",
    threads: Annotated[int, typer.Option("--threads", help="Intra-op threads.")] = 1,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs first.")] = 5,
    runs: Annotated[int, typer.Option("--runs", help="Timed runs per measurement.")] = 30,
    url: Annotated[str | None, typer.Option(
        "--url", help="Remote: the agent's http://HOST:PORT.")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", help="Remote: the agent's token (stored in a file only you can read).",
    )] = None,
) -> None:
    """Register a device. A remote agent is contacted first; nothing is stored if it fails."""
    if kind not in latency_models.DEVICE_KINDS:
        raise UserError(f"--kind {kind!r} does not exist; kinds: "
                        f"{', '.join(latency_models.DEVICE_KINDS)}")
    if kind == "remote" and not (url and token):
        raise UserError("a remote device needs --url and --token (printed by 'nanosd-nas agent')")
    if kind == "local" and (url or token):
        raise UserError("--url and --token are for remote devices; this one is --kind local")
    protocol = latency_models.Protocol(threads=threads, warmup=warmup, runs=runs,
                                       provider=provider)
    device = latency_models.Device(name=name, kind=kind, protocol=protocol, url=url,
                                   token=token)
    added = latency_models.DeviceRegistry().add(device)
    where = f" at {added.url}" if added.url else ""
    console.print(f"added device {added.name} ({added.kind}{where}, {provider}, "
                  f"{threads} thread{'s' if threads != 1 else ''})")


@app.command("list")
def list_devices(json_output: JsonOption = False) -> None:
    """List the registered devices (local-cpu is built in)."""
    rows: list[dict[str, Any]] = [d.describe() for d in latency_models.DeviceRegistry().devices()]
    if json_output:
        emit_json({"devices": rows})
        return
    table = Table(title="Devices")
    for column in ("name", "kind", "provider", "threads", "runs", "agent"):
        table.add_column(column, justify="right" if column in ("threads", "runs") else "left")
    for row in rows:
        protocol = row["protocol"]
        table.add_row(row["name"], row["kind"] + (" (built in)" if row["builtin"] else ""),
                      protocol["provider"], str(protocol["threads"]), str(protocol["runs"]),
                      row["url"] or "")
    console.print(table)


@app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="A registered device.")]) -> None:
    """Forget a device (its stored measurements are kept)."""
    latency_models.DeviceRegistry().remove(name)
    console.print(f"removed device {name}")
