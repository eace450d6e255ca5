"""A user's own accuracy evaluators, imported by ``module:name`` reference in the tests."""

from __future__ import annotations

from search.evaluators import AccuracyEvaluator, AccuracyResult
from spaces import ArchSpec


def transformer_share(spec: ArchSpec) -> float:
    layers = [layer for level in spec.unet.levels for layer in (*level.down, *level.up)]
    return sum(layer.has_transformer for layer in layers) / len(layers)


def two_objectives(spec: ArchSpec) -> dict[str, float]:
    return {"fidelity": transformer_share(spec), "task_score": 0.5}


def not_a_number(spec: ArchSpec) -> float:
    return float("nan")


class WidthScore(AccuracyEvaluator):
    """Scores by the first level's width times a factor given in the study's options."""

    def __init__(self, *, factor: float) -> None:
        self.factor = factor

    def evaluate(self, spec: ArchSpec) -> AccuracyResult:
        return AccuracyResult(objectives={"fidelity": self.factor * spec.unet.levels[0].channels})


NOT_CALLABLE = 3
