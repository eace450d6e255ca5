"""Evaluators by name: the built-in ones, or a user's by a ``module:attribute`` reference."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanosd_nas.search._accuracy_config import BUILTIN, AccuracyConfig
from nanosd_nas.search.evaluators._base import AccuracyEvaluator, AccuracyResult, EvaluatorError
from nanosd_nas.spaces import ArchSpec


class FunctionEvaluator(AccuracyEvaluator):
    """Wraps a plain scoring function: a float becomes ``fidelity``, a dict is taken whole."""

    def __init__(self, function: Callable[[ArchSpec], Any], reference: str) -> None:
        self.function = function
        self.reference = reference

    def evaluate(self, spec: ArchSpec) -> AccuracyResult:
        value = self.function(spec)
        if isinstance(value, AccuracyResult):
            return value
        if isinstance(value, dict):
            return AccuracyResult(objectives=dict(value), details={"evaluator": self.reference})
        return AccuracyResult(objectives={"fidelity": value},
                              details={"evaluator": self.reference})


def resolve_reference(reference: str) -> Any:
    """The object named by ``package.module:attribute``; :class:`EvaluatorError` if it does
    not import."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise EvaluatorError(f"evaluator {reference!r} is neither {' nor '.join(BUILTIN)} nor a "
                             f"'package.module:name' reference")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module may fail in any way while importing
        raise EvaluatorError(f"evaluator {reference!r} does not import: "
                             f"{type(error).__name__}: {error}") from error
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise EvaluatorError(f"evaluator {reference!r}: module {module_name!r} has no "
                                 f"{attribute!r}")
        target = getattr(target, part)
    return target


def make_evaluator(config: AccuracyConfig, *, bank_folder: Path | None = None
                   ) -> AccuracyEvaluator:
    """The evaluator a study's ``accuracy`` section asks for."""
    if config.evaluator in BUILTIN:
        from nanosd_nas.search.distill import DistillSettings
        from nanosd_nas.search.evaluators._bank_evaluator import BankEvaluator

        return BankEvaluator(teacher=config.teacher, distilled=config.evaluator == "distill",
                             settings=DistillSettings(**config.distill),
                             bank_folder=bank_folder, device=config.device,
                             images=Path(config.images) if config.images else None,
                             context=Path(config.context) if config.context else None)
    target = resolve_reference(config.evaluator)
    if inspect.isclass(target) and issubclass(target, AccuracyEvaluator):
        try:
            return target(**config.options)
        except TypeError as error:
            raise EvaluatorError(f"evaluator {config.evaluator!r} does not take options "
                                 f"{sorted(config.options)}: {error}") from error
    if callable(target):
        return FunctionEvaluator(target, config.evaluator)
    raise EvaluatorError(f"evaluator {config.evaluator!r} is {type(target).__name__}, not an "
                         f"AccuracyEvaluator subclass or a function")
