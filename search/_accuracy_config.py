"""A study's ``accuracy`` section, importable without PyTorch.

It lives apart from ``search.evaluators`` because importing that package loads PyTorch and
diffusers, and parsing a study (``study create``, the API) must not.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: The evaluators every install has: the distilled block bank and the training-free surgery.
BUILTIN = ("distill", "surgery")


class AccuracyConfig(BaseModel):
    """A study's ``accuracy`` section.

    ``evaluator`` is ``distill`` (block bank), ``surgery`` (training-free) or a reference
    ``package.module:name`` to an :class:`AccuracyEvaluator` subclass (made with ``options``
    as keyword arguments) or to a function ``f(spec) -> float | dict[str, float]``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    evaluator: str = "distill"
    teacher: str = "demo"
    distill: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    device: str = "cpu"
