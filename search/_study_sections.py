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
    model_validator,
)

from nanosd_nas.search._objectives import LATENCY_OBJECTIVE, SIZE_COUNTERS

Direction = Literal["maximize", "minimize"]
Source = Literal["accuracy", "latency", "size"]

#: Objectives the service computes, by where they come from, with their natural direction.
ACCURACY_OBJECTIVES = ("fidelity", "unet_fidelity_db", "vae_psnr_db")
LATENCY_OBJECTIVES = (LATENCY_OBJECTIVE,)
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
REMOVED_FIELDS: dict[tuple[str, str], str] = {
    ("pipeline", "image_size"): "the image size is the scale's (128 px at mini, 512 px at "
                                "full); the field was removed",
}


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


class PipelineConfig(Section):
    """What one image costs: VAE encoder + ``steps`` x U-Net + VAE decoder, at the scale's
    image size (128 px at ``mini``, 512 px at ``full``)."""

    steps: Annotated[StrictInt, Field(ge=1, le=1000)] = 1


class LatencyConfig(Section):
    """Where latency comes from while searching, and whether the front is re-measured."""

    source: Literal["predictor", "measured"] = "predictor"
    verify_front: StrictBool = True


def default_objectives() -> tuple[Objective, ...]:
    return (Objective(name="fidelity", direction="maximize"),
            Objective(name="latency_ms", direction="minimize"),
            Objective(name="params_m", direction="minimize"))
