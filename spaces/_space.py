"""Search spaces: a base spec and named dimensions; a vector of choices maps to one spec.

Each dimension lists its choices smallest first (fewer transformers, fewer channels, fewer
layers), so the all-first and all-last choice vectors are a space's smallest and largest members.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from nanosd_nas.spaces._blocks import count
from nanosd_nas.spaces._errors import PresetError, SpaceError
from nanosd_nas.spaces._scale import get_scale, to_scale
from nanosd_nas.spaces._spec import ArchSpec, Layer, SpecError

Choices = tuple[int, ...]


class Dimension:
    """One axis of a space. Subclasses define the choice values and how they change a spec.

    Choice values are written at ``full`` scale; :meth:`extract` reads a spec at any scale and
    :meth:`values` gives the choices as they appear at that scale.
    """

    kind: ClassVar[str]

    def __init__(self, *, name: str, choices: list[Any]) -> None:
        if not choices:
            raise PresetError(f"dimension {name!r} has no choices")
        self.name = name
        self.choices = choices

    def apply(self, spec: ArchSpec, value: Any) -> ArchSpec:
        raise NotImplementedError

    def extract(self, spec: ArchSpec) -> Any:
        raise NotImplementedError

    def values(self, scale: str) -> list[Any]:
        return list(self.choices)

    def label(self, value: Any) -> str:
        return str(value)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "size": len(self.choices),
                "choices": [self.label(v) for v in self.choices]}


def _replace_level(spec: ArchSpec, level: int, **update: Any) -> ArchSpec:
    levels = list(spec.unet.levels)
    levels[level] = levels[level].model_copy(update=update)
    unet = spec.unet.model_copy(update={"levels": tuple(levels)})
    return spec.model_copy(update={"unet": unet})


class AttentionDimension(Dimension):
    """Each layer of one U-Net stage keeps or drops its transformer: ``2**layers`` choices.

    A choice is written ``T``/``R`` per layer (``TR``: layer 0 with transformer, layer 1 ResNet
    only). Choice ``i`` turns on layer ``j``'s transformer when bit ``j`` of ``i`` is set.
    """

    kind = "attention"

    def __init__(self, *, name: str, stage: str, level: int, layers: int, depth: int) -> None:
        if stage not in ("down", "up"):
            raise PresetError(f"dimension {name!r}: stage {stage!r} must be 'down' or 'up'")
        masks = ["".join("T" if i >> j & 1 else "R" for j in range(layers))
                 for i in range(2**layers)]
        super().__init__(name=name, choices=masks)
        self.stage, self.level, self.depth = stage, level, depth

    def apply(self, spec: ArchSpec, value: str) -> ArchSpec:
        layers = getattr(spec.unet.levels[self.level], self.stage)
        new = tuple(
            layer.model_copy(update={"transformer_depth": self.depth if bit == "T" else 0})
            for layer, bit in zip(layers, value, strict=True)
        )
        return _replace_level(spec, self.level, **{self.stage: new})

    def extract(self, spec: ArchSpec) -> str:
        layers: tuple[Layer, ...] = getattr(spec.unet.levels[self.level], self.stage)
        return "".join("T" if layer.has_transformer else "R" for layer in layers)


class WidthDimension(Dimension):
    """Channels of one U-Net level (encoder and decoder stage together)."""

    kind = "width"

    def __init__(self, *, name: str, level: int, choices: list[int]) -> None:
        super().__init__(name=name, choices=sorted(choices))
        self.level = level

    def apply(self, spec: ArchSpec, value: int) -> ArchSpec:
        return _replace_level(spec, self.level, channels=value)

    def extract(self, spec: ArchSpec) -> int:
        return spec.unet.levels[self.level].channels

    def values(self, scale: str) -> list[int]:
        s = get_scale(scale)
        return [s.channels(c, s.unet_width, s.norm_groups or 1) for c in self.choices]


class _VAEDimension(Dimension):
    field: ClassVar[str]

    def __init__(self, *, name: str, side: str, choices: list[Any]) -> None:
        if side not in ("encoder", "decoder"):
            raise PresetError(f"dimension {name!r}: side {side!r} must be 'encoder' or 'decoder'")
        super().__init__(name=name, choices=choices)
        self.side = side

    @property
    def _key(self) -> str:
        return f"{self.side}_{self.field}"

    def apply(self, spec: ArchSpec, value: Any) -> ArchSpec:
        vae = spec.vae.model_copy(update={self._key: value})
        return spec.model_copy(update={"vae": vae})

    def extract(self, spec: ArchSpec) -> Any:
        return getattr(spec.vae, self._key)


class VAEWidthDimension(_VAEDimension):
    kind, field = "vae_width", "channels"

    def __init__(self, *, name: str, side: str, choices: list[list[int]]) -> None:
        widths = sorted((tuple(c) for c in choices), key=lambda c: (sum(c), c))
        super().__init__(name=name, side=side, choices=widths)

    def values(self, scale: str) -> list[tuple[int, ...]]:
        s = get_scale(scale)
        return [tuple(s.channels(c, s.vae_width, s.norm_groups or 1) for c in widths)
                for widths in self.choices]

    def label(self, value: tuple[int, ...]) -> str:
        return "/".join(map(str, value))


class VAELayersDimension(_VAEDimension):
    kind, field = "vae_layers", "layers"

    def __init__(self, *, name: str, side: str, choices: list[int]) -> None:
        super().__init__(name=name, side=side, choices=sorted(choices))


class VAEMidAttentionDimension(_VAEDimension):
    kind, field = "vae_mid_attention", "mid_attention"

    def __init__(self, *, name: str, side: str) -> None:
        super().__init__(name=name, side=side, choices=[False, True])


DIMENSIONS: dict[str, type[Dimension]] = {
    cls.kind: cls
    for cls in (AttentionDimension, WidthDimension, VAEWidthDimension, VAELayersDimension,
                VAEMidAttentionDimension)
}


@dataclass
class Space:
    """A search space: ``spec(choices)`` and ``choices(spec)`` are inverse to each other."""

    name: str
    description: str
    base: ArchSpec
    dimensions: list[Dimension]

    @property
    def digest(self) -> str:
        """Hash of what the space generates (base spec and every dimension's choices): two
        spaces with one digest have the same members under the same choice vectors."""
        dimensions = [[d.kind, d.name, [d.label(v) for v in d.choices], d.values("mini")]
                      for d in self.dimensions]
        document = {"base": self.base.to_dict(), "dimensions": dimensions}
        return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()
                              ).hexdigest()[:12]

    @property
    def size(self) -> int:
        return math.prod(len(d.choices) for d in self.dimensions)

    @property
    def cardinalities(self) -> list[int]:
        return [len(d.choices) for d in self.dimensions]

    def spec(self, choices: Sequence[int], scale: str = "full") -> ArchSpec:
        """The spec of a choice vector (one index per dimension) at ``scale``."""
        self._check_choices(choices)
        spec = self.base
        for dimension, index in zip(self.dimensions, choices, strict=True):
            spec = dimension.apply(spec, dimension.choices[index])
        return to_scale(ArchSpec.from_dict(spec.to_dict()), scale)

    def choices(self, spec: ArchSpec, scale: str = "full") -> Choices:
        """The choice vector of ``spec``; :class:`SpecError` if ``spec`` is not in this space."""
        vector = []
        for dimension in self.dimensions:
            value = dimension.extract(spec) if self._has_shape(spec) else None
            values = dimension.values(scale)
            if value not in values:
                raise SpecError("spec", spec.spec_id,
                                f"not in space {self.name!r} at scale {scale!r} "
                                f"(dimension {dimension.name} has no choice {value!r})")
            vector.append(values.index(value))
        choices = tuple(vector)
        if self.spec(choices, scale) != spec:
            raise SpecError("spec", spec.spec_id,
                            f"not in space {self.name!r} at scale {scale!r}: it differs from "
                            f"the space's spec of choices {list(choices)} outside the dimensions")
        return choices

    def _has_shape(self, spec: ArchSpec) -> bool:
        base = self.base.unet.levels
        levels = spec.unet.levels
        if len(levels) != len(base):
            return False
        return all(len(a.down) == len(b.down) and len(a.up) == len(b.up)
                   for a, b in zip(levels, base, strict=True))

    def _check_choices(self, choices: Sequence[int]) -> None:
        if len(choices) != len(self.dimensions):
            raise SpaceError(
                f"space {self.name!r} has {len(self.dimensions)} dimensions, got "
                f"{len(choices)} choices: {list(choices)}"
            )
        for dimension, index in zip(self.dimensions, choices, strict=True):
            if not 0 <= index < len(dimension.choices):
                raise SpaceError(
                    f"choice {index} of dimension {dimension.name} is out of range "
                    f"0..{len(dimension.choices) - 1}"
                )

    def enumerate(self) -> Iterator[Choices]:
        """Every choice vector, in lexicographic order."""
        return itertools.product(*(range(n) for n in self.cardinalities))

    def sample(self, n: int, *, seed: int = 0, unique: bool = True) -> list[Choices]:
        """``n`` seeded random choice vectors; distinct unless ``unique`` is false."""
        if unique and n > self.size:
            raise SpaceError(f"cannot draw {n} distinct members from a space of {self.size}")
        rng = random.Random(seed)
        drawn: list[Choices] = []
        seen: set[Choices] = set()
        while len(drawn) < n:
            vector = tuple(rng.randrange(c) for c in self.cardinalities)
            if unique and vector in seen:
                continue
            seen.add(vector)
            drawn.append(vector)
        return drawn

    def extremes(self) -> tuple[Choices, Choices]:
        """The smallest and largest members (choices are ordered smallest first)."""
        return tuple(0 for _ in self.dimensions), tuple(n - 1 for n in self.cardinalities)

    def describe(self, scale: str = "full") -> dict[str, Any]:
        """Size, dimensions and the parameter/MAC range of the space at ``scale``."""
        smallest, largest = (count(self.spec(c, scale)) for c in self.extremes())
        return {
            "name": self.name,
            "description": self.description,
            "scale": scale,
            "size": self.size,
            "dimensions": [d.describe() for d in self.dimensions],
            "params_range": {
                component: [smallest.params[component], largest.params[component]]
                for component in smallest.params
            },
            "total_params_range": [smallest.total_params, largest.total_params],
            "macs_range": {
                component: [smallest.macs[component], largest.macs[component]]
                for component in smallest.macs
            },
        }
