"""How a member's choices are presented to an Optuna sampler: the study's *encoding*.

- ``ordinal``: one integer per dimension, its choice index. A space lists each dimension's
  choices smallest first, so neighbouring indices are alike in size; but an attention choice is
  a bit mask over the stage's transformer layers (``D3`` index 3 is ``TTR``, index 4 ``RRT``),
  so for those "nearby" means nothing.
- ``categorical``: one category per dimension, no order at all.
- ``binary``: one 0/1 parameter per transformer layer of each attention dimension
  (``D3.0``, ``D3.1``, ``D3.2``; 1 keeps the layer's transformer), the other dimensions ordinal.

``bench search`` measures the three (README); :data:`DEFAULT_ENCODING` is the one a new study
gets. A study keeps the encoding its first trials were asked in (:func:`encoding_of_trials`):
Optuna refuses a parameter whose distribution changes between trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial

from nanosd_nas.search._study_sections import DEFAULT_ENCODING, ENCODINGS, EncodingName
from nanosd_nas.spaces import Space

__all__ = ["DEFAULT_ENCODING", "ENCODINGS", "Encoding", "EncodingError", "EncodingName",
           "encoding_of_trials"]


class EncodingError(ValueError):
    """An encoding that does not exist."""


class Encoding:
    """Choice vectors of ``space`` to Optuna parameters and back, as ``name`` presents them."""

    def __init__(self, space: Space, name: str) -> None:
        if name not in ENCODINGS:
            raise EncodingError(f"encoding {name!r} does not exist; choose from "
                                f"{', '.join(ENCODINGS)}")
        self.space, self.name = space, name
        self.names = [d.name for d in space.dimensions]
        #: Per dimension: the layer count its choices are bit masks of (binary only), else 0.
        self._layers = [_mask_layers(d.kind, d.choices) if name == "binary" else 0
                        for d in space.dimensions]

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter's distribution, in the order a member's dimensions have them."""
        out: dict[str, BaseDistribution] = {}
        for name, count, layers in zip(self.names, self.space.cardinalities, self._layers,
                                       strict=True):
            if layers:
                out.update({_layer(name, j): IntDistribution(0, 1) for j in range(layers)})
            elif self.name == "categorical":
                out[name] = CategoricalDistribution(list(range(count)))
            else:
                out[name] = IntDistribution(0, count - 1)
        return out

    def params(self, member: Sequence[int]) -> dict[str, int]:
        """The parameters that name ``member`` (a choice vector)."""
        out: dict[str, int] = {}
        for name, choice, layers in zip(self.names, member, self._layers, strict=True):
            if layers:
                out.update({_layer(name, j): int(choice) >> j & 1 for j in range(layers)})
            else:
                out[name] = int(choice)
        return out

    def member(self, params: Mapping[str, object]) -> tuple[int, ...]:
        """The choice vector ``params`` name (``KeyError`` for a missing parameter)."""
        vector = []
        for name, layers in zip(self.names, self._layers, strict=True):
            if layers:
                vector.append(sum(int(params[_layer(name, j)]) << j  # type: ignore[call-overload]
                                  for j in range(layers)))
            else:
                vector.append(int(params[name]))  # type: ignore[call-overload]
        return tuple(vector)


def _layer(name: str, index: int) -> str:
    return f"{name}.{index}"


def _mask_layers(kind: str, choices: Sequence[object]) -> int:
    """The layer count of an attention dimension (its choice ``i`` keeps layer ``j``'s
    transformer exactly when bit ``j`` of ``i`` is set: :class:`spaces.AttentionDimension`);
    0 for any other dimension, which stays ordinal."""
    return len(choices).bit_length() - 1 if kind == "attention" else 0


def encoding_of_trials(space: Space, trials: Sequence[FrozenTrial], chosen: str) -> Encoding:
    """The encoding ``trials`` (a study's, oldest first) were asked in, or ``chosen`` for a
    study with no parameters yet."""
    for trial in trials:
        if not trial.distributions:
            continue
        if any(_layer(d.name, 0) in trial.distributions for d in space.dimensions):
            return Encoding(space, "binary")
        if any(isinstance(d, CategoricalDistribution) for d in trial.distributions.values()):
            return Encoding(space, "categorical")
        return Encoding(space, "ordinal")
    return Encoding(space, chosen)
