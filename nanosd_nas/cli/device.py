"""``nanosd-nas device``: the devices latency is measured on."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from nanosd_nas import latency_models, spaces
from nanosd_nas.cli._choices import DeviceKind, Statistic, TorchDtype, TorchTarget
from nanosd_nas.cli._options import DbOption, JsonOption, open_store
from nanosd_nas.cli._output import UserError, accuracy_table, console, emit_json, err_console
from nanosd_nas.cli._progress import phase_progress

app = typer.Typer(help="Devices latency is measured on: add, list, remove, calibrate.",
                  no_args_is_help=True)



@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Device name: letters, digits, '-' and '_'.")],
    kind: Annotated[DeviceKind, typer.Option(
        "--kind", help="local (ONNX Runtime on this host), remote (a device agent) or torch "
        "(PyTorch on this host's CPU or GPU).")],
    provider: Annotated[str, typer.Option(
        "--provider", help="ONNX Runtime execution provider on the device.",
    )] = "CPUExecutionProvider",
    threads: Annotated[int, typer.Option("--threads", help="Intra-op threads.")] = 1,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs first.")] = 5,
    runs: Annotated[int, typer.Option("--runs", help="Timed runs per measurement.")] = 30,
    sessions: Annotated[int, typer.Option(
        "--sessions", help="local/remote: inference sessions the runs are split between "
        "(a session's own speed varies: three repeat better than one, and cost each extra "
        "session's creation).")] = 1,
    url: Annotated[str | None, typer.Option(
        "--url", help="Remote: the agent's http://HOST:PORT.")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", help="Remote: the agent's token (stored in a file only you can read).",
    )] = None,
    precision: Annotated[str, typer.Option(
        "--precision", help="local/remote: fp32, fp16 or int8 (static QDQ quantisation) — "
        "what every model is converted to before it is measured.")] = "fp32",
    torch_device: Annotated[TorchTarget | None, typer.Option(
        "--torch-device", help="torch: where PyTorch runs.")] = None,
    dtype: Annotated[TorchDtype | None, typer.Option(
        "--dtype", help="torch: the dtype (default fp32).")] = None,
    compile_module: Annotated[bool, typer.Option(
        "--compile", help="torch: run each module through torch.compile first.")] = False,
    graph_optimization: Annotated[bool, typer.Option(
        "--graph-optimization/--no-graph-optimization",
        help="local/remote: ONNX Runtime's graph optimisations (on as deployed; off times the "
        "graph as exported).")] = True,
) -> None:
    """Register a device. A remote agent is contacted first (a torch device's GPU is looked
    for); nothing is stored if it fails."""
    if kind == "remote" and not (url and token):
        raise UserError("a remote device needs --url and --token (printed by 'nanosd-nas agent')")
    if kind != "remote" and (url or token):
        raise UserError(f"--url and --token are for remote devices; this one is --kind {kind}")
    if kind == "torch":
        if precision != "fp32":
            raise UserError("a torch device takes --dtype fp32|fp16|bf16, not --precision")
        if torch_device is None:
            raise UserError("a torch device needs --torch-device cpu or cuda")
        precision = dtype or "fp32"
    elif torch_device is not None or dtype is not None or compile_module:
        raise UserError(f"--torch-device, --dtype and --compile are for --kind torch; this one "
                        f"is --kind {kind}")
    protocol = latency_models.Protocol(threads=threads, warmup=warmup, runs=runs,
                                       provider=provider, graph_optimization=graph_optimization,
                                       sessions=sessions)
    device = latency_models.Device(name=name, kind=kind, protocol=protocol, url=url,
                                   token=token, precision=precision, torch_device=torch_device,
                                   compile=compile_module)
    added = latency_models.DeviceRegistry().add(device)
    where = f" at {added.url}" if added.url else ""
    runtime = f"torch {torch_device}" if kind == "torch" else provider
    console.print(f"added device {added.name} ({added.kind}{where}, {runtime}, {precision}, "
                  f"{threads} thread{'s' if threads != 1 else ''})")


@app.command("list")
def list_devices(json_output: JsonOption = False) -> None:
    """List the registered devices (local-cpu is built in)."""
    rows: list[dict[str, Any]] = [d.describe() for d in latency_models.DeviceRegistry().devices()]
    if json_output:
        emit_json({"devices": rows})
        return
    table = Table(title="Devices")
    for column in ("name", "kind", "provider", "precision", "threads", "runs", "agent"):
        table.add_column(column, justify="right" if column in ("threads", "runs") else "left")
    for row in rows:
        protocol = row["protocol"]
        runtime = (f"torch {row['torch_device']}" + (" (compiled)" if row["compile"] else "")
                   if row["kind"] == "torch" else protocol["provider"])
        table.add_row(row["name"], row["kind"] + (" (built in)" if row["builtin"] else ""),
                      runtime, row["precision"], str(protocol["threads"]),
                      str(protocol["runs"]), row["url"] or "")
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
    statistic: Annotated[Statistic | None, typer.Option(
        help="What latency is read as (default: the device's own).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 0,
    source: Annotated[str | None, typer.Option(
        "--from", help="Transfer this device's predictor for the space instead of "
        "calibrating from scratch: the block table and --members members are measured.")
                      ] = None,
    members: Annotated[int, typer.Option(
        "--members", min=1, help="With --from: members measured to adapt the predictor.")
                       ] = 10,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Profile every block of the space, measure sampled architectures (then those the predictor
    is least sure of), fit the device's predictor, save it in the database (where studies and
    the dashboard find it) and print its held-out accuracy. With --from, another device's
    predictor is adapted with a few members instead (few-shot transfer)."""
    spaces.get_scale(scale)
    target = spaces.load_space(space)
    plan = latency_models.CalibrationPlan(initial=initial, rounds=rounds, per_round=per_round,
                                          held_out=held_out, statistic=statistic, seed=seed)
    device = latency_models.DeviceRegistry().get(name)  # an unknown device: before any work
    if source == name:
        raise UserError(f"--from {source}: a device cannot be transferred from itself")
    with open_store(db, upgrade=True) as store:
        store.upsert_device(device)
        origin = None if source is None else _source_predictor(store, source, target, scale)
        profiler = device.profiler(store=store)
        with phase_progress(not json_output) as on_progress:
            outcome = latency_models.load_or_calibrate(
                target, scale, profiler, store=store, plan=plan, on_progress=on_progress,
                recalibrate=True, source=origin, members=members)
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
    print_held_out(summary["held_out"])


