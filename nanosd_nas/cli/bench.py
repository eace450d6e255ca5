"""``nanosd-nas bench``: the benchmarks of DESIGN.md section 9."""

from __future__ import annotations

from typing import Annotated, Any

import typer

import latency_models
import spaces
from nanosd_nas.cli._output import accuracy_table, console, emit_json
from nanosd_nas.cli._progress import phase_progress

app = typer.Typer(help="Benchmarks (each prints JSON with --json).", no_args_is_help=True)


@app.command("predictor")
def predictor(
    space: Annotated[str, typer.Option(help="Space to calibrate on.")] = "nanosd",
    scale: Annotated[str, typer.Option(help="full or mini.")] = "mini",
    device: Annotated[str, typer.Option(help="A registered device.")] = "local-cpu",
    initial: Annotated[int, typer.Option(help="Random training members.")] = 40,
    rounds: Annotated[int, typer.Option(help="Rounds of least-sure members.")] = 3,
    per_round: Annotated[int, typer.Option(help="Members added per round.")] = 20,
    test: Annotated[int, typer.Option(help="Held-out members measured.")] = 60,
    repeats: Annotated[int, typer.Option(help="Members re-measured for repeatability.")] = 10,
    component: Annotated[str, typer.Option(help="Component scored.")] = "unet",
    seed: Annotated[int, typer.Option(help="Seed of every draw.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Calibrate a device, then score the predictor on architectures it never saw, beside the
    params, MACs and block-sum baselines."""
    spaces.get_scale(scale)
    target = spaces.load_space(space)
    profiler = latency_models.profiler_for(device)
    plan = latency_models.CalibrationPlan(initial=initial, rounds=rounds, per_round=per_round,
                                          seed=seed)
    with phase_progress(not json_output) as on_progress:
        result = latency_models.bench_predictor(
            target, scale, profiler, plan=plan, test=test, repeats=repeats, component=component,
            on_progress=on_progress)
    if json_output:
        emit_json(result)
        return
    _print_accuracy(result)


def _print_accuracy(result: dict[str, Any]) -> None:
    console.print(accuracy_table(
        f"{result['component']} latency on {result['device']}, {result['space']} at "
        f"{result['scale']} ({result['n_test']} held-out, {result['n_train']} trained)",
        {"predictor": result, **result["baselines"]}))
    repeat = result["repeatability"]
    console.print(f"calibration {result['calibration_s']} s; {result['predict_per_s']:,} "
                  f"predictions/s; statistic {result['statistic']} repeats within "
                  f"{repeat.get('median_pct')}% (median), {repeat.get('max_pct')}% (max) "
                  f"over {repeat['n']} re-measured models")
