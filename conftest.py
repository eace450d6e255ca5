"""Database fixtures shared by the store, runner and dashboard tests: every test that takes
``database_url`` or ``store`` runs on SQLite and on PostgreSQL.

PostgreSQL is the real server of this machine (``NANOSD_NAS_TEST_POSTGRES`` names another one by
an admin URL, ``postgresql://USER[:PASSWORD]@HOST:PORT/postgres``): each test gets a fresh
database, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

# Under pytest-xdist (``-n 2``) two workers share the machine's cores: each computes on one
# thread (torch and the CLI processes it starts read this before they first compute).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

import psycopg
import pytest
from sqlalchemy import make_url

from nanosd_nas.search.store import Store

# A test never touches the user's project home or database: an outer setting is dropped, and
# the default home (the user's cache directory) is a fresh folder per test (``_cache_dir``).
os.environ.pop("NANOSD_NAS_HOME", None)
os.environ.pop("NANOSD_NAS_DATABASE_URL", None)

# Local Ray in the test process stays on loopback. Ray reads this once, when it is imported,
# and a test may import it before the runner's ray_session sets it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Tests talk to loopback only: Ray reports no usage statistics from them.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

POSTGRES_ENV = "NANOSD_NAS_TEST_POSTGRES"
_DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")


def _reachable(admin: str) -> bool:
    try:
        psycopg.connect(admin, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def _start_local_postgres() -> None:
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        pytest.skip("PostgreSQL is not installed on this machine")
    for version in sorted(p.name for p in Path("/etc/postgresql").iterdir()):
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                       capture_output=True, check=False, timeout=60)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[tuple[str, str]]:
    """(admin connection string, prefix of this session's databases); drops them at the end."""
    admin = os.environ.get(POSTGRES_ENV, _DEFAULT_ADMIN)
    if not _reachable(admin):
        _start_local_postgres()
        for _ in range(30):
            if _reachable(admin):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"PostgreSQL at {admin} does not answer (started it, waited 15 s)")
    prefix = f"nanosd_nas_test_{uuid.uuid4().hex[:10]}"
    yield admin, prefix
    with psycopg.connect(admin, autocommit=True) as connection:
        names = connection.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                   (prefix + "%",)).fetchall()
        for (name,) in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's cache directory, where the default project home and database lie, is a fresh
    folder of each test (subprocesses inherit it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files), for the
    servers that speak TLS (``serve``, ``agent``)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


_numbers = itertools.count()


@contextlib.contextmanager
def _postgres_database(admin: str, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{next(_numbers)}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nanosd-nas.db'}"
        return
    with _postgres_database(*request.getfixturevalue("postgres_admin")) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin: tuple[str, str]) -> Iterator[str]:
    """An empty database on the PostgreSQL server only (load and fault tests)."""
    with _postgres_database(*postgres_admin) as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated store on each backend."""
    with Store.open(database_url, upgrade=True) as opened:
        yield opened


#: Test files that share a session-scoped fixture too costly to build twice: under xdist they
#: run on one worker (the seeded dashboard study is a real study per backend).
_SHARED_GROUPS = {
    "tests/dashboards/test_dashboard_api.py": "seeded-study",
    "tests/dashboards/test_dashboard_browser.py": "seeded-study",
    "tests/dashboards/test_dashboard_fuzz.py": "seeded-study",
    "tests/dashboards/test_dashboard_scale.py": "seeded-study",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``-n N --dist loadgroup``, a file's tests run on one worker (its module fixtures
    are built once), and the files of :data:`_SHARED_GROUPS` together."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(_SHARED_GROUPS.get(path, path)))


#: Fixtures whose tests talk to the PostgreSQL server: every fixture on the server depends on
#: ``postgres_admin`` (a test's fixture names include what its fixtures depend on) except those
#: that ask for it at run time: ``seed_once``, and the fixtures parametrised over backends,
#: whose PostgreSQL tests have ``postgres`` in their id.
_POSTGRES_FIXTURES = frozenset({"postgres_admin", "seed_once"})


@contextlib.contextmanager
def _postgres_server_lock(exclusive: bool) -> Iterator[None]:
    """Shared by the tests of all workers that use the server, exclusive for a test that
    restarts it. Readers pass a turnstile first, so a waiting restart is not starved."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "serial")
    folder = Path(tempfile.gettempdir())
    with (folder / f"nanosd-nas-tests-{run}.turnstile").open("a") as turnstile, \
            (folder / f"nanosd-nas-tests-{run}.postgres").open("a") as server:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(server, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(server, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Under xdist, a test marked ``restarts_postgres`` runs while no other worker's test uses
    the server (setup and teardown included: a session's seeded study is set up inside its first
    test)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return (yield)
    restarts = item.get_closest_marker("restarts_postgres") is not None
    uses = "postgres" in item.nodeid or not _POSTGRES_FIXTURES.isdisjoint(
        getattr(item, "fixturenames", ()))
    if not (restarts or uses):
        return (yield)
    with _postgres_server_lock(exclusive=restarts):
        return (yield)
