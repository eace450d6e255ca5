"""What a runner knows of its space without evaluating a member: sizes counted from the spec,
latency from the device's predictor (and the photo's, derived from it), and the range each
takes over the space."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from nanosd_nas.latency_models import LatencyPredictor
from nanosd_nas.search._objectives import (
    LATENCY_OBJECTIVE,
    PHOTO_LATENCY_OBJECTIVE,
    SIZE_COUNTERS,
)
from nanosd_nas.search._study_config import PipelineConfig, StudyConfig
from nanosd_nas.search.run._latency import LatencyModel
from nanosd_nas.search.store import ObjectiveValue
from nanosd_nas.spaces import ArchSpec, Space


class InfeasibleConstraints(ValueError):
    """A study's constraints that no member of its space can meet: the user's to fix."""


def predicted_latency(predictor: LatencyPredictor, space: Space, choices: np.ndarray,
                      steps: int) -> np.ndarray:
    """The predicted pipeline latency (ms) of each choice vector in ``choices``."""
    return predictor.predict_choices(space, choices).pipeline(steps)


def latency_values(latency: ObjectiveValue, spec: ArchSpec,
                   pipeline: PipelineConfig) -> dict[str, ObjectiveValue]:
    """A member's pipeline latency (``latency_ms``) and, for a study with ``pipeline.photo``,
    its photo's (``photo_latency_ms``): the photo's tiles, each of ``pipeline.image_size`` (or
    the member's image size), x
    that latency, with its provenance (a prediction cites the same predictor)."""
    values = {LATENCY_OBJECTIVE: latency}
    tiles = pipeline.tiles(pipeline.image_size or spec.image_size)
    if tiles is not None:
        values[PHOTO_LATENCY_OBJECTIVE] = ObjectiveValue(tiles * latency.value,
                                                         latency.provenance, latency.predictor_id)
    return values


def space_ranges(space: Space, scale: str, *, steps: int, names: Iterable[str],
                 predictor: LatencyPredictor | None = None,
                 pipeline: PipelineConfig | None = None) -> dict[str, tuple[float, float]]:
    """The lowest and highest value over ``space`` of each of ``names`` that is known without
    evaluating a member: the sizes and, with a ``predictor``, latency (and, with a
    ``pipeline`` that has a photo, the photo's).

    They are taken at the space's smallest and largest members: a space lists each dimension's
    choices from the smallest block up, so those two bound what a member costs.
    """
    extremes = list(space.extremes())
    specs = [space.spec(c, scale) for c in extremes]
    latency: list[float] = []
    if predictor is not None:
        latency = predicted_latency(predictor, space, np.array(extremes), steps).tolist()
    tiles = [] if pipeline is None else [
        n for s in specs if (n := pipeline.tiles(pipeline.image_size or s.image_size)) is not None]
    ranges: dict[str, tuple[float, float]] = {}
    for name in names:
        if name in SIZE_COUNTERS:
            values = [SIZE_COUNTERS[name](spec, steps) for spec in specs]
        elif name == LATENCY_OBJECTIVE and latency:
            values = latency
        elif name == PHOTO_LATENCY_OBJECTIVE and latency and tiles:
            values = [n * ms for n, ms in zip(tiles, latency, strict=True)]
        else:
            continue
        ranges[name] = (float(min(values)), float(max(values)))
    return ranges


class SpaceValues:
    """The values a runner computes itself for a study's trials.

    Args:
        config: the study.
        space: its space.
        latency: the predictor trials take their latency from; None when the study has no
            latency objective or measures every trial.
    """

    def __init__(self, *, config: StudyConfig, space: Space,
                 latency: LatencyModel | None) -> None:
        self.config = config
        self.space = space
        self.latency = latency
        self._ranges: dict[str, tuple[float, float]] | None = None

    def of(self, spec: ArchSpec, choices: tuple[int, ...]) -> dict[str, ObjectiveValue]:
        """A trial's sizes (computed) and, with a predictor, its latency and its photo's
        (predicted: :func:`latency_values`)."""
        steps = self.config.pipeline.steps
        values = {name: ObjectiveValue(function(spec, steps), "computed")
                  for name, function in SIZE_COUNTERS.items()}
        if self.latency is not None:
            latency = float(predicted_latency(self.latency.predictor, self.space,
                                              np.array([choices]), steps)[0])
            values.update(latency_values(
                ObjectiveValue(latency, "predicted", self.latency.predictor_id), spec,
                self.config.pipeline))
        return values

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """:func:`space_ranges` of the study's size and latency values (objectives and
        constrained values)."""
        if self._ranges is None:
            self._ranges = space_ranges(
                self.space, self.config.scale, steps=self.config.pipeline.steps,
                names=(*self.config.size_objectives, *self.config.latency_objectives),
                predictor=None if self.latency is None else self.latency.predictor,
                pipeline=self.config.pipeline)
        return self._ranges

    def check_feasible_at_all(self) -> None:
        """Constraints that no member of the space can meet are the user's mistake.

        Raises:
            InfeasibleConstraints: naming the constraint and the range the space spans.
        """
        for name, bound in self.config.constraints.items():
            if name not in self.ranges:
                continue
            low, high = self.ranges[name]
            if (bound.max is not None and low > bound.max) or (
                    bound.min is not None and high < bound.min):
                raise InfeasibleConstraints(
                    f"constraint {name} in [{bound.min}, {bound.max}] cannot be met: the "
                    f"space {self.space.name!r} at {self.config.scale} ranges over "
                    f"{low:.3g}..{high:.3g}")
