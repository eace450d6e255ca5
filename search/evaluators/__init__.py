"""Accuracy evaluators: the contract the search calls, the built-in block-bank and surgery-only
evaluators, and users' own by ``module:name`` reference.

Importing this package loads PyTorch and diffusers.
"""

from __future__ import annotations

from nanosd_nas.search.evaluators._bank_evaluator import BankEvaluator, resolve_device
from nanosd_nas.search.evaluators._base import (
    AccuracyEvaluator,
    AccuracyResult,
    EvaluatorError,
    Progress,
)
from nanosd_nas.search.evaluators._bench import bench_fidelity
from nanosd_nas.search.evaluators._plugin import (
    BUILTIN,
    AccuracyConfig,
    FunctionEvaluator,
    make_evaluator,
    resolve_reference,
)

__all__ = [
    "BUILTIN", "AccuracyConfig", "AccuracyEvaluator", "AccuracyResult", "BankEvaluator",
    "EvaluatorError", "FunctionEvaluator", "Progress", "bench_fidelity", "make_evaluator",
    "resolve_device", "resolve_reference",
]
