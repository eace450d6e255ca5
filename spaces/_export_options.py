"""How an ONNX export is written (layout, precision, exporter) and the input and output names
of each layout; no PyTorch, so the command line can offer the choices without loading it."""

from __future__ import annotations

from dataclasses import dataclass

from nanosd_nas.spaces._errors import SpaceError

#: Where the component files go: this project's (``unet.onnx`` ... beside ``spec.json``) or
#: diffusers' and Optimum's (``unet/model.onnx`` ... beside ``model_index.json``).
ONNX_LAYOUTS: tuple[str, ...] = ("nanosd", "optimum")
#: The weights' precision; inputs and outputs stay float32 in both.
ONNX_PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
#: ``dynamo`` (``torch.onnx.export(dynamo=True)``, the exporter PyTorch maintains) is the
#: default; ``torchscript`` is ~13 times faster to write and runs the same.
ONNX_EXPORTERS: tuple[str, ...] = ("dynamo", "torchscript")

#: ONNX input and output names per component, in this project's layout.
ONNX_IO: dict[str, tuple[list[str], list[str]]] = {
    "unet": (["sample", "timestep", "encoder_hidden_states"], ["noise_pred"]),
    "vae_encoder": (["image"], ["latent"]),
    "vae_decoder": (["latent"], ["image"]),
}
#: The names diffusers' ``OnnxStableDiffusionPipeline`` and Optimum's pipelines feed and read.
OPTIMUM_IO: dict[str, tuple[list[str], list[str]]] = {
    "unet": (["sample", "timestep", "encoder_hidden_states"], ["out_sample"]),
    "vae_encoder": (["sample"], ["latent_sample"]),
    "vae_decoder": (["latent_sample"], ["sample"]),
}


@dataclass(frozen=True)
class OnnxOptions:
    """How an ONNX export is written.

    Attributes:
        layout: ``nanosd`` or ``optimum``.
        precision: ``fp32`` or ``fp16``.
        exporter: ``dynamo`` (falls back to ``torchscript`` per component where it fails) or
            ``torchscript``.
    """

    layout: str = "nanosd"
    precision: str = "fp32"
    exporter: str = "dynamo"

    def __post_init__(self) -> None:
        for name, value, known in (("layout", self.layout, ONNX_LAYOUTS),
                                   ("precision", self.precision, ONNX_PRECISIONS),
                                   ("exporter", self.exporter, ONNX_EXPORTERS)):
            if value not in known:
                raise SpaceError(f"ONNX {name} {value!r} does not exist; known: "
                                 f"{', '.join(known)}")

    def io_names(self, component: str) -> tuple[list[str], list[str]]:
        return (OPTIMUM_IO if self.layout == "optimum" else ONNX_IO)[component]

    def path(self, component: str) -> str:
        """The component's file, relative to the export folder."""
        return f"{component}/model.onnx" if self.layout == "optimum" else f"{component}.onnx"
