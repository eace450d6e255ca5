"""The architecture spec: one frozen, versioned value describing a whole student (U-Net and VAE).

The spec is the single source of truth of the project. The database stores its JSON, the API
returns it, ``export`` writes it, and the builder, the block decomposition and the counters read it.
Its semantic checks (:func:`validate`) live here too: a document becomes a spec only through them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1


class SpecError(ValueError):
    """A spec (or a document meant to become one) is invalid.

    Attributes:
        field: dotted path of the offending field, e.g. ``unet.levels[1].heads``.
        value: the offending value.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class Layer(_Frozen):
    """One layer of a U-Net stage: a ResNet block, optionally followed by a transformer.

    Attributes:
        block: kind of the residual block; resolved through the block registry (``resnet``).
        transformer_depth: number of transformer blocks after the ResNet block; 0 means none.
    """

    block: str = "resnet"
    transformer_depth: int = Field(default=0, ge=0)

    @property
    def has_transformer(self) -> bool:
        return self.transformer_depth > 0


class UNetLevel(_Frozen):
    """One resolution level of the U-Net: encoder stage ``E{k}`` and decoder stage ``D{k}``.

    The encoder stage is followed by a downsampler unless it is the deepest level; the decoder
    stage is followed by an upsampler unless it is the shallowest. As in diffusers, a decoder stage
    has one layer more than its encoder stage: it consumes one skip connection per layer.

    Attributes:
        channels: output channels of every layer of the level.
        heads: attention heads of the level's transformers (head dim = channels / heads).
        down: layers of the encoder stage.
        up: layers of the decoder stage.
    """

    channels: int = Field(gt=0)
    heads: int = Field(default=8, gt=0)
    down: tuple[Layer, ...]
    up: tuple[Layer, ...]


class UNetSpec(_Frozen):
    """The denoising U-Net.

    Attributes:
        levels: resolution levels, shallowest first.
        mid_block: whether the mid block (ResNet, transformer, ResNet) exists.
        mid_transformer_depth: transformer depth of the mid block.
        cross_attention_dim: width of the text condition.
        context_length: number of text-condition tokens (77 for CLIP).
        norm_groups: group-norm groups of every ResNet block and transformer.
    """

    levels: tuple[UNetLevel, ...]
    mid_block: bool = False
    mid_transformer_depth: int = Field(default=1, ge=1)
    cross_attention_dim: int = Field(default=768, gt=0)
    context_length: int = Field(default=77, gt=0)
    norm_groups: int = Field(default=32, gt=0)

    @property
    def transformers_kept(self) -> int:
        """How many encoder and decoder layers keep their transformer (the mid block aside)."""
        return sum(layer.has_transformer for level in self.levels
                   for layer in (*level.down, *level.up))


class VAESpec(_Frozen):
    """The VAE (diffusers ``AutoencoderKL`` structure, encoder and decoder chosen apart).

    Attributes:
        encoder_channels: channels per encoder level, shallowest first.
        encoder_layers: ResNet blocks per encoder level.
        encoder_mid_attention: whether the encoder's mid block has its attention.
        decoder_channels: channels per decoder level, shallowest first (as ``block_out_channels``).
        decoder_layers: ``layers_per_block`` of the decoder; each decoder level has one more.
        decoder_mid_attention: whether the decoder's mid block has its attention.
        norm_groups: group-norm groups.
        scaling_factor: latent scaling factor.
    """

    encoder_channels: tuple[int, ...]
    encoder_layers: int = Field(default=2, ge=1)
    encoder_mid_attention: bool = True
    decoder_channels: tuple[int, ...]
    decoder_layers: int = Field(default=2, ge=1)
    decoder_mid_attention: bool = True
    norm_groups: int = Field(default=32, gt=0)
    scaling_factor: float = Field(default=0.18215, gt=0, allow_inf_nan=False)


