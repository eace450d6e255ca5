"""The accuracy objective's contract: what the search asks of an evaluator."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nanosd_nas.spaces import ArchSpec, Space


class EvaluatorError(ValueError):
    """An evaluator that cannot be made (unknown name, a reference that does not import) or a
    score that is not a number."""


@dataclass
class AccuracyResult:
    """A candidate's accuracy objectives and what explains them.

    Attributes:
        objectives: objective name -> value (higher is better for the built-in ones), e.g.
            ``{"fidelity": 23.4}``; every value is a finite float.
        details: anything worth showing beside them (per-stage errors, the teacher's label).
    """

    objectives: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in self.objectives.items():
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise EvaluatorError(f"accuracy objective {name!r} is {value!r}, not a finite "
                                     f"number")
            self.objectives[name] = float(value)


#: Reports progress of long preparation: ``(what, done, total)``.
Progress = Callable[[str, int, int], None]


class AccuracyEvaluator(ABC):
    """Scores a candidate's accuracy (higher is better).

    An instance serves one worker at a time: the search makes one per worker process from the
    study's ``accuracy`` section, so it need not be thread-safe, and it may keep caches
    (teacher, data, block bank) between calls. ``evaluate`` must not change the spec and must
    raise, not return a made-up score, when it cannot score a candidate: the trial then fails
    visibly and the study goes on.
    """

    #: The objective names ``evaluate`` returns (a study's objectives refer to them).
    objective_names: tuple[str, ...] = ("fidelity",)

    def prepare(  # noqa: B027 - an optional hook, a no-op unless overridden
        self, space: Space, scale: str, progress: Progress | None = None
    ) -> None:
        """Optional one-off work before a study evaluates members of ``space`` (a no-op by
        default; the block bank evaluator distils every stage variant here)."""

    @abstractmethod
    def evaluate(self, spec: ArchSpec) -> AccuracyResult:
        """The accuracy objectives of one candidate."""
