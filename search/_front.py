"""Pareto fronts and hypervolumes of multi-objective values, on Optuna's own utilities.

Values are an ``(n, k)`` array with one direction per objective (``"minimize"`` or
``"maximize"``). Maximised objectives are negated into losses, then moocore's non-dominated
filter (``O(n log n)`` for up to three objectives) and its exact hypervolume do the work,
through moocore's public API. A front here is Pareto's, as Optuna's ``Study.best_trials`` has
it for the same values (the tests hold the two against each other; Optuna's own utilities are
private to it).

Hypervolumes are only comparable under one reference point. The service's rule is
:func:`study_reference`: a study's hypervolume history, ``bench search`` and the study report all
use it, so a study's hypervolume and the benchmark's compare. :func:`reference_point` derives one
from any reference set, for fronts that are only compared with each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import moocore
import numpy as np

DIRECTIONS = ("minimize", "maximize")
#: How far a cost's reference lies beyond its worst value over the space, as a share of it.
REFERENCE_MARGIN = 0.1


def _signs(directions: Sequence[str]) -> np.ndarray:
    """+1 for a minimised objective, -1 for a maximised one."""
    if len(directions) == 0:
        raise ValueError("need at least one objective direction")
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r} is not 'minimize' or 'maximize'")
    return np.array([1.0 if d == "minimize" else -1.0 for d in directions])


def _as_values(values: np.ndarray | Sequence[Sequence[float]],
               directions: Sequence[str]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return np.empty((0, len(directions)))
    if array.ndim != 2 or array.shape[1] != len(directions):
        raise ValueError(f"values of shape {array.shape} do not match {len(directions)} "
                         f"objectives {list(directions)}; expected (n, {len(directions)})")
    if not np.all(np.isfinite(array)):
        row = int(np.flatnonzero(~np.all(np.isfinite(array), axis=1))[0])
        raise ValueError(f"values must be finite; row {row} is {array[row].tolist()}")
    return array


def to_losses(values: np.ndarray | Sequence[Sequence[float]],
              directions: Sequence[str]) -> np.ndarray:
    """``values`` as losses (maximised objectives negated), so that lower is better in each."""
    return _as_values(values, directions) * _signs(directions)


def pareto_mask(values: np.ndarray | Sequence[Sequence[float]],
                directions: Sequence[str]) -> np.ndarray:
    """Which rows of ``values`` are on the Pareto front (dominated by no other row).

    Equal rows are treated alike: every copy of a non-dominated point is on the front (an
    equal point does not dominate), every copy of a dominated one is off it.

    Args:
        values: ``(n, k)`` objective values, finite.
        directions: ``"minimize"`` or ``"maximize"`` per objective.

    Returns:
        A boolean array of length ``n``.
    """
    losses = to_losses(values, directions)
    if len(losses) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(moocore.is_nondominated(losses, keep_weakly=True), dtype=bool)


def reference_point(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str],
                    margin: float = 0.1) -> np.ndarray:
    """A point worse than every row of ``values`` in each objective by ``margin`` times the
    objective's range (or by ``margin`` times its magnitude, at least ``margin``, where the
    range is zero), in the objectives' own directions.

    Compute it once from a reference set (for example every member of a space) and use it for
    every hypervolume that is compared: a hypervolume means nothing under another reference.
    """
    if margin <= 0:
        raise ValueError(f"margin={margin} must be positive: the reference point must be "
                         "strictly worse than every value, or extreme points add no volume")
    losses = to_losses(values, directions)
    if len(losses) == 0:
        raise ValueError("cannot derive a reference point from no values")
    worst, best = losses.max(axis=0), losses.min(axis=0)
    span = worst - best
    span = np.where(span > 0, span, np.maximum(np.abs(worst), 1.0))
    return (worst + margin * span) * _signs(directions)


def is_decibels(name: str) -> bool:
    """Whether objective ``name`` is in dB (``fidelity`` and the ``*_db`` ones)."""
    return name == "fidelity" or name.endswith("_db")


def study_reference(names: Sequence[str], directions: Sequence[str], *,
                    ranges: Mapping[str, tuple[float, float]],
                    first: Mapping[str, float] | None = None,
                    margin: float = REFERENCE_MARGIN) -> np.ndarray:
    """The hypervolume reference point of the service, per objective:

    - a maximised objective in dB: 0 dB, where the error is as strong as the signal (or, where
      its range over the space is known and reaches 0 dB, ``margin`` beyond its worst value);
    - one whose range over the space is known (``ranges``: its lowest and highest value; a
      study knows the sizes and predicted latency without evaluating a member): ``margin`` of
      its worst value beyond that worst value (10% above the largest member's cost);
    - any other: one step (its magnitude, at least 1) worse than its ``first`` value, the first
      complete trial's.

    It depends on the space, the device's predictor and the objectives, not on what a search
    happened to find: a study fixes it at its first complete trial, ``bench search`` applies
    it to the same space, and their hypervolumes compare.

    Raises:
        ValueError: an objective falls to the last case and ``first`` does not hold it.
    """
    signs = _signs(directions)
    if len(names) != len(signs):
        raise ValueError(f"{len(names)} objectives {list(names)} but {len(signs)} directions")
    reference = []
    for name, sign in zip(names, signs, strict=True):
        known = ranges.get(name)
        worst = None if known is None else (max(known) if sign > 0 else min(known))
        if sign < 0 and is_decibels(name):
            floor = 0.0 if worst is None else worst - margin * max(abs(worst), 1.0)
            reference.append(min(0.0, floor))
        elif worst is not None:
            reference.append(worst + sign * margin * (abs(worst) or 1.0))
        elif first is not None and name in first:
            reference.append(first[name] + sign * max(abs(first[name]), 1.0))
        else:
            raise ValueError(f"objective {name!r} has no range over the space and no first "
                             "value to place its reference from")
    return np.array(reference, dtype=np.float64)


def hypervolume(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str],
                reference: np.ndarray | Sequence[float]) -> float:
    """The volume dominated by ``values`` and bounded by ``reference`` (in the objectives' own
    directions; a maximised objective's reference lies below its values).

    Points not strictly better than the reference in every objective add nothing; they are
    clipped to it rather than rejected, so that one reference serves fronts that reach past it.
    """
    signs = _signs(directions)
    reference_loss = np.asarray(reference, dtype=np.float64) * signs
    if reference_loss.shape != (len(directions),) or not np.all(np.isfinite(reference_loss)):
        raise ValueError(f"reference point {list(np.asarray(reference).tolist())} must be "
                         f"{len(directions)} finite numbers")
    losses = to_losses(values, directions)
    if len(losses) == 0:
        return 0.0
    return float(moocore.hypervolume(np.minimum(losses, reference_loss), ref=reference_loss))


@dataclass(frozen=True)
class FrontUpdate:
    """The tracker's state after one trial was added.

    Attributes:
        key: the trial's key (its position in the order of reports unless given).
        feasible: whether the trial could enter the front.
        on_front: whether the trial is on the front now.
        front: keys of the trials on the front, in the order they were reported.
        hypervolume: of the front, under :attr:`FrontTracker.reference` as it was then.
        n_seen: trials reported so far, feasible or not.
        n_feasible: feasible trials reported so far.
    """

    key: int
    feasible: bool
    on_front: bool
    front: tuple[int, ...]
    hypervolume: float
    n_seen: int
    n_feasible: int


class FrontTracker:
    """The Pareto front of trials as they land, and its hypervolume after each one.

    Only feasible trials enter the front; infeasible ones are counted and reported but change
    nothing. With a fixed ``reference`` every history point is comparable with any other
    front's under that reference. Without one, the reference is derived (as
    :func:`reference_point` with ``margin``) from the feasible values seen so far, so each
    update's hypervolume is provisional; :meth:`history` recomputes every point under the
    reference as it stands, which keeps the history comparable with itself.

    Not safe for concurrent use; a runner reports trials from one thread.
    """

    def __init__(self, directions: Sequence[str], *,
                 reference: np.ndarray | Sequence[float] | None = None,
                 margin: float = 0.1) -> None:
        _signs(directions)
        self.directions = tuple(directions)
        self.margin = margin
        self._fixed = None if reference is None else np.asarray(reference, dtype=np.float64)
        if self._fixed is not None and self._fixed.shape != (len(self.directions),):
            raise ValueError(f"reference point {self._fixed.tolist()} does not have "
                             f"{len(self.directions)} objectives")
        self._keys: list[int] = []  # feasible trials' keys, in report order
        self._values: list[np.ndarray] = []  # their values
        self._steps: list[int] = []  # how many reports had been made when each one landed
        self._front: list[int] = []  # positions in _keys of the current front
        self._seen = 0
        self._history: list[float] = []

    @property
    def reference(self) -> np.ndarray | None:
        """The fixed reference point, or the one derived from the feasible values so far."""
        if self._fixed is not None:
            return self._fixed
        if not self._values:
            return None
        return reference_point(np.array(self._values), self.directions, self.margin)

    @property
    def front(self) -> list[int]:
        """Keys of the trials on the front, in report order."""
        return [self._keys[i] for i in self._front]

    @property
    def front_values(self) -> np.ndarray:
        """Values of the trials on the front, shape ``(front size, k)``."""
        if not self._front:
            return np.empty((0, len(self.directions)))
        return np.array([self._values[i] for i in self._front])

    def add(self, values: Sequence[float] | np.ndarray, *, feasible: bool = True,
            key: int | None = None) -> FrontUpdate:
        """Report one trial's objective values (finite if ``feasible``)."""
        key = self._seen if key is None else key
        self._seen += 1
        on_front = False
        if feasible:
            vector = _as_values(np.asarray(values, dtype=np.float64).reshape(1, -1),
                                self.directions)[0]
            self._keys.append(key)
            self._values.append(vector)
            self._steps.append(self._seen)
            candidates = [*self._front, len(self._values) - 1]
            mask = pareto_mask(np.array([self._values[i] for i in candidates]), self.directions)
            self._front = [i for i, keep in zip(candidates, mask, strict=True) if keep]
            on_front = bool(mask[-1])
        volume = self._volume(self.front_values, self.reference)
        self._history.append(volume)
        return FrontUpdate(key=key, feasible=feasible, on_front=on_front,
                           front=tuple(self.front), hypervolume=volume, n_seen=self._seen,
                           n_feasible=len(self._values))

    def history(self) -> list[float]:
        """The front's hypervolume after each report, all under the current reference."""
        if self._fixed is not None:
            return list(self._history)
        reference = self.reference
        history = []
        landed = 0
        for step in range(1, self._seen + 1):
            while landed < len(self._steps) and self._steps[landed] <= step:
                landed += 1
            prefix = np.array(self._values[:landed]).reshape(-1, len(self.directions))
            history.append(self._volume(prefix, reference))
        return history

    def _volume(self, values: np.ndarray, reference: np.ndarray | None) -> float:
        if reference is None or len(values) == 0:
            return 0.0
        return hypervolume(values, self.directions, reference)