class ArchSpec(_Frozen):
    """A whole student architecture: U-Net and VAE together.

    ``ArchSpec.from_json(spec.to_json()) == spec`` always holds; :attr:`spec_id` is a stable hash
    of the sorted-key JSON.
    """

    schema_version: int = SCHEMA_VERSION
    latent_channels: int = Field(default=4, gt=0)
    latent_size: int = Field(default=64, gt=0)
    unet: UNetSpec
    vae: VAESpec

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self, *, indent: int | None = None) -> str:
        """Sorted-key JSON; compact unless ``indent`` is given."""
        separators = (",", ": ") if indent else (",", ":")
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=separators)

    @property
    def spec_id(self) -> str:
        """Stable id: the first 16 hex digits of the SHA-256 of the compact sorted-key JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @property
    def image_size(self) -> int:
        return self.latent_size << (len(self.vae.encoder_channels) - 1)

    @classmethod
    def from_dict(cls, document: Any) -> ArchSpec:
        """Parse and validate a spec document; raise :class:`SpecError` naming the bad field."""
        if not isinstance(document, dict):
            raise SpecError("spec", type(document).__name__, "a spec must be a JSON object")
        version = document.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise SpecError(
                "schema_version", version, f"this version of nanosd-nas reads {SCHEMA_VERSION}"
            )
        try:
            spec = cls.model_validate(document)
        except ValidationError as error:
            raise _spec_error_from(error) from None
        validate(spec)
        return spec

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(
                "spec", text[:40], f"not valid JSON ({error.msg}, line {error.lineno})"
            ) from None
        return cls.from_dict(document)

    @classmethod
    def from_file(cls, path: str | Path) -> ArchSpec:
        return cls.from_json(Path(path).read_text())


def _spec_error_from(error: ValidationError) -> SpecError:
    first = error.errors()[0]
    return SpecError(format_location(first["loc"]), first.get("input"), first["msg"])


def format_location(loc: tuple[Any, ...]) -> str:
    """``("unet", "levels", 1, "heads")`` -> ``unet.levels[1].heads``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "spec"


# -- semantic checks, run before anything is built -----------------------------------------
#: Residual block kinds the builder knows; a layer's ``block`` must be one of them.
RESIDUAL_BLOCK_KINDS: tuple[str, ...] = ("resnet",)


def validate(spec: ArchSpec) -> None:
    """Raise :class:`SpecError` for the first problem found in ``spec``."""
    _validate_unet(spec.unet, spec.latent_size)
    _validate_vae(spec.vae)


def _validate_unet(unet: UNetSpec, latent_size: int) -> None:
    if not unet.levels:
        raise SpecError("unet.levels", [], "a U-Net needs at least one level")
    for k, level in enumerate(unet.levels):
        _validate_level(level, k, unet.norm_groups)
    downsamplings = len(unet.levels) - 1
    if latent_size % 2**downsamplings:
        raise SpecError(
            "latent_size",
            latent_size,
            f"must be divisible by 2^{downsamplings} for {len(unet.levels)} U-Net levels",
        )


def _validate_level(level: UNetLevel, k: int, groups: int) -> None:
    where = f"unet.levels[{k}]"
    if level.channels % groups:
        raise SpecError(
            f"{where}.channels",
            level.channels,
            f"not divisible by the group-norm groups ({groups})",
        )
    if level.channels % level.heads:
        raise SpecError(
            f"{where}.heads",
            level.heads,
            f"head dim channels/heads = {level.channels}/{level.heads} is not a whole number",
        )
    for stage in ("down", "up"):
        layers = getattr(level, stage)
        if not layers:
            raise SpecError(f"{where}.{stage}", [], "a stage needs at least one layer")
        for j, layer in enumerate(layers):
            if layer.block not in RESIDUAL_BLOCK_KINDS:
                raise SpecError(
                    f"{where}.{stage}[{j}].block",
                    layer.block,
                    f"unknown block kind; known: {', '.join(RESIDUAL_BLOCK_KINDS)}",
                )
    if len(level.up) != len(level.down) + 1:
        raise SpecError(
            f"{where}.up",
            f"{len(level.up)} layers",
            f"the skip connections of level {k} cannot match: the encoder stage leaves "
            f"{len(level.down) + 1} skips (its {len(level.down)} layers and the "
            f"{'input conv' if k == 0 else 'downsampler above'}), so the decoder stage needs "
            f"{len(level.down) + 1} layers",
        )


def _validate_vae(vae: VAESpec) -> None:
    for side in ("encoder", "decoder"):
        channels: tuple[int, ...] = getattr(vae, f"{side}_channels")
        if not channels:
            raise SpecError(f"vae.{side}_channels", [], "a VAE needs at least one level")
        for i, width in enumerate(channels):
            if width <= 0 or width % vae.norm_groups:
                raise SpecError(
                    f"vae.{side}_channels[{i}]",
                    width,
                    f"not a positive multiple of the group-norm groups ({vae.norm_groups})",
                )
    if len(vae.decoder_channels) != len(vae.encoder_channels):
        raise SpecError(
            "vae.decoder_channels",
            list(vae.decoder_channels),
            f"needs {len(vae.encoder_channels)} levels to upsample back to the image size, "
            "like the encoder",
        )
