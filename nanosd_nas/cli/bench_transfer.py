"""``nanosd-nas bench transfer``: a predictor moved to another device with K measured members,
beside one fitted from scratch on the same K."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from nanosd_nas import latency_models, spaces
from nanosd_nas.cli._options import DbOption, JsonOption, open_store
from nanosd_nas.cli._output import UserError, console, emit_json
from nanosd_nas.cli._progress import phase_progress


def _numbers(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{option} {text!r}: give comma-separated whole numbers") from None
    if any(v < 2 for v in values):
        raise UserError(f"{option} {text!r}: every K must be at least 2")
    return tuple(sorted(set(values)))


def bench_transfer(
    space: Annotated[str, typer.Option(help="Space to calibrate on.")] = "nanosd",
    scale: Annotated[str, typer.Option(help="full or mini.")] = "mini",
    device: Annotated[str, typer.Option(help="The source: a registered local device.")
                      ] = "local-cpu",
    targets: Annotated[str, typer.Option(
        help="Comma-separated targets: threads (1 vs 2 intra-op threads), int8 (fp32 vs "
        "int8), no-graph-optimization (ONNX Runtime's graph optimisations on vs off).")
                       ] = ",".join(latency_models.TRANSFER_TARGETS),
    ks: Annotated[str, typer.Option("--k", help="Measured members on the target, "
                                    "comma-separated.")] = "5,10,20,40",
    test: Annotated[int, typer.Option(min=1, help="Target members scored (never trained "
                                      "on).")] = 40,
    initial: Annotated[int, typer.Option(help="Source: random training members.")] = 40,
    rounds: Annotated[int, typer.Option(help="Source: rounds of least-sure members.")] = 3,
    per_round: Annotated[int, typer.Option(help="Source: members added per round.")] = 20,
    component: Annotated[str, typer.Option(help="Component scored.")] = "unet",
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 0,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Calibrate the source device from scratch; then, for each target, transfer its predictor
    with K of the target's members (its block table measured) and fit a predictor from scratch
    on the same K; both are scored on members neither saw."""
    spaces.get_scale(scale)
    target_space = spaces.load_space(space)
    k_values = _numbers(ks, "--k")
    registered = latency_models.DeviceRegistry().get(device)
    devices = latency_models.transfer_targets(
        registered, tuple(t.strip() for t in targets.split(",") if t.strip()))
    plan = latency_models.CalibrationPlan(initial=initial, rounds=rounds, per_round=per_round,
                                          seed=seed)
    with open_store(db, upgrade=True) as store:
        for known in (registered, *devices.values()):
            store.upsert_device(known)
        profilers = {label: d.profiler(store=store) for label, d in devices.items()}
        with phase_progress(not json_output) as on_progress:
            result = latency_models.bench_transfer(
                target_space, scale, registered.profiler(store=store), profilers, plan=plan,
                ks=k_values, test=test, component=component, store=store,
                on_progress=on_progress, seed=seed)
    if json_output:
        emit_json(result)
        return
    _print(result)


def _print(result: dict[str, Any]) -> None:
    for pair in result["pairs"]:
        table = Table(title=f"{result['component']} latency: {pair['source']} -> "
                            f"{pair['target']} ({result['space']} at {result['scale']}, "
                            f"{result['n_test']} target members scored)")
        for column in ("K", "transfer ±10%", "±5%", "Spearman", "basis", "scratch ±10%",
                       "±5%", "Spearman"):
            table.add_column(column, justify="right")
        for point in pair["curve"]:
            t, s = point["transfer"], point["scratch"]
            table.add_row(str(point["k"]), *(_cell(v) for v in (
                t["within_10pct"], t["within_5pct"], t["spearman"])), t["basis"],
                *(_cell(v) for v in (s["within_10pct"], s["within_5pct"], s["spearman"])))
        console.print(table)
        only = pair["source_only"]
        console.print(f"  the source's predictor on the target's block table alone (K = 0): "
                      f"{_cell(only['within_10pct'])} within ±10%, Spearman "
                      f"{_cell(only['spearman'])}; {pair['seconds']} s")
    console.print(f"source calibrated in {result['source_calibration_s']} s; "
                  f"{result['seconds']} s in all")


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
