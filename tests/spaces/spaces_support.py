"""Names and helpers shared by the ``spaces`` tests (imported by the test modules)."""

from __future__ import annotations

from torch import nn

from nanosd_nas import spaces

POINTS = ("sd15", "bk-sdm-base", "bk-sdm-small", "bk-sdm-tiny")
SPACES = ("nanosd", "nanosd-scaled", "vae")
SCALES = ("full", "mini")


def n_params(*modules: nn.Module) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def members(space: spaces.Space, n: int = 6, seed: int = 0) -> list[tuple[int, ...]]:
    """``n`` seeded members of ``space`` plus its smallest and largest."""
    return [*space.extremes(), *space.sample(n, seed=seed)]
