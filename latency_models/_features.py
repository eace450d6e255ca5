"""Predictor features of a spec, and the same features for a whole space at once.

A component's features are sums over its blocks: the block latency table's figure (in total and
per block kind), block counts per kind, parameters and MACs; and one derived from them, the block
sum squared, which lets the fit bend (an INT8 model's whole time does not grow in proportion to
its blocks' sum across a family of widths). Because the others are sums, a space's
features can be gathered per *slot* (a block path such as ``down_blocks.0.attentions.1``):
each slot's block depends on a few dimensions only, so the features of every slot are tabulated
once over those dimensions' choices, and a batch of choice vectors is a gather and a sum.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from nanosd_nas.latency_models._records import LatencyInputError
from nanosd_nas.spaces import COMPONENTS, Block, Choices, Space, decompose

#: Block kinds with a feature column each (latency sum and count).
BLOCK_KINDS: tuple[str, ...] = (
    "resnet", "transformer", "attention", "downsample", "upsample", "conv_in", "conv_out",
    "time_embedding", "quant_conv",
)
#: Spatial sides with a latency-sum column each (a block counts in the nearest power of two).
RESOLUTIONS: tuple[int, ...] = tuple(2**i for i in range(10))
FEATURES: tuple[str, ...] = (
    "block_sum",
    *(f"latency_{kind}" for kind in BLOCK_KINDS),
    *(f"count_{kind}" for kind in BLOCK_KINDS),
    *(f"latency_at_{side}px" for side in RESOLUTIONS),
    "params_m",
    "macs_g",
    "block_sum_squared",
)
_RESOLUTION_COLUMN = FEATURES.index(f"latency_at_{RESOLUTIONS[0]}px")
BLOCK_SUM, PARAMS, MACS = 0, FEATURES.index("params_m"), FEATURES.index("macs_g")
#: The one column that is not a sum over blocks: it is derived once the sums are gathered.
BLOCK_SUM_SQUARED = FEATURES.index("block_sum_squared")
#: The column sets a predictor's fit chooses between by cross-validation: every summed column
#: (a linear correction of the block table), or the block sum bent by its square. Where whole
#: models depart from their blocks' sum along a curve and timings are noisy (INT8 on a shared
#: host), the second holds better and the first fits the noise. The square is never mixed
#: with the sums: a predictor transferred to a device whose blocks are several times slower
#: would carry a bend learned at another scale into every column.
PREDICTOR_COLUMNS: tuple[tuple[int, ...], ...] = (
    tuple(range(BLOCK_SUM_SQUARED)), (BLOCK_SUM, BLOCK_SUM_SQUARED))

BlockLatency = Callable[[Block], float]


def block_features(block: Block, latency: BlockLatency) -> np.ndarray:
    """The feature vector one block contributes to its component (the derived column is
    left at zero: see :func:`with_derived`)."""
    vector = np.zeros(len(FEATURES))
    ms = latency(block)
    kind = BLOCK_KINDS.index(block.kind) if block.kind in BLOCK_KINDS else None
    vector[BLOCK_SUM] = ms
    if kind is not None:
        vector[1 + kind] = ms
        vector[1 + len(BLOCK_KINDS) + kind] = 1.0
    side = int(np.clip(round(np.log2(max(block.resolution, 1))), 0, len(RESOLUTIONS) - 1))
    vector[_RESOLUTION_COLUMN + side] = ms
    vector[PARAMS] = block.params / 1e6
    vector[MACS] = block.macs / 1e9
    return vector


def with_derived(summed: np.ndarray) -> np.ndarray:
    """``summed`` (one row or a batch of rows of summed features) with its derived column
    filled in, in place."""
    summed[..., BLOCK_SUM_SQUARED] = summed[..., BLOCK_SUM] ** 2
    return summed


def spec_features(blocks: Iterable[Block], latency: BlockLatency) -> dict[str, np.ndarray]:
    """Features per component of one spec (given as its blocks)."""
    features = {component: np.zeros(len(FEATURES)) for component in COMPONENTS}
    for block in blocks:
        features[block.component] += block_features(block, latency)
    return {component: with_derived(row) for component, row in features.items()}


@dataclass
class _SlotGroup:
    """Slots that depend on the same dimensions, tabulated over those dimensions' choices."""

    dims: tuple[int, ...]
    strides: np.ndarray  # to turn the dims' choices into a row of ``table``
    table: dict[str, np.ndarray]  # component -> (combinations, features)


