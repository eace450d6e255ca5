"""``nanosd-nas spec``: show, count and export one architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nanosd_nas import spaces
from nanosd_nas.cli._choices import ExportFormat, OnnxExporter, OnnxLayout, OnnxPrecision
from nanosd_nas.cli._options import JsonOption
from nanosd_nas.cli._output import console, emit_json, giga, millions
from nanosd_nas.cli._resolve import resolve_spec

app = typer.Typer(help="One architecture: show it, count it, export it.", no_args_is_help=True)

SpecArgument = Annotated[
    str,
    typer.Argument(help="Preset (sd15, bk-sdm-tiny, ...), space member (nanosd:0,1,2,3,4,5), "
                        "spec JSON file or point YAML file."),
]
ScaleOption = Annotated[
    str | None, typer.Option("--scale", help="full or mini (presets and space members).")
]
LayoutOption = Annotated[OnnxLayout, typer.Option(
    help="onnx: nanosd (unet.onnx ... beside spec.json) or optimum (unet/model.onnx ... and "
         "model_index.json, as diffusers' and Optimum's ONNX pipelines read).")]
PrecisionOption = Annotated[OnnxPrecision, typer.Option(
    help="onnx: the weights' precision (inputs and outputs stay float32).")]
ExporterOption = Annotated[OnnxExporter, typer.Option(
    help="onnx: dynamo (torch.onnx.export(dynamo=True), opset 18; falls back to torchscript "
         "per component where it fails) or torchscript (opset 17, ~13 times faster to write).")]


def summary(spec: spaces.ArchSpec) -> dict[str, Any]:
    """A readable summary of ``spec`` (:func:`spaces.spec_summary`)."""
    return spaces.spec_summary(spec)


@app.command("show")
def show(spec: SpecArgument, scale: ScaleOption = None, json_output: JsonOption = False) -> None:
    """Stages (T = ResNet + transformer, R = ResNet only), widths and counts of a spec."""
    arch = resolve_spec(spec, scale)
    if json_output:
        emit_json({"summary": summary(arch), "spec": arch.to_dict()})
        return
    info = summary(arch)
    console.print(f"[bold]spec {info['spec_id']}[/bold]  image {info['image_size']}px, latent "
                  f"{'x'.join(map(str, info['latent']))}, mid block: {info['mid_block']}")
    table = Table(title="U-Net stages")
    for column in ("stage", "channels", "heads", "resolution", "layers"):
        table.add_column(column)
    for stage in info["stages"]:
        table.add_row(stage["stage"], str(stage["channels"]), str(stage["heads"]),
                      str(stage["resolution"]), stage["layers"])
    console.print(table)
    vae = arch.vae
    console.print(f"VAE encoder {list(vae.encoder_channels)} x{vae.encoder_layers} "
                  f"(mid attention {vae.encoder_mid_attention}); decoder "
                  f"{list(vae.decoder_channels)} x{vae.decoder_layers + 1} "
                  f"(mid attention {vae.decoder_mid_attention})")
    _print_counts(spaces.count(arch))


def _print_counts(counts: spaces.Counts) -> None:
    table = Table(title="Parameters and MACs")
    for column in ("component", "parameters", "MACs"):
        table.add_column(column, justify="right")
    for component in spaces.COMPONENTS:
        n = counts.params[component]
        table.add_row(component, f"{n:,} ({millions(n)})", giga(counts.macs[component]))
    table.add_row("total", f"{counts.total_params:,}", giga(counts.total_macs))
    console.print(table)


@app.command("params")
def params(spec: SpecArgument, scale: ScaleOption = None, json_output: JsonOption = False) -> None:
    """Parameter and MAC counts per component, computed from the spec without building it."""
    arch = resolve_spec(spec, scale)
    counts = spaces.count(arch)
    if json_output:
        emit_json({"spec_id": arch.spec_id, **counts.to_dict()})
        return
    _print_counts(counts)


@app.command("export")
def export(
    spec: SpecArgument,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="What to write.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (created if missing).")],
    scale: ScaleOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights.")] = 0,
    layout: LayoutOption = "nanosd", precision: PrecisionOption = "fp32",
    exporter: ExporterOption = "dynamo",
    json_output: JsonOption = False,
) -> None:
    """Write a spec as JSON, a diffusers folder (with model_index.json and a model card), ONNX
    components (dynamic batch and spatial axes, checked in ONNX Runtime at two shapes) or
    safetensors weights.

    Weights are the seeded initial weights of the spec (a study's export carries distilled or
    teacher weights).
    """
    onnx = spaces.OnnxOptions(layout=layout, precision=precision, exporter=exporter)
    arch = resolve_spec(spec, scale)
    model = None if fmt == "spec" else spaces.build(arch, seed=seed)
    with console.status(f"exporting {arch.spec_id} as {fmt} ..."):
        result = spaces.export(arch, fmt, out, model=model, onnx=onnx,
                               source=spaces.ExportSource(seed=seed))
    if json_output:
        emit_json({"spec_id": arch.spec_id, **result.to_dict()})
        return
    for name in result.files:
        console.print(f"wrote {out / name}")
    onnx_written = result.metadata.get("onnx", {}).get("components", {})
    for component, difference in result.checks.items():
        console.print(f"checked {onnx_written[component]['file']} "
                      f"({onnx_written[component]['exporter']}) in ONNX Runtime at two shapes: "
                      f"max |onnx - torch| = {difference:.2e}")
