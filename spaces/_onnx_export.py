"""ONNX graphs of a student's components: one file per component with dynamic batch and
spatial axes, checked in ONNX Runtime at two shapes, in this project's layout or in the one
diffusers' and Optimum's ONNX pipelines read, at FP32 or FP16.

Two exporters write the graphs. The dynamo exporter (``torch.onnx.export(dynamo=True)``,
opset 18, the lowest it writes natively) is the default: it is the one PyTorch maintains, and
it wrote every component of every preset and of the smallest and largest ``nanosd`` members
tried. Where it fails for a component, the TorchScript exporter (opset 17) writes that
component and the export's metadata says why. TorchScript, on request, is ~13 times faster to
write (sd15 at mini: 4.8 s against 62 s on a quiet 2-core machine; half of dynamo's time is
torch.export's tracing and decomposition, a third the ONNX optimiser) and its graphs run the
same in ONNX Runtime; the latency profiler uses it for that reason.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nanosd_nas.spaces._builder import BuiltModel
from nanosd_nas.spaces._errors import ExportError
from nanosd_nas.spaces._export_options import ONNX_IO, OnnxOptions
from nanosd_nas.spaces._spec import ArchSpec

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
DYNAMO_OPSET = 18

_IMAGE_AXES = {0: "batch", 2: "height", 3: "width"}
_LATENT_AXES = {0: "batch", 2: "latent_height", 3: "latent_width"}
#: The dynamic axes of each component's inputs and outputs, by position.
DYNAMIC_AXES: dict[str, tuple[list[dict[int, str]], list[dict[int, str]]]] = {
    "unet": ([_LATENT_AXES, {0: "steps"}, {0: "batch"}], [_LATENT_AXES]),
    "vae_encoder": ([_IMAGE_AXES], [_LATENT_AXES]),
    "vae_decoder": ([_LATENT_AXES], [_IMAGE_AXES]),
}


def _io_names(component: str, n_inputs: int) -> tuple[list[str], list[str]]:
    return ONNX_IO.get(component, ([f"input_{i}" for i in range(n_inputs)], ["output"]))


def _gather_external_data(path: Path) -> None:
    """Past protobuf's 2 GiB the TorchScript exporter writes one file per tensor; gather them
    into one, ``NAME.data`` (the dynamo exporter writes that file itself)."""
    if {p.name for p in path.parent.iterdir()} <= {path.name, f"{path.name}.data"}:
        return
    import onnx

    graph = onnx.load(str(path))
    for stray in path.parent.iterdir():
        stray.unlink()
    onnx.save_model(graph, str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=f"{path.name}.data")


def export_onnx_component(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, component: str
) -> list[str]:
    """Export one component (or any module: generic I/O names) to ``path``, alone in its folder
    (static shapes, opset 17, the TorchScript exporter); returns the names given to ``inputs``,
    in order (the graph keeps those it reads)."""
    input_names, output_names = _io_names(component, len(inputs))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=input_names, output_names=output_names)
    _gather_external_data(path)
    return input_names


def _torchscript(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path,
                 component: str, names: tuple[list[str], list[str]]) -> None:
    in_axes, out_axes = DYNAMIC_AXES[component]
    axes = {**dict(zip(names[0], in_axes, strict=True)),
            **dict(zip(names[1], out_axes, strict=True))}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=names[0], output_names=names[1], dynamic_axes=axes)


def _dynamo(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path,
            component: str, names: tuple[list[str], list[str]]) -> None:
    # Names, not Dim objects: the exporter makes each a dynamic dim and gives the graph's axes
    # those names (with Dim.AUTO they read s48, s30 ...).
    shapes = tuple(dict(axes) for axes in DYNAMIC_AXES[component][0])
    # It prints its progress on stdout, which carries the CLI's JSON, and logs a warning per
    # torchvision operator it cannot register (none of which these models use).
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with (warnings.catch_warnings(), torch.no_grad(),
              contextlib.redirect_stdout(io.StringIO())):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, inputs, str(path), dynamo=True,
                              opset_version=DYNAMO_OPSET, input_names=names[0],
                              output_names=names[1], dynamic_shapes=shapes, verbose=False)
    finally:
        quiet.setLevel(level)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _to_fp16(path: Path) -> None:
    """Convert ``path``'s weights and arithmetic to FP16 in place (inputs, outputs float32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    external = Path(f"{path}.data").exists()
    graph = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    onnx.save_model(graph, str(path), save_as_external_data=external,
                    all_tensors_to_one_file=True, location=f"{path.name}.data")


