"""The objectives a study can ask for, and where each comes from.

Size objectives are counted from the spec, latency comes from the device (its predictor or a
measurement), accuracy from the study's evaluator on a Ray worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nanosd_nas.spaces import ArchSpec, Space, count

LATENCY_OBJECTIVE = "latency_ms"


def params_m(spec: ArchSpec, steps: int) -> float:
    """Parameters of the whole pipeline (U-Net and VAE), in millions."""
    return count(spec).total_params / 1e6


def macs_g(spec: ArchSpec, steps: int) -> float:
    """MACs of one generation (VAE encoder, ``steps`` U-Net evaluations, VAE decoder), in G."""
    macs = count(spec).macs
    return (macs["vae_encoder"] + steps * macs["unet"] + macs["vae_decoder"]) / 1e9


SIZE_OBJECTIVES: dict[str, Callable[[ArchSpec, int], float]] = {
    "params_m": params_m, "macs_g": macs_g,
}


def pipeline_ms(per_component: dict[str, np.ndarray], steps: int) -> np.ndarray:
    return per_component["vae_encoder"] + steps * per_component["unet"] + (
        per_component["vae_decoder"])


@dataclass(frozen=True)
class Bounds:
    """One constraint: a value must lie in ``[low, high]`` (either may be open)."""

    low: float | None
    high: float | None

    def violations(self, value: float) -> list[float]:
        """Optuna's convention: each entry <= 0 when satisfied."""
        out = []
        if self.high is not None:
            out.append(value - self.high)
        if self.low is not None:
            out.append(self.low - value)
        return out


def size_range(space: Space, scale: str, name: str, steps: int) -> tuple[float, float]:
    """The smallest and largest value of a size objective over ``space`` (its extremes)."""
    smallest, largest = (space.spec(c, scale) for c in space.extremes())
    values = (SIZE_OBJECTIVES[name](smallest, steps), SIZE_OBJECTIVES[name](largest, steps))
    return min(values), max(values)
