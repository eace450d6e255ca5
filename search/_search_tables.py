"""Every member of a space scored on cheap, deterministic objectives: the tables that
``bench search`` looks trials up in.

- ``latency_ms``: the device's learned predictor, pipeline = VAE encoder + steps x U-Net + VAE
  decoder, vectorised over choice vectors.
- ``params_m``: parameters of the whole pipeline in millions, gathered per block slot
  (:class:`latency_models.SpaceFeatures`) and checked against :func:`spaces.count` on a sample.
- ``fidelity``: an additive surrogate from the block bank, ``-10 log10`` of the mean over the
  candidate's U-Net stages of (the stage variant's held-out distillation loss + 1e-3); a stage
  identical to the teacher's has loss 0.

A stage's variant depends on a few dimensions only (in ``nanosd`` stage E1 on dimension E1, and
so on). Which ones is found by probing every dimension from several members; each stage's losses
are then tabulated over its dimensions' choices and a member's loss is a gather. The probing is
evidence, not proof, so the tabulated variants are compared with the members' own on a sample
and a difference is an error rather than a wrong table.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from nanosd_nas.latency_models import FEATURES, LatencyPredictor
from nanosd_nas.search._study_sections import NATURAL_DIRECTIONS
from nanosd_nas.spaces import COMPONENTS, Space, count

if TYPE_CHECKING:
    from nanosd_nas.search.distill import BlockBank

#: (name, direction) of each objective, in column order; each in its natural direction, as a
#: study that names it without one has it.
OBJECTIVES: tuple[tuple[str, str], ...] = tuple(
    (name, NATURAL_DIRECTIONS[name]) for name in ("latency_ms", "params_m", "fidelity"))
_PARAMS = FEATURES.index("params_m")
_PARAMS_COLUMN = [name for name, _ in OBJECTIVES].index("params_m")
#: Added to every stage loss, so a teacher-identical candidate scores 30 dB, not infinity.
LOSS_FLOOR = 1e-3


def decode_rows(space: Space, start: int, stop: int) -> np.ndarray:
    """The members whose mixed-radix indices (:func:`member_rows`) are ``start..stop-1``, shape
    ``(stop - start, dimensions)``: any slice of a space without listing the rest."""
    indices = np.unravel_index(np.arange(start, stop, dtype=np.int64), space.cardinalities)
    return np.stack(indices, axis=1).astype(np.int64, copy=False)


def all_members(space: Space) -> np.ndarray:
    """Every choice vector of ``space``, shape ``(size, dimensions)``; row ``i`` is the member
    whose mixed-radix index (:func:`member_rows`) is ``i``. Small spaces only: see
    :func:`search._space_front.sweep_front` for the others."""
    return decode_rows(space, 0, space.size)


def member_rows(space: Space, choices: np.ndarray) -> np.ndarray:
    """The rows of :func:`all_members` that hold ``choices`` (shape ``(n, dimensions)``)."""
    rows = np.ravel_multi_index(np.asarray(choices, dtype=np.int64).T, space.cardinalities)
    return np.asarray(rows, dtype=np.int64)


def check_params(space: Space, scale: str, params: Callable[[np.ndarray], np.ndarray], *,
                 check: int = 32, seed: int = 0) -> None:
    """Compare ``params`` (members -> parameters in millions) with :func:`spaces.count` on
    ``check`` sampled members; a difference is a :class:`RuntimeError`."""
    sample = np.array(space.sample(min(check, space.size), seed=seed))
    counted = np.array([count(space.spec(tuple(c), scale)).total_params / 1e6 for c in sample])
    gathered = params(sample)
    if not np.allclose(gathered, counted, rtol=1e-9, atol=1e-9):
        worst = int(np.argmax(np.abs(gathered - counted)))
        raise RuntimeError(f"gathered parameters differ from spaces.count for member "
                           f"{sample[worst].tolist()}: {gathered[worst]} vs {counted[worst]} M")


class Objectives(Protocol):
    """The values of :data:`OBJECTIVES` for any batch of members of :attr:`space`."""

    @property
    def space(self) -> Space: ...

    def values(self, members: np.ndarray) -> np.ndarray: ...


class SpaceObjectives:
    """The objectives of :data:`OBJECTIVES` for any batch of members of ``space``, vectorised:
    predicted pipeline latency and parameters from one gather of the predictor's block
    features, fidelity from ``fidelity``'s stage tables. The parameter gather is checked
    against :func:`spaces.count` once, here."""

    def __init__(self, space: Space, scale: str, predictor: LatencyPredictor,
                 fidelity: FidelityTables, *, steps: int = 1) -> None:
        self.space, self.scale, self.steps = space, scale, steps
        self.predictor, self.fidelity = predictor, fidelity
        check_params(space, scale, lambda members: self.values(members)[:, _PARAMS_COLUMN])

    def values(self, members: np.ndarray) -> np.ndarray:
        """``(n, len(OBJECTIVES))`` values of ``members`` (shape ``(n, dimensions)``)."""
        members = np.asarray(members, dtype=np.int64)
        features = self.predictor.space_features(self.space).features(members)
        latency = self.predictor.predict_features(features).pipeline(self.steps)
        params = np.sum([features[c][:, _PARAMS] for c in COMPONENTS], axis=0)
        return np.column_stack([np.asarray(latency, dtype=float), params,
                                self.fidelity.fidelity(members)])


@dataclass(frozen=True)
class StageTable:
    """One stage's held-out loss over the choices of the dimensions its variant depends on."""

    stage: str
    dims: tuple[int, ...]
    documents: tuple[str, ...]  # the variant document of each combination of those choices
    losses: np.ndarray  # held-out loss of each combination

    def rows(self, members: np.ndarray, cardinalities: list[int]) -> np.ndarray:
        if not self.dims:
            return np.zeros(len(members), dtype=np.int64)
        return np.ravel_multi_index(members[:, list(self.dims)].T,
                                    [cardinalities[d] for d in self.dims])


