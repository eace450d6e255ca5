"""How a study samples its space, shared by the runner and ``bench search`` so that the benchmark
measures what the service runs: the Optuna samplers a study can name and the initial design they
start from (how a member's choices are presented to them: :mod:`search._encoding`)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import optuna

SamplerFactory = Callable[[int, bool], optuna.samplers.BaseSampler]

#: Sampler name -> factory of a sampler from ``(seed, parallel)``. ``tpe`` is multivariate: with
#: independent TPE the front's corners are found later (``tpe-independent`` is there to show it
#: in the bench). ``parallel``: trials are asked before earlier ones are told; TPE then imagines
#: each pending trial at the worst value seen so far (Optuna's constant liar), so that a batch
#: does not pile on one spot (``bench search --parallelism`` in the README).
#: Constraints reach every one of them through ``Trial.set_constraint`` (Optuna 5).
SAMPLERS: dict[str, SamplerFactory] = {
    "tpe": lambda seed, parallel: optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=parallel),
    "nsga2": lambda seed, _: optuna.samplers.NSGAIISampler(seed=seed),
    "gp": lambda seed, _: optuna.samplers.GPSampler(seed=seed),
    "random": lambda seed, _: optuna.samplers.RandomSampler(seed=seed),
    "tpe-independent": lambda seed, parallel: optuna.samplers.TPESampler(
        seed=seed, constant_liar=parallel),
}

#: The corners take at most this share of a study's trials: a sixth did better than a third for
#: TPE on both spaces (README, Search).
INITIAL_DESIGN_SHARE = 1 / 6


def make_sampler(name: str, seed: int | None, *, parallel: bool = False,
                 ) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` seeded with ``seed``, for a study that asks trials before earlier
    ones are told if ``parallel``; ``KeyError`` for an unknown name (study files are validated
    before they get here)."""
    return SAMPLERS[name](seed, parallel)  # type: ignore[arg-type]


def runner_seed(study_seed: int, asked: int, runner_id: str) -> int:
    """The seed of one runner's sampler: from the study's ``seed``, the trials the study had
    when the runner started (a resumed run does not replay the draws of the first) and the
    runner (``HOST:PID``: runners that start together do not draw the same members; empty
    for the runner that created the study, whose draws follow from the seed alone)."""
    key = f"{study_seed}:{asked}:{runner_id}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "big")


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
