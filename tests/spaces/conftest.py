"""Fixtures of the ``spaces`` tests: the shipped points and spaces, full and mini."""

from __future__ import annotations

import pytest
from spaces_support import SPACES

from nanosd_nas import spaces


@pytest.fixture(scope="session")
def sd15() -> spaces.ArchSpec:
    return spaces.load_point("sd15")


@pytest.fixture(scope="session")
def sd15_mini(sd15: spaces.ArchSpec) -> spaces.ArchSpec:
    return spaces.to_scale(sd15, "mini")


@pytest.fixture(scope="session")
def nanosd() -> spaces.Space:
    return spaces.load_space("nanosd")


@pytest.fixture(scope="session")
def shipped_spaces() -> dict[str, spaces.Space]:
    return {name: spaces.load_space(name) for name in SPACES}