def _source_predictor(store: latency_models.LatencyStore, source: str, space: spaces.Space,
                      scale: str) -> latency_models.LatencyPredictor:
    """``source``'s stored predictor for ``space`` at ``scale`` (any host's: that is what a
    transfer is for); one line saying how to make it when there is none."""
    latency_models.DeviceRegistry().get(source)
    stored = store.find_predictor(source, space, scale)
    if stored is None:
        raise UserError(f"--from {source}: it has no predictor for {space.name} at {scale}; "
                        f"calibrate it first with 'nanosd-nas device calibrate {source} "
                        f"--space {space.name} --scale {scale}'")
    return store.load_predictor(stored)


def calibration_summary(outcome: latency_models.PredictorOutcome) -> dict[str, Any]:
    """What ``device calibrate --json`` prints of a calibration."""
    identity = outcome.predictor.identity
    calibration = outcome.calibration
    return {"device": identity.device, "space": identity.space, "scale": identity.scale,
            "statistic": identity.statistic, "action": outcome.action,
            "transferred_from": outcome.transferred_from,
            "transfer_basis": outcome.predictor.metadata.get("transfer", {}).get("basis"),
            "reason": outcome.reason, "location": outcome.stored.location,
            "predictor_id": outcome.stored.id, "created": identity.created_at,
            "fingerprint": identity.fingerprint,
            "calibration_s": None if calibration is None else round(calibration.seconds, 1),
            "n_train": 0 if calibration is None else len(calibration.training),
            "blocks": len(outcome.predictor.table.entries),
            "held_out": identity.held_out, "headline": held_out_headline(identity.held_out),
            "notices": list(outcome.notices)}


def held_out_headline(held_out: dict[str, Any]) -> dict[str, Any] | None:
    """The held-out figures to quote first: those of the components whose latency varies across
    the space (``varying``), and the pipeline's beside them, which also holds the ``fixed``
    components' latency, the same for every member, and so flatters the predictor; ``None``
    without held-out members."""
    if "pipeline" not in held_out:
        return None
    varying = list(held_out.get("varying", [c for c in spaces.COMPONENTS if c in held_out]))

    def figures(name: str) -> dict[str, Any]:
        return {"name": name, **{k: v for k, v in held_out[name].items() if k != "points"}}

    return {"varying": varying, "components": [figures(c) for c in varying],
            "pipeline": figures("pipeline"),
            "fixed": [c for c in spaces.COMPONENTS if c in held_out and c not in varying]}


def print_held_out(held_out: dict[str, Any]) -> None:
    """The held-out accuracy: a headline line, then the table, the components that vary across
    the space first, the pipeline next, the fixed components last."""
    headline = held_out_headline(held_out)
    if headline is None:
        console.print("no held-out members measured")
        return
    pipeline = headline["pipeline"]
    lead = "; ".join(f"{c['name']} {c['within_10pct']:.1%}" for c in headline["components"])
    beside = f"pipeline {pipeline['within_10pct']:.1%}"
    if headline["fixed"]:
        beside += f", with {', '.join(headline['fixed'])} the same in every member"
    console.print(f"held-out within ±10%: {lead or 'no component varies'} ({beside})",
                  markup=False, soft_wrap=True)
    rows = {c["name"]: c for c in headline["components"]}
    rows["pipeline"] = pipeline
    rows.update({f"{c} (fixed)": held_out[c] for c in headline["fixed"]})
    console.print(accuracy_table(f"held-out accuracy ({pipeline['n']} models never trained on)",
                                 rows))
