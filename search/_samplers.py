"""The Optuna samplers a study can name, made from a seed; shared by the runner and
``bench search`` so that the benchmark measures the samplers the service runs."""

from __future__ import annotations

from collections.abc import Callable

import optuna

SamplerFactory = Callable[[int], optuna.samplers.BaseSampler]

#: Sampler name -> factory of a seeded sampler. ``tpe`` is multivariate: with independent TPE
#: the front's corners are found later (``tpe-independent`` is there to show it in the bench).
#: Constraints reach every one of them through ``Trial.set_constraint`` (Optuna 5).
SAMPLERS: dict[str, SamplerFactory] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe-independent": lambda seed: optuna.samplers.TPESampler(seed=seed),
}


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` seeded with ``seed``; ``KeyError`` for an unknown name (study files
    are validated before they get here)."""
    return SAMPLERS[name](seed)  # type: ignore[arg-type]