def component_inputs(spec: ArchSpec, component: str, *, batch: int, latent_size: int,
                     seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded inputs of ``component`` at ``batch`` and a latent of ``latent_size`` (images
    at the spec's image-to-latent factor)."""
    g = torch.Generator().manual_seed(seed)
    latent = (batch, spec.latent_channels, latent_size, latent_size)
    side = latent_size * (spec.image_size // spec.latent_size)
    if component == "unet":
        context = (batch, spec.unet.context_length, spec.unet.cross_attention_dim)
        return (torch.randn(latent, generator=g), torch.tensor([500.0]),
                torch.randn(context, generator=g))
    if component == "vae_encoder":
        return (torch.rand((batch, 3, side, side), generator=g) * 2 - 1,)
    return (torch.randn(latent, generator=g),)


def check_shapes(spec: ArchSpec) -> list[tuple[int, int]]:
    """The (batch, latent size) pairs an export is checked at: the spec's own at batch 1, and
    batch 2 at another size the U-Net's downsampling divides (half, or one step larger)."""
    stride = 2 ** (len(spec.unet.levels) - 1)
    half = spec.latent_size // 2
    other = half if half >= stride and half % stride == 0 else spec.latent_size + stride
    return [(1, spec.latent_size), (2, other)]


def check_onnx(path: Path, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
               input_names: list[str], *, precision: str = "fp32") -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and PyTorch on ``inputs``.

    Inputs are fed by name: the TorchScript exporter drops an input the graph never reads (the
    text embeddings of a U-Net without attention), and the model is run on those it kept.

    Raises:
        ExportError: the difference passes the tolerance (ten times wider at FP16).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    by_name = dict(zip(input_names, inputs, strict=True))
    feeds = {i.name: by_name[i.name].numpy() for i in session.get_inputs()}
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        expected = module(*inputs).numpy()
    if got.shape != expected.shape:
        raise ExportError(f"{path.name}: ONNX Runtime gave shape {got.shape}, PyTorch "
                          f"{expected.shape}")
    difference = float(np.abs(got - expected).max())
    scale = 1.0 if precision == "fp32" else 10.0
    tolerance = scale * (1e-4 + 1e-3 * float(np.abs(expected).max()))
    if not difference <= tolerance:
        raise ExportError(
            f"{path.name}: ONNX Runtime differs from PyTorch by {difference:.3g} "
            f"(tolerance {tolerance:.3g}, {precision})"
        )
    return difference


def _export_component(module: torch.nn.Module, spec: ArchSpec, component: str, path: Path,
                      options: OnnxOptions) -> dict[str, Any]:
    """Write one component to ``path`` (alone in its folder); returns its metadata."""
    names = options.io_names(component)
    # Batch 2: torch.export fixes an axis traced at size 1.
    inputs = component_inputs(spec, component, batch=2, latent_size=spec.latent_size)
    used, fallback = options.exporter, None
    if used == "dynamo":
        try:
            _dynamo(module, inputs, path, component, names)
        except Exception as error:  # any failure of the exporter: the TorchScript one instead
            fallback = _first_line(error)
            logger.warning("the dynamo exporter failed for %s (%s); using TorchScript",
                           component, fallback)
            for produced in path.parent.iterdir():
                produced.unlink()
            used = "torchscript"
    if used == "torchscript":
        _torchscript(module, inputs, path, component, names)
    _gather_external_data(path)
    if options.precision == "fp16":
        _to_fp16(path)
    return {"file": options.path(component), "exporter": used,
            "opset": DYNAMO_OPSET if used == "dynamo" else ONNX_OPSET, "fallback": fallback,
            "inputs": names[0], "outputs": names[1]}


def write_onnx(model: BuiltModel, staging: Path,
               options: OnnxOptions) -> tuple[dict[str, float], dict[str, Any]]:
    """Write the three components into ``staging`` and check each in ONNX Runtime at two
    shapes (:func:`check_shapes`).

    Returns:
        The largest difference from PyTorch per component, and the export's metadata (layout,
        precision, the shapes checked, and per component its file, exporter, opset and
        input and output names).
    """
    spec, checks = model.spec, {}
    components: dict[str, Any] = {}
    for component, module in model.components().items():
        folder = staging / f".{component}"
        folder.mkdir()
        path = folder / Path(options.path(component)).name
        components[component] = _export_component(module, spec, component, path, options)
        names = options.io_names(component)[0]
        checks[component] = max(
            check_onnx(path, module, component_inputs(spec, component, batch=batch,
                                                      latent_size=size),
                       names, precision=options.precision)
            for batch, size in check_shapes(spec))
        target = staging / Path(options.path(component)).parent
        target.mkdir(exist_ok=True)
        for produced in folder.iterdir():
            produced.replace(target / produced.name)
        folder.rmdir()
    metadata = {"layout": options.layout, "precision": options.precision,
                "checked_shapes": [{"batch": b, "latent_size": s} for b, s in check_shapes(spec)],
                "components": components}
    return checks, metadata
