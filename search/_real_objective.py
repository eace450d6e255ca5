"""``bench search --objective real``: the samplers on a sub-space scored member by member with
the ``distill`` evaluator, beside the same sub-space on the stage-additive surrogate.

The surrogate adds per-stage bank losses; an assembled student's fidelity is not additive
(each stage sees the previous stages' errors), so a sampler's ratio on the surrogate need not
hold on the real objective. A sub-space small enough to score every member fixes some
dimensions (:func:`restrict`); by default the encoder stages of ``nanosd`` at the teacher's
choice, leaving the three decoder stages (9 of the 15 attention layers, the highest-resolution
stage D1 among them, each fed by the one before): 512 members. Latency and parameters are the
surrogate's (predicted, counted); only fidelity changes. Scores are kept in the project home as
they come, so an interrupted run goes on where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nanosd_nas.latency_models import ProgressCallback, project_home
from nanosd_nas.search._bench_search import BenchSearchError, SearchTables
from nanosd_nas.search._front import study_reference
from nanosd_nas.search._search_tables import (
    OBJECTIVES,
    SpaceObjectives,
    decode_rows,
    member_rows,
)
from nanosd_nas.search._space_front import sweep_front
from nanosd_nas.spaces import Space

#: The default sub-space of ``bench search --objective real``: the encoder stages fixed.
DEFAULT_FIXED = "E1=3,E2=3,E3=3"
#: Members scored between two saves of the scores.
_SAVE_EVERY = 16
#: The fidelity column of a table of :data:`OBJECTIVES`.
_FIDELITY = OBJECTIVES.index(("fidelity", "maximize"))


@dataclass(frozen=True)
class Restriction:
    """``space`` with the dimensions of ``fixed`` (index -> choice) held: ``sub`` is the space
    of the others (a :class:`spaces.Space` of its own), :meth:`lift` maps its members back."""

    parent: Space
    fixed: dict[int, int]
    sub: Space

    def lift(self, members: np.ndarray) -> np.ndarray:
        """Members of :attr:`sub` as choice vectors of :attr:`parent`."""
        members = np.asarray(members, dtype=np.int64)
        out = np.empty((len(members), len(self.parent.dimensions)), dtype=np.int64)
        free = [d for d in range(len(self.parent.dimensions)) if d not in self.fixed]
        out[:, free] = members
        for d, choice in self.fixed.items():
            out[:, d] = choice
        return out

    @property
    def label(self) -> str:
        return _label(self.parent, self.fixed)


def _label(space: Space, held: Mapping[int, int]) -> str:
    """``E1=3,E2=3``: the held dimensions by name, in the space's order."""
    return ",".join(f"{space.dimensions[d].name}={c}" for d, c in sorted(held.items()))


def parse_fixed(text: str) -> dict[str, int]:
    """``E1=3,E2=3`` as a mapping; :class:`BenchSearchError` for anything else."""
    fixed: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise BenchSearchError(f"--fix {text!r}: write NAME=INDEX pairs, comma-separated "
                                   "(e.g. E1=3,E2=3)")
        fixed[name.strip()] = int(value)
    return fixed


def restrict(space: Space, fixed: Mapping[str, int]) -> Restriction:
    """``space`` with ``fixed`` (dimension name -> choice index) held."""
    names = [d.name for d in space.dimensions]
    held: dict[int, int] = {}
    for name, choice in fixed.items():
        if name not in names:
            raise BenchSearchError(f"--fix: space {space.name!r} has no dimension {name!r} "
                                   f"(it has {', '.join(names)})")
        d = names.index(name)
        if not 0 <= choice < space.cardinalities[d]:
            raise BenchSearchError(f"--fix: {name} has choices 0..{space.cardinalities[d] - 1}, "
                                   f"not {choice}")
        held[d] = choice
    if len(held) == len(names):
        raise BenchSearchError("--fix holds every dimension: nothing is left to search")
    base = space.base
    for d, choice in held.items():
        base = space.dimensions[d].apply(base, space.dimensions[d].choices[choice])
    label = _label(space, held)
    sub = Space(name=f"{space.name}[{label}]", description=f"{space.name} with {label}",
                base=base, dimensions=[dim for d, dim in enumerate(space.dimensions)
                                       if d not in held])
    return Restriction(parent=space, fixed=held, sub=sub)


def check_fixed(space: Space, text: str | None) -> dict[str, int]:
    """``--fix`` (or the default sub-space) parsed and checked against ``space``."""
    fixed = parse_fixed(text or DEFAULT_FIXED)
    restrict(space, fixed)
    return fixed


@dataclass(frozen=True)
class LiftedObjectives:
    """The parent space's objectives on a sub-space's members."""

    objectives: SpaceObjectives
    restriction: Restriction

    @property
    def space(self) -> Space:
        return self.restriction.sub

    def values(self, members: np.ndarray) -> np.ndarray:
        return self.objectives.values(self.restriction.lift(members))


