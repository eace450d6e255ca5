"""``nanosd-nas latency``: measure a spec on a device, or predict it from the device's predictor."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from nanosd_nas import latency_models, spaces
from nanosd_nas.cli._output import UserError, console, emit_json
from nanosd_nas.cli._resolve import resolve_spec
from nanosd_nas.latency_models import (
    LatencyPredictor,
    device_predictors,
    load_predictor,
    pipeline_latency,
)

app = typer.Typer(help="Latency of one architecture on a device.", no_args_is_help=True)

SpecArgument = Annotated[str, typer.Argument(
    help="Preset, space member (nanosd:0,1,2,3,4,5), spec JSON file or point YAML file.")]
DeviceOption = Annotated[str, typer.Option("--device", help="A registered device.")]
ScaleOption = Annotated[str | None, typer.Option("--scale", help="full or mini.")]
StepsOption = Annotated[int, typer.Option("--steps", min=1,
                                          help="U-Net evaluations in the pipeline.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _print(title: str, rows: dict[str, dict[str, Any]], pipeline: float, steps: int) -> None:
    table = Table(title=title)
    columns = list(next(iter(rows.values())))
    table.add_column("component")
    for column in columns:
        table.add_column(column, justify="right")
    for component, values in rows.items():
        table.add_row(component, *(f"{v:.3f}" if isinstance(v, float) else str(v)
                                   for v in values.values()))
    console.print(table)
    console.print(f"pipeline (encoder + {steps} x U-Net + decoder): {pipeline:.3f} ms")


@app.command("measure")
def measure(spec: SpecArgument, device: DeviceOption = "local-cpu", scale: ScaleOption = None,
            steps: StepsOption = 1, json_output: JsonOption = False) -> None:
    """Export each component to ONNX and measure it on the device. The three measurements are
    stored with the device once all succeeded; the pipeline figure uses the statistic the
    device's predictors learn."""
    arch = resolve_spec(spec, scale)
    profiler = latency_models.profiler_for(device)
    model = spaces.build(arch)
    inputs, modules = model.example_inputs(), model.components()
    measured = {}
    with console.status(f"measuring {arch.spec_id} on {device} ..."):
        for component, module in modules.items():
            measured[component] = profiler.measure_module(module, inputs[component], component)
    store = latency_models.MeasurementStore()
    for component, stats in measured.items():
        store.append(latency_models.MeasurementRecord(
            device=device, kind="model", key=arch.spec_id, component=component,
            scale=scale or "as-written", stats=stats))
    statistic = profiler.statistic
    per = {c: float(getattr(s, statistic)) for c, s in measured.items()}
    if json_output:
        emit_json({"spec_id": arch.spec_id, "device": device, "statistic": statistic,
                   "components": {c: s.to_dict() for c, s in measured.items()},
                   "pipeline_ms": pipeline_latency(per, steps), "steps": steps})
        return
    columns = ("min_ms", "p10_ms", "median_ms", "p90_ms", "normalised_ms")
    rows = {c: {k: getattr(s, k) for k in columns if getattr(s, k) is not None}
            for c, s in measured.items()}
    _print(f"measured on {device} (pipeline in {statistic})", rows,
           pipeline_latency(per, steps), steps)


def _predictor_for(device: str, arch: spaces.ArchSpec, space_name: str | None,
                   scale: str | None) -> LatencyPredictor:
    if space_name is not None:
        return load_predictor(device, spaces.load_space(space_name), scale or "full")
    keys = {block.key for block in spaces.decompose(arch)}
    for predictor in device_predictors(device):
        if keys <= predictor.table.entries.keys():
            return predictor
    raise UserError(f"no predictor of device {device!r} covers every block of this spec; "
                    "calibrate the device for a space that contains it")


@app.command("predict")
def predict(spec: SpecArgument, device: DeviceOption = "local-cpu", scale: ScaleOption = None,
            steps: StepsOption = 1, json_output: JsonOption = False) -> None:
    """Predict each component's latency from the device's calibrated predictor."""
    latency_models.DeviceRegistry().get(device)  # unknown device: a clear error first
    arch = resolve_spec(spec, scale)
    space_name = spec.rpartition(":")[0] if ":" in spec else None
    predictor = _predictor_for(device, arch, space_name, scale)
    if space_name is not None:
        space = spaces.load_space(space_name)
        choices = np.array([space.choices(arch, predictor.metadata["scale"])])
        prediction = predictor.predict_choices(space, choices)
    else:
        prediction = predictor.predict_specs([arch])
    per = {c: float(prediction.mean[c][0]) for c in spaces.COMPONENTS}
    spread = {c: float(prediction.std[c][0]) for c in spaces.COMPONENTS}
    statistic = predictor.metadata["statistic"]
    if json_output:
        emit_json({"spec_id": arch.spec_id, "device": device, "statistic": statistic,
                   "space": predictor.metadata["space"], "scale": predictor.metadata["scale"],
                   "components_ms": per, "ensemble_std_ms": spread,
                   "pipeline_ms": pipeline_latency(per, steps), "steps": steps,
                   "held_out": predictor.metadata.get("held_out")})
        return
    rows = {c: {statistic: per[c], "ensemble std": spread[c]} for c in per}
    _print(f"predicted for {device} ({predictor.metadata['space']}, "
           f"{predictor.metadata['scale']})", rows, pipeline_latency(per, steps), steps)
