"""The sections of a study document and the objectives it may name.

:class:`search.StudyConfig` is built from these; they live apart so that the catalogue of
objectives (where each value comes from, its natural direction) reads on one screen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from nanosd_nas.search._objectives import (
    LATENCY_OBJECTIVE,
    PHOTO_LATENCY_OBJECTIVE,
    SIZE_COUNTERS,
    photo_tiles,
)

Direction = Literal["maximize", "minimize"]
Source = Literal["accuracy", "latency", "size"]

#: Objectives the service computes, by where they come from, with their natural direction.
ACCURACY_OBJECTIVES = ("fidelity", "unet_fidelity_db", "vae_psnr_db")
#: ``latency_ms``: one image (a tile) through the pipeline; ``photo_latency_ms``: the tiles of
#: ``pipeline.photo`` through it, one after another.
LATENCY_OBJECTIVES = (LATENCY_OBJECTIVE, PHOTO_LATENCY_OBJECTIVE)
#: ``params_m``: parameters of U-Net + VAE in millions; ``macs_g``: MACs of one generation
#: (VAE encoder, ``steps`` U-Net evaluations, VAE decoder) in billions.
SIZE_OBJECTIVES = tuple(SIZE_COUNTERS)
KNOWN_OBJECTIVES = (*ACCURACY_OBJECTIVES, *LATENCY_OBJECTIVES, *SIZE_OBJECTIVES)
NATURAL_DIRECTIONS: dict[str, Direction] = {
    **dict.fromkeys(ACCURACY_OBJECTIVES, "maximize"),
    **dict.fromkeys((*LATENCY_OBJECTIVES, *SIZE_OBJECTIVES), "minimize"),
}
Sampler = Literal["tpe", "nsga2", "gp", "random"]
InitialDesign = Literal["corners", "none"]
#: How a member's choices are presented to the sampler (:mod:`search._encoding`).
EncodingName = Literal["ordinal", "categorical", "binary"]
ENCODINGS: tuple[str, ...] = get_args(EncodingName)
#: A new study's encoding: the best of the three in ``bench search`` (README).
DEFAULT_ENCODING: EncodingName = "binary"


def default_initial_design(sampler: str) -> InitialDesign:
    """``corners`` for the model-based samplers; random search stays the plain baseline."""
    return "none" if sampler == "random" else "corners"


def objective_source(name: str) -> Source:
    """Where a value comes from; any name that is not a latency or size one is accuracy (a
    plugin evaluator's own)."""
    if name in LATENCY_OBJECTIVES:
        return "latency"
    if name in SIZE_OBJECTIVES:
        return "size"
    return "accuracy"


SAMPLERS: tuple[str, ...] = get_args(Sampler)


class Section(BaseModel):
    """A part of a study document: frozen, and no field it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Objective(Section):
    """One objective; ``direction`` defaults to the natural one (accuracy up, cost down;
    ``maximize`` for a plugin's own objectives)."""

    name: Annotated[str, Field(min_length=1)]
    direction: Direction

    @model_validator(mode="before")
    @classmethod
    def _natural_direction(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "direction" not in data:
            name = data.get("name")
            return {**data, "direction": NATURAL_DIRECTIONS.get(name, "maximize")
                    if isinstance(name, str) else "maximize"}
        return data


class Bound(Section):
    """Limits of one constrained value: at least one of ``min`` and ``max``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    min: StrictFloat | None = None
    max: StrictFloat | None = None

    @model_validator(mode="after")
    def _one_sane_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("a constraint needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


#: Fields the study format no longer has, with why: a new document that gives one is refused
#: with the reason; a document stored before is read without them.
REMOVED_FIELDS: dict[tuple[str, str], str] = {}


def removed_field(document: Mapping[str, Any]) -> str | None:
    """The first removed field ``document`` gives, as ``SECTION.FIELD: why``; None if none."""
    for (section, name), why in REMOVED_FIELDS.items():
        part = document.get(section)
        if isinstance(part, Mapping) and name in part:
            return f"{section}.{name}: {why}"
    return None


def without_removed_fields(document: Mapping[str, Any]) -> dict[str, Any]:
    """A stored study document as the format reads it now: the removed fields dropped."""
    current = dict(document)
    for section, name in REMOVED_FIELDS:
        part = current.get(section)
        if isinstance(part, Mapping) and name in part:
            current[section] = {k: v for k, v in part.items() if k != name}
    return current


#: The longest side ``pipeline.photo`` may give, in px (a JPEG's largest).
MAX_PHOTO_SIDE = 65_535
_PhotoSide = Annotated[StrictInt, Field(ge=1, le=MAX_PHOTO_SIDE)]


class PipelineConfig(Section):
    """What one image costs: VAE encoder + ``steps`` x U-Net + VAE decoder, at ``image_size``
    (unset: the scale's image size, 128 px at ``mini``, 512 px at ``full``); and, with
    ``photo``, what a user's photo costs when the pipeline runs over it tile by tile
    (``photo_latency_ms``).

    ``image_size`` is the tile latency is measured and predicted at (the scale ``mini@256``:
    the scale's widths on 256-px tiles, with block tables and a predictor of its own); the
    accuracy evaluator and the parameter and MAC counts stay at the scale's own size.

    A tile is one image of the pipeline; tiles overlap their neighbours by ``tile_overlap`` px
    (unset: a quarter tile, 128 px at ``full``), so they start every ``tile - tile_overlap`` px
    and a side of ``S`` px takes ``ceil((S - overlap) / (tile - overlap))`` of them (one if
    ``S`` is no longer than a tile): a 4000x3000 photo takes 11 x 8 = 88 tiles of 512 px.
    """

    steps: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    #: The tile latency is measured and predicted at, in px (a multiple of 64).
    image_size: Annotated[StrictInt, Field(ge=64, le=4096, multiple_of=64)] | None = None
    #: The photo's ``[width, height]`` in px, for ``photo_latency_ms``.
    photo: tuple[_PhotoSide, _PhotoSide] | None = None
    #: Pixels each tile shares with its neighbour; less than a tile (checked against the
    #: study's image size).
    tile_overlap: Annotated[StrictInt, Field(ge=0, le=MAX_PHOTO_SIDE)] | None = None

    @field_validator("photo", mode="before")
    @classmethod
    def _width_and_height(cls, photo: Any) -> Any:
        if photo is not None and not (isinstance(photo, list | tuple) and len(photo) == 2):
            raise ValueError(f"the photo is [width, height] in px, not {photo!r}")
        return photo

    def overlap(self, tile: int) -> int:
        """The overlap of tiles of ``tile`` px: ``tile_overlap``, or a quarter tile."""
        return tile // 4 if self.tile_overlap is None else self.tile_overlap

    def tiles(self, tile: int) -> int | None:
        """The tiles of ``tile`` px that cover ``photo``; None without a photo.

        Raises:
            ValueError: ``tile_overlap`` is not less than ``tile``.
        """
        if self.photo is None:
            return None
        return photo_tiles(self.photo, tile, self.overlap(tile))


class LatencyConfig(Section):
    """Where latency comes from while searching, and whether the front is re-measured."""

    source: Literal["predictor", "measured"] = "predictor"
    verify_front: StrictBool = True
    #: What the study's device must measure at (a device measures at one precision, see
    #: ``device add --precision``); ``None``: whatever the device measures at.
    precision: Literal["fp32", "fp16", "int8", "bf16"] | None = None


def default_objectives() -> tuple[Objective, ...]:
    return (Objective(name="fidelity", direction="maximize"),
            Objective(name="latency_ms", direction="minimize"),
            Objective(name="params_m", direction="minimize"))