@dataclass(frozen=True)
class TableObjectives:
    """Every member's values of a sub-space, looked up."""

    sub: Space
    table: np.ndarray

    @property
    def space(self) -> Space:
        return self.sub

    def values(self, members: np.ndarray) -> np.ndarray:
        return np.asarray(self.table[member_rows(self.sub, members)])


def score_real(sub: Space, surrogate: np.ndarray, evaluator: Any, scale: str, *, cache: Path,
               on_progress: ProgressCallback | None = None) -> tuple[np.ndarray, float]:
    """``surrogate`` (every member's values, in :func:`decode_rows` order) with the
    evaluator's ``fidelity`` in place of the surrogate's (latency and parameters kept); the
    seconds spent scoring in this call. Scores are saved to ``cache`` every few members and
    read back from it first."""
    members = decode_rows(sub, 0, sub.size)
    table = surrogate.copy()
    scored = np.full(sub.size, np.nan)
    if cache.is_file():
        kept = np.load(cache)["fidelity"]
        if kept.shape == scored.shape:
            scored = kept
    started = time.perf_counter()
    todo = np.flatnonzero(np.isnan(scored))
    for done, row in enumerate(todo, start=1):
        spec = sub.spec(tuple(int(c) for c in members[row]), scale)
        scored[row] = evaluator.evaluate(spec).objectives["fidelity"]
        if done % _SAVE_EVERY == 0 or done == len(todo):
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_name(cache.stem + ".partial.npz")
            np.savez(partial, fidelity=scored)
            partial.replace(cache)
        if on_progress is not None:
            on_progress("real objective", sub.size - len(todo) + done, sub.size)
    table[:, _FIDELITY] = scored
    return table, time.perf_counter() - started


def _cache_path(tables: SearchTables, restriction: Restriction) -> Path:
    key = json.dumps({"space": restriction.parent.name, "digest": restriction.parent.digest,
                      "fixed": restriction.label, "scale": tables.scale,
                      "bank": tables.bank.get("teacher"),
                      "settings": tables.bank.get("settings")}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return project_home() / "real-objective" / f"{restriction.parent.name}-{digest}.npz"


def real_tables(tables: SearchTables, fixed: Mapping[str, int], *,
                on_progress: ProgressCallback | None = None,
                ) -> tuple[SearchTables, SearchTables, dict[str, Any]]:
    """The sub-space of ``tables``' space with ``fixed`` held, on the surrogate and on the
    ``distill`` evaluator's fidelity (over the bank ``tables`` were made with): both tables,
    and what the scoring took."""
    from nanosd_nas.search.evaluators import BankEvaluator

    if not isinstance(tables.objectives, SpaceObjectives):
        raise BenchSearchError("the real objective needs the surrogate's tables of a whole "
                               "space")
    restriction = restrict(tables.space, fixed)
    lifted = LiftedObjectives(tables.objectives, restriction)
    evaluator = BankEvaluator.on(tables.objectives.fidelity.bank)
    cache = _cache_path(tables, restriction)
    sub = restriction.sub
    surrogate_values = lifted.values(decode_rows(sub, 0, sub.size))
    table, seconds = score_real(sub, surrogate_values, evaluator, tables.scale, cache=cache,
                                on_progress=on_progress)
    surrogate = _sub_tables(tables, lifted, on_progress)
    real = _sub_tables(tables, TableObjectives(sub, table), on_progress)
    from scipy.stats import spearmanr

    rho = float(spearmanr(surrogate_values[:, _FIDELITY], table[:, _FIDELITY]).statistic)
    return surrogate, real, {
        "fixed": restriction.label, "members": restriction.sub.size,
        "scoring_s": round(seconds, 1), "per_member_s": round(seconds / restriction.sub.size, 2)
        if seconds else None, "cache": str(cache),
        "fidelity_spearman_surrogate_vs_real": round(rho, 4),
        "real_fidelity_range": [float(table[:, _FIDELITY].min()),
                                float(table[:, _FIDELITY].max())]}


def _sub_tables(tables: SearchTables, objectives: LiftedObjectives | TableObjectives,
                on_progress: ProgressCallback | None) -> SearchTables:
    """Tables of a sub-space: its exact front, and the study rule's reference point from its
    own ranges."""
    names, directions = [n for n, _ in OBJECTIVES], [d for _, d in OBJECTIVES]
    front = sweep_front(objectives, directions, on_progress=on_progress)
    ranges = {name: (float(front.low[i]), float(front.high[i])) for i, name in enumerate(names)}
    return replace(tables, space=objectives.space, objectives=objectives, front=front,
                   reference=study_reference(names, directions, ranges=ranges))
