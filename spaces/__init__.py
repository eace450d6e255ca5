"""Architecture spec, search spaces, model builder, surgery and export formats.

The spec, spaces, counts and presets need no PyTorch; the names that build modules (``build``,
``transplant``, ``export`` and their types) load PyTorch and diffusers on first use, so that the
command line answers questions about specs and spaces without paying for that import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nanosd_nas.spaces._blocks import COMPONENTS, Block, Counts, count, decompose, skip_channels
from nanosd_nas.spaces._diffusers_config import (
    NotExpressible,
    spec_from_diffusers,
    unet_config,
    vae_config,
)
from nanosd_nas.spaces._errors import ExportError, PresetError, SpaceError
from nanosd_nas.spaces._export_card import ExportSource, ObjectiveValue
from nanosd_nas.spaces._export_options import (
    ONNX_EXPORTERS,
    ONNX_LAYOUTS,
    ONNX_PRECISIONS,
    OnnxOptions,
)
from nanosd_nas.spaces._presets import list_points, list_spaces, load_point, load_space
from nanosd_nas.spaces._scale import (
    SCALES,
    Scale,
    at_image_size,
    get_scale,
    scale_at,
    to_scale,
)
from nanosd_nas.spaces._space import DIMENSIONS, Choices, Dimension, Space
from nanosd_nas.spaces._spec import (
    SCHEMA_VERSION,
    ArchSpec,
    Layer,
    SpecError,
    UNetLevel,
    UNetSpec,
    VAESpec,
)
from nanosd_nas.spaces._summary import attention_layout, spec_summary, stage_layouts
from nanosd_nas.spaces._surgery import prune

if TYPE_CHECKING:
    from nanosd_nas.spaces._builder import RESIDUAL_BLOCKS, BuiltModel, SpecUNet, SpecVAE, build
    from nanosd_nas.spaces._export import FORMATS, ExportResult, export
    from nanosd_nas.spaces._onnx_export import export_onnx_component
    from nanosd_nas.spaces._transplant import TransplantResult, transplant

_LAZY: dict[str, str] = {
    **dict.fromkeys(("RESIDUAL_BLOCKS", "BuiltModel", "SpecUNet", "SpecVAE", "build"),
                    "nanosd_nas.spaces._builder"),
    **dict.fromkeys(("FORMATS", "ExportResult", "export"), "nanosd_nas.spaces._export"),
    "export_onnx_component": "nanosd_nas.spaces._onnx_export",
    **dict.fromkeys(("TransplantResult", "transplant"), "nanosd_nas.spaces._transplant"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nanosd_nas.spaces' has no attribute {name!r}")


__all__ = [
    "COMPONENTS", "DIMENSIONS", "at_image_size", "FORMATS", "RESIDUAL_BLOCKS", "SCALES",
    "SCHEMA_VERSION",
    "ArchSpec", "Block", "BuiltModel", "Choices", "Counts", "Dimension", "ExportError",
    "ExportResult", "ExportSource", "Layer", "NotExpressible", "ObjectiveValue", "OnnxOptions",
    "ONNX_EXPORTERS", "ONNX_LAYOUTS", "ONNX_PRECISIONS", "PresetError", "Scale", "Space",
    "SpaceError",
    "SpecError", "SpecUNet", "SpecVAE", "TransplantResult", "UNetLevel", "UNetSpec", "VAESpec",
    "build", "count", "decompose", "export", "export_onnx_component", "get_scale", "list_points",
    "scale_at",
    "list_spaces", "load_point", "load_space", "prune", "skip_channels", "spec_from_diffusers",
    "spec_summary", "attention_layout", "stage_layouts", "to_scale", "transplant", "unet_config",
    "vae_config",
]
