"""How a study samples its space, shared by the runner and ``bench search`` so that the benchmark
measures what the service runs: the Optuna samplers a study can name, how a member's choices are
presented to them, and the initial design they start from."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

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

#: The corners take at most this share of a study's trials.
INITIAL_DESIGN_SHARE = 1 / 3


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` seeded with ``seed``; ``KeyError`` for an unknown name (study files
    are validated before they get here)."""
    return SAMPLERS[name](seed)  # type: ignore[arg-type]


def distributions(names: Sequence[str], cardinalities: Sequence[int],
                  ) -> dict[str, optuna.distributions.IntDistribution]:
    """Each dimension as its choice index, an ordinal integer. A space lists each dimension's
    choices from the smallest block to the largest, so neighbouring indices are alike; TPE
    uses that order where a categorical encoding would not (``bench search`` in the README)."""
    return {name: optuna.distributions.IntDistribution(0, count - 1)
            for name, count in zip(names, cardinalities, strict=True)}


def initial_design(cardinalities: Sequence[int], trials: int, seed: int,
                   ) -> list[tuple[int, ...]]:
    """The space's corners, to be asked first: every dimension at its first or its last
    choice (a two-level full factorial), the smallest and the largest member first.

    The front's ends are where a sampler's model is weakest and where most of the
    hypervolume lies; the corners put them, and every mix of small and large stages, in the
    history from the start. When there are more corners than :data:`INITIAL_DESIGN_SHARE` of
    ``trials``, both extremes and a seeded sample of the other corners are taken.
    """
    cap = int(trials * INITIAL_DESIGN_SHARE)
    highs = [count - 1 for count in cardinalities]
    varying = [i for i, high in enumerate(highs) if high > 0]
    corners = 1 << len(varying)  # a corner is a bit per varying dimension: 1 is "last"
    if cap < 2 or corners < 2:
        return []
    if corners <= cap:
        codes = [0, corners - 1, *range(1, corners - 1)]
    else:  # both extremes, then distinct others at random (never listing all corners)
        chance = random.Random(seed)
        others: dict[int, None] = {}
        while len(others) < cap - 2:
            others.setdefault(chance.randrange(1, corners - 1))
        codes = [0, corners - 1, *others]
    design = []
    for code in codes:
        member = [0] * len(highs)
        for bit, dimension in enumerate(varying):
            if code >> bit & 1:
                member[dimension] = highs[dimension]
        design.append(tuple(member))
    return design
