"""A real database seeded by a small real study, on each backend, shared by the dashboard's
API, fuzz and browser tests; and a real server (uvicorn) on a loopback port.

The seeded study runs the real runner: the ``local-cpu`` device calibrated with a tiny plan,
fidelity from the surgery-only evaluator on the demo teacher (Ray workers), latency predicted
and the front verified by measuring it, a parameter constraint that some trials break.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from dashboard_support import Seeded, seed
from sqlalchemy import make_url


@pytest.fixture(scope="session")
def dashboard_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One project home for the session (device predictor, block bank, exports): the runner
    and the server find the same files, and the second backend reuses the first's work."""
    home = tmp_path_factory.mktemp("dashboard-home")
    before = os.environ.get("NANOSD_NAS_HOME")
    os.environ["NANOSD_NAS_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("NANOSD_NAS_HOME", None)
    else:
        os.environ["NANOSD_NAS_HOME"] = before


_numbers = itertools.count()


def _database(backend: str, tmp_path_factory: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'nanosd-nas.db'}"
    admin, prefix = request.getfixturevalue("postgres_admin")
    name = f"{prefix}_dash_{next(_numbers)}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def seed_once(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              dashboard_home: Path) -> Callable[[str], Seeded]:
    """The seeded database of a backend, seeded on first use and then shared."""
    cache: dict[str, Seeded] = {}

    def get(backend: str) -> Seeded:
        if backend not in cache:
            url = _database(backend, tmp_path_factory, request)
            seed(url)
            cache[backend] = Seeded(url=url, backend=backend, home=dashboard_home)
        return cache[backend]

    return get


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, seed_once: Callable[[str], Seeded]) -> Seeded:
    """The seeded study on each backend."""
    return seed_once(request.param)


@pytest.fixture(scope="session")
def seeded_postgres(seed_once: Callable[[str], Seeded]) -> Seeded:
    """The seeded study on PostgreSQL, the production store (browser tests)."""
    return seed_once("postgresql")


