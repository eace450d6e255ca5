"""``nanosd-nas latency``: measure a spec on a device, or predict it from the device's predictor."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from nanosd_nas import latency_models, spaces
from nanosd_nas.cli._options import DbOption, JsonOption, open_store
from nanosd_nas.cli._output import UserError, console, emit_json, err_console
from nanosd_nas.cli._resolve import resolve_spec
from nanosd_nas.latency_models import (
    LatencyPredictor,
    LatencyStore,
    PredictorNotFound,
    Profiler,
    StoredPredictor,
    pipeline_latency,
    require_usable,
)

app = typer.Typer(help="Latency of one architecture on a device.", no_args_is_help=True)

SpecArgument = Annotated[str, typer.Argument(
    help="Preset, space member (nanosd:0,1,2,3,4,5), spec JSON file or point YAML file.")]
DeviceOption = Annotated[str, typer.Option("--device", help="A registered device.")]
ScaleOption = Annotated[str | None, typer.Option("--scale", help="full or mini.")]
StepsOption = Annotated[int, typer.Option("--steps", min=1,
                                          help="U-Net evaluations in the pipeline.")]


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
            steps: StepsOption = 1, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Export each component to ONNX and measure it on the device. The three measurements are
    stored in the database once all succeeded; the pipeline figure uses the statistic the
    device's predictors learn."""
    arch = resolve_spec(spec, scale)
    registered = latency_models.DeviceRegistry().get(device)
    with open_store(db, upgrade=True) as store:
        store.upsert_device(registered)
        profiler = registered.profiler(store=store)
        with console.status(f"measuring {arch.spec_id} on {device} ..."):
            measured = latency_models.measure_components(arch, profiler,
                                                         scale=scale or "as-written",
                                                         store=store)
    for notice in profiler.notices():
        err_console.print(notice, markup=False)
    statistic = profiler.statistic
    per = {c: float(getattr(s, statistic)) for c, s in measured.items()}
    # A converted model's outputs against the FP32 graph's (one entry per component).
    snr = dict(profiler.output_snr)
    if json_output:
        emit_json({"spec_id": arch.spec_id, "device": device, "statistic": statistic,
                   "precision": profiler.precision,
                   "components": {c: s.to_dict() for c, s in measured.items()},
                   "output_snr_db": snr or None,
                   "pipeline_ms": pipeline_latency(per, steps), "steps": steps})
        return
    columns = ("min_ms", "p10_ms", "median_ms", "p90_ms", "normalised_ms")
    rows = {c: {k: getattr(s, k) for k in columns if getattr(s, k) is not None}
            | ({"snr_db": snr[c]} if c in snr else {})
            for c, s in measured.items()}
    _print(f"measured on {device} at {profiler.precision} (pipeline in {statistic})", rows,
           pipeline_latency(per, steps), steps)


def _stored_predictor(store: LatencyStore, profiler: Profiler, arch: spaces.ArchSpec,
                      space: spaces.Space | None, scale: str | None,
                      ) -> tuple[StoredPredictor, LatencyPredictor]:
    """The device's predictor for ``space`` (or, without one, the newest that holds every block
    of ``arch``), refused if it was made under another host fingerprint."""
    device = profiler.device
    if space is not None:
        scale = scale or "full"
        stored = store.find_predictor(device, space, scale)
        if stored is None:
            raise PredictorNotFound(
                f"device {device!r} has no predictor for space {space.name!r} at scale "
                f"{scale!r}; run 'nanosd-nas device calibrate {device} --space {space.name} "
                f"--scale {scale}'")
        require_usable(stored, profiler)
        return stored, store.load_predictor(stored)
    keys = {block.key for block in spaces.decompose(arch)}
    for stored in reversed(store.list_predictors(device)):
        predictor = store.load_predictor(stored)
        if keys <= predictor.table.entries.keys():
            require_usable(stored, profiler)
            return stored, predictor
    raise UserError(f"no predictor of device {device!r} covers every block of this spec; "
                    "calibrate the device for a space that contains it")


@app.command("predict")
def predict(spec: SpecArgument, device: DeviceOption = "local-cpu", scale: ScaleOption = None,
            steps: StepsOption = 1, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Predict each component's latency from the device's calibrated predictor (one made on
    this host: another host's is refused, naming both fingerprints)."""
    registered = latency_models.DeviceRegistry().get(device)  # unknown device: a clear error
    arch = resolve_spec(spec, scale)
    space = spaces.load_space(spec.rpartition(":")[0]) if ":" in spec else None
    with open_store(db, upgrade=True) as store:
        profiler = registered.profiler(store=store)
        stored, predictor = _stored_predictor(store, profiler, arch, space, scale)
    identity = predictor.identity
    if space is not None:
        prediction = predictor.predict_choices(space,
                                               np.array([space.choices(arch, identity.scale)]))
    else:
        prediction = predictor.predict_specs([arch])
    per = {c: float(prediction.mean[c][0]) for c in spaces.COMPONENTS}
    spread = {c: float(prediction.std[c][0]) for c in spaces.COMPONENTS}
    if json_output:
        emit_json({"spec_id": arch.spec_id, "device": device, "statistic": identity.statistic,
                   "space": identity.space, "scale": identity.scale,
                   "predictor": stored.location, "predictor_id": stored.id,
                   "components_ms": per, "ensemble_std_ms": spread,
                   "pipeline_ms": pipeline_latency(per, steps), "steps": steps,
                   "held_out": identity.held_out})
        return
    rows = {c: {identity.statistic: per[c], "ensemble std": spread[c]} for c in per}
    _print(f"predicted for {device} ({identity.space}, {identity.scale})", rows,
           pipeline_latency(per, steps), steps)
