"""A study's ``accuracy`` section, importable without PyTorch.

It lives apart from ``search.evaluators`` because importing that package loads PyTorch and
diffusers, and parsing a study (``study create``, the API) must not.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The evaluators every install has: the distilled block bank and the training-free surgery.
BUILTIN = ("distill", "surgery")
#: Where distillation and scoring run: ``auto`` is ``cuda`` when PyTorch sees a GPU.
ACCURACY_DEVICES = ("auto", "cpu", "cuda")


class DistillSettings(BaseModel):
    """How every bank entry is distilled: the budget of a stage variant and the calibration
    data's size and seed (all of it is part of a bank entry's key).

    ``lr_schedule`` is ``constant`` or ``cosine`` (from ``learning_rate`` down to 0 over
    ``steps``), after ``warmup_steps`` of linear warm-up.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=150, ge=0, le=1_000_000)
    batch_size: int = Field(default=16, ge=1, le=4096)
    learning_rate: float = Field(default=1e-3, gt=0, le=1.0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0, le=1_000_000)
    output_weight: float = Field(default=0.0, ge=0)
    task_weight: float = Field(default=0.0, ge=0)
    samples: int = Field(default=160, ge=4, le=100_000)
    holdout: float = Field(default=0.33, gt=0, lt=1)
    data_seed: int = 0


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
