"""Every latency store backend behind one fixture: the file store of a project home, the
database store on SQLite, and on the real PostgreSQL server (a fresh database each test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from nanosd_nas import latency_models
from nanosd_nas.latency_models import FileLatencyStore, LatencyStore, StoredPredictor
from nanosd_nas.search.store import Store

LATENCY_BACKENDS = ("file", "sqlite", "postgresql")
#: The devices the tests use: a database store must be told about them first.
DEVICES = (latency_models.BUILTIN_DEVICES[0],
           latency_models.Device(name="edge-cpu", kind="local",
                                 protocol=latency_models.Protocol(threads=2)))


@dataclass
class Backend:
    """A latency store under test, and what the tests need to do to it from outside."""

    name: str
    store: LatencyStore
    reopen: Callable[[], AbstractContextManager[LatencyStore]]

    def damage_model(self, stored: StoredPredictor) -> None:
        """Overwrite the stored model's bytes with bytes that are no safetensors file."""
        garbage = b"\x00not safetensors\xff" * 8
        if isinstance(self.store, Store):
            with self.store.engine.begin() as connection:
                connection.execute(text("UPDATE nas_predictor_artifacts SET model = :model "
                                        "WHERE predictor_id = :id"),
                                   {"model": garbage, "id": stored.id})
        else:
            (Path(stored.location) / "model.safetensors").write_bytes(garbage)


class _Same(AbstractContextManager[LatencyStore]):
    def __init__(self, store: LatencyStore) -> None:
        self.store = store

    def __enter__(self) -> LatencyStore:
        return self.store

    def __exit__(self, *_: object) -> None:
        return None


@pytest.fixture(params=LATENCY_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh latency store of each backend, knowing :data:`DEVICES`."""
    if request.param == "file":
        home = tmp_path / "home"
        yield Backend("file", FileLatencyStore(home=home),
                      lambda: _Same(FileLatencyStore(home=home)))
        return
    url = f"sqlite:///{tmp_path / 'nanosd-nas.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("postgres_url")
    with Store.open(url, upgrade=True) as store:
        for device in DEVICES:
            store.upsert_device(device)
        yield Backend(request.param, store, lambda: Store.open(url))


@pytest.fixture
def latency_store(backend: Backend) -> LatencyStore:
    return backend.store
