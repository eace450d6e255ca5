"""``nanosd-nas device``: the devices latency is measured on."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from nanosd_nas import latency_models, spaces
from nanosd_nas.cli._options import DbOption, JsonOption, open_store
from nanosd_nas.cli._output import UserError, accuracy_table, console, emit_json, err_console
from nanosd_nas.cli._progress import phase_progress

app = typer.Typer(help="Devices latency is measured on: add, list, remove, calibrate.",
                  no_args_is_help=True)



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


@app.command("calibrate")
def calibrate(
    name: Annotated[str, typer.Argument(help="A registered device.")],
    space: Annotated[str, typer.Option("--space", help="A shipped space or a space YAML file.")],
    scale: Annotated[str, typer.Option("--scale", help="full or mini.")] = "mini",
    initial: Annotated[int, typer.Option(help="Random training members.")] = 40,
    rounds: Annotated[int, typer.Option(help="Rounds of least-sure members.")] = 3,
    per_round: Annotated[int, typer.Option(help="Members added per round.")] = 20,
    held_out: Annotated[int, typer.Option(help="Held-out members measured.")] = 30,
    statistic: Annotated[str | None, typer.Option(
        help="normalised_ms, min_ms, p10_ms or median_ms (default: the device's own).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 0,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Profile every block of the space, measure sampled architectures (then those the predictor
    is least sure of), fit the device's predictor, save it in the database (where studies and
    the dashboard find it) and print its held-out accuracy."""
    spaces.get_scale(scale)
    target = spaces.load_space(space)
    plan = latency_models.CalibrationPlan(initial=initial, rounds=rounds, per_round=per_round,
                                          held_out=held_out, statistic=statistic, seed=seed)
    device = latency_models.DeviceRegistry().get(name)  # an unknown device: before any work
    with open_store(db, upgrade=True) as store:
        store.upsert_device(device)
        profiler = device.profiler(store=store)
        with phase_progress(not json_output) as on_progress:
            outcome = latency_models.load_or_calibrate(
                target, scale, profiler, store=store, plan=plan, on_progress=on_progress,
                recalibrate=True)
        identity = outcome.predictor.identity
        store.upsert_device(device, fingerprint=identity.host_fingerprint)
    summary = calibration_summary(outcome)
    if json_output:
        emit_json(summary)
        return
    for notice in outcome.notices:
        err_console.print(notice, markup=False)
    console.print(f"{outcome.message}: {summary['blocks']} blocks, {summary['n_train']} "
                  "training models", markup=False)
    console.print(accuracy_table(f"held-out accuracy ({held_out} models never trained on)",
                                 summary["held_out"]))


def calibration_summary(outcome: latency_models.PredictorOutcome) -> dict[str, Any]:
    """What ``device calibrate --json`` prints of a calibration."""
    identity = outcome.predictor.identity
    calibration = outcome.calibration
    return {"device": identity.device, "space": identity.space, "scale": identity.scale,
            "statistic": identity.statistic, "action": outcome.action,
            "reason": outcome.reason, "location": outcome.stored.location,
            "predictor_id": outcome.stored.id, "created": identity.created_at,
            "fingerprint": identity.fingerprint,
            "calibration_s": None if calibration is None else round(calibration.seconds, 1),
            "n_train": 0 if calibration is None else len(calibration.training),
            "blocks": len(outcome.predictor.table.entries),
            "held_out": identity.held_out, "notices": list(outcome.notices)}