class SpaceFeatures:
    """Vectorised features of every member of a space at one scale.

    Built from the space alone (which blocks each slot holds for each choice); the block latency
    table enters through ``latency``. :meth:`verify` compares the gathered features with the
    per-spec ones on a random sample, so a space whose slots interact in ways the probing did
    not see cannot go unnoticed.
    """

    def __init__(self, space: Space, scale: str, latency: BlockLatency, *, probes: int = 6,
                 seed: int = 0) -> None:
        self.space, self.scale, self.latency = space, scale, latency
        self._blocks_of: dict[Choices, dict[str, Block]] = {}
        dependencies = self._probe(probes, seed)
        self.groups = [self._tabulate(dims, slots) for dims, slots in dependencies.items()]

    def _slots(self, choices: Choices) -> dict[str, Block]:
        if choices not in self._blocks_of:
            blocks = decompose(self.space.spec(choices, self.scale))
            self._blocks_of[choices] = {f"{b.component}:{b.path}": b for b in blocks}
        return self._blocks_of[choices]

    def _probe(self, probes: int, seed: int) -> dict[tuple[int, ...], list[str]]:
        """Which dimensions change each slot, seen from the extremes and random members."""
        references = [*self.space.extremes(), *self.space.sample(
            min(probes, self.space.size), seed=seed)]
        depends: dict[str, set[int]] = {}
        for reference in references:
            base = self._slots(reference)
            for d, cardinality in enumerate(self.space.cardinalities):
                for choice in range(cardinality):
                    if choice == reference[d]:
                        continue
                    other = self._slots((*reference[:d], choice, *reference[d + 1:]))
                    for slot in base.keys() | other.keys():
                        depends.setdefault(slot, set())
                        if base.get(slot) != other.get(slot):
                            depends[slot].add(d)
        grouped: dict[tuple[int, ...], list[str]] = {}
        for slot, dims in depends.items():
            grouped.setdefault(tuple(sorted(dims)), []).append(slot)
        return grouped

    def _tabulate(self, dims: tuple[int, ...], slots: list[str]) -> _SlotGroup:
        cards = [self.space.cardinalities[d] for d in dims]
        combos = list(itertools.product(*(range(c) for c in cards)))
        table = {c: np.zeros((len(combos), len(FEATURES))) for c in COMPONENTS}
        reference = list(self.space.extremes()[1])
        for row, combo in enumerate(combos):
            choices = list(reference)
            for d, value in zip(dims, combo, strict=True):
                choices[d] = value
            present = self._slots(tuple(choices))
            for slot in slots:
                block = present.get(slot)
                if block is not None:
                    table[block.component][row] += block_features(block, self.latency)
        strides = np.array([int(np.prod(cards[i + 1:])) for i in range(len(cards))], dtype=np.int64)
        return _SlotGroup(dims=dims, strides=strides, table=table)

    def features(self, choices: np.ndarray) -> dict[str, np.ndarray]:
        """Features per component of a batch of choice vectors, shape ``(n, len(FEATURES))``."""
        matrix = np.asarray(choices, dtype=np.int64).reshape(-1, len(self.space.dimensions))
        out = {c: np.zeros((len(matrix), len(FEATURES))) for c in COMPONENTS}
        for group in self.groups:
            rows = matrix[:, list(group.dims)] @ group.strides if group.dims else \
                np.zeros(len(matrix), dtype=np.int64)
            for component in COMPONENTS:
                out[component] += group.table[component][rows]
        return {component: with_derived(summed) for component, summed in out.items()}

    def verify(self, n: int = 64, seed: int = 1) -> None:
        """Raise ``RuntimeError`` if gathered and per-spec features differ on ``n`` members."""
        sample = self.space.sample(min(n, self.space.size), seed=seed)
        gathered = self.features(np.array(sample))
        for i, choices in enumerate(sample):
            direct = spec_features(decompose(self.space.spec(choices, self.scale)), self.latency)
            for component in COMPONENTS:
                if not np.allclose(gathered[component][i], direct[component], rtol=1e-9,
                                   atol=1e-9):
                    raise RuntimeError(
                        f"space {self.space.name!r}: the slot features of {list(choices)} "
                        f"({component}) differ from the spec's own; its dimensions interact in a "
                        "way the probing did not see"
                    )

    def all_blocks(self) -> dict[str, tuple[Choices, Block]]:
        """Every distinct block of the space seen while tabulating, with a member holding it."""
        found: dict[str, tuple[Choices, Block]] = {}
        for choices, slots in self._blocks_of.items():
            for block in slots.values():
                found.setdefault(block.key, (choices, block))
        return found


def sample_members(space: Space, n: int, *, seed: int, exclude: Iterable[Choices] = ()) -> list[
        Choices]:
    """``n`` distinct seeded members of ``space`` not in ``exclude``."""
    excluded = set(exclude)
    if n > space.size - len(excluded):
        raise LatencyInputError(f"space {space.name!r} has fewer than {n} members left to draw")
    rng = random.Random(seed)
    drawn: list[Choices] = []
    while len(drawn) < n:
        vector = tuple(rng.randrange(c) for c in space.cardinalities)
        if vector not in excluded:
            excluded.add(vector)
            drawn.append(vector)
    return drawn
