"""Architecture spec, search spaces, model builder, surgery and export formats."""

from spaces._blocks import COMPONENTS, Block, Counts, count, decompose
from spaces._builder import RESIDUAL_BLOCKS, BuiltModel, SpecUNet, SpecVAE, build
from spaces._export import FORMATS, ExportError, ExportResult, export
from spaces._diffusers_config import NotExpressible, spec_from_diffusers, unet_config, vae_config
from spaces._presets import PresetError, list_points, list_spaces, load_point, load_space
from spaces._scale import SCALES, Scale, get_scale, to_scale
from spaces._space import DIMENSIONS, Dimension, Space
from spaces._spec import SCHEMA_VERSION, ArchSpec, Layer, SpecError, UNetLevel, UNetSpec, VAESpec
from spaces._surgery import TransplantResult, prune, transplant

__all__ = [
    "COMPONENTS", "DIMENSIONS", "FORMATS", "RESIDUAL_BLOCKS", "SCALES", "SCHEMA_VERSION",
    "ArchSpec", "Block", "BuiltModel", "Counts", "Dimension", "ExportError", "ExportResult", "Layer", "NotExpressible",
    "PresetError", "Scale", "Space", "SpecError", "SpecUNet", "SpecVAE", "TransplantResult",
    "UNetLevel", "UNetSpec", "VAESpec", "build", "count", "decompose", "export", "get_scale",
    "list_points", "list_spaces", "load_point", "load_space", "prune", "spec_from_diffusers",
    "to_scale", "transplant", "unet_config", "vae_config",
]