class FidelityTables:
    """The bank's held-out stage losses, tabulated per U-Net stage of ``space`` at ``scale``.

    Args:
        space: the search space.
        scale: the teacher's scale.
        bank: a block bank holding every stage variant of the space (``bank.build`` first).
        probes: random members probed besides the smallest and largest.
        check: random members whose own variants are compared with the tables.
    """

    def __init__(self, space: Space, scale: str, bank: BlockBank, *, probes: int = 2,
                 check: int = 12, seed: int = 0) -> None:
        from nanosd_nas.search.distill import VAE_PARTS
        from nanosd_nas.search.distill._variants import UNET_IO, stage_documents

        self.space, self.scale, self.bank = space, scale, bank
        self._documents = stage_documents
        stages = [s for s in stage_documents(space.spec(space.extremes()[1], scale))
                  if s not in (*VAE_PARTS, UNET_IO)]
        depends = self._probe(stages, probes, seed)
        self.tables = {stage: self._tabulate(stage, depends[stage]) for stage in stages}
        self._check(check, seed + 1)

    def _probe(self, stages: list[str], probes: int, seed: int) -> dict[str, tuple[int, ...]]:
        """Which dimensions change each stage's variant, seen from the extremes and from
        ``probes`` random members."""
        space = self.space
        references = list(dict.fromkeys([*space.extremes(),
                                         *space.sample(min(probes, space.size), seed=seed)]))
        depends: dict[str, set[int]] = {stage: set() for stage in stages}
        for reference in references:
            base = self._documents(space.spec(reference, self.scale))
            for d, cardinality in enumerate(space.cardinalities):
                for choice in range(cardinality):
                    if choice == reference[d]:
                        continue
                    probe = (*reference[:d], choice, *reference[d + 1:])
                    other = self._documents(space.spec(probe, self.scale))
                    for stage in stages:
                        if other[stage] != base[stage]:
                            depends[stage].add(d)
        return {stage: tuple(sorted(dims)) for stage, dims in depends.items()}

    def _tabulate(self, stage: str, dims: tuple[int, ...]) -> StageTable:
        from nanosd_nas.search.distill import StageVariant

        largest = self.space.extremes()[1]
        documents, losses = [], []
        for combination in itertools.product(*(range(self.space.cardinalities[d])
                                               for d in dims)):
            choices = list(largest)
            for d, value in zip(dims, combination, strict=True):
                choices[d] = value
            spec = self.space.spec(choices, self.scale)
            document = self._documents(spec)[stage]
            documents.append(document)
            losses.append(self.bank.info(StageVariant(stage, document, spec)).heldout_final)
        return StageTable(stage, dims, tuple(documents), np.array(losses, dtype=float))

    def _check(self, check: int, seed: int) -> None:
        sample = np.array(self.space.sample(min(check, self.space.size), seed=seed))
        cards = self.space.cardinalities
        for choices in sample:
            own = self._documents(self.space.spec(tuple(choices), self.scale))
            for table in self.tables.values():
                row = int(table.rows(choices[None, :], cards)[0])
                if table.documents[row] != own[table.stage]:
                    raise RuntimeError(
                        f"stage {table.stage}'s variant depends on more than dimensions "
                        f"{list(table.dims)} (member {choices.tolist()} differs); this space "
                        "cannot be tabulated per stage")

    def mean_loss(self, members: np.ndarray) -> np.ndarray:
        """Mean over U-Net stages of (held-out loss + :data:`LOSS_FLOOR`), per member."""
        cards = self.space.cardinalities
        total = np.zeros(len(members))
        for table in self.tables.values():
            total += table.losses[table.rows(members, cards)] + LOSS_FLOOR
        return total / len(self.tables)

    def fidelity(self, members: np.ndarray) -> np.ndarray:
        """The surrogate fidelity (dB) of each member."""
        return -10.0 * np.log10(self.mean_loss(members))

    def describe(self) -> dict[str, dict[str, object]]:
        """Per stage: the dimensions it depends on, its variants and their loss range."""
        names = [d.name for d in self.space.dimensions]
        return {stage: {"dimensions": [names[d] for d in t.dims],
                        "variants": len(set(t.documents)),
                        "heldout_loss_range": [float(t.losses.min()), float(t.losses.max())]}
                for stage, t in self.tables.items()}
