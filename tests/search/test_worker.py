"""The study worker: claims queued studies and runs them, and honours a stop request, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from latency_models import DeviceRegistry
from search._worker import StudyWorker, WorkerOutcome
from search.store import Store

BUDGET = 200


def quick_document(name: str, trials: int) -> dict:
    """Size objectives only: trials land one after another, no Ray workers, no measurement."""
    return {"name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
            "objectives": [{"name": "params_m", "direction": "minimize"},
                           {"name": "macs_g", "direction": "minimize"}],
            "n_trials": trials, "sampler": "random", "seed": 1}


@pytest.fixture
def store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    with Store.open(database_url, upgrade=True) as opened:
        opened.upsert_device(DeviceRegistry().get("local-cpu"))
        yield opened


def test_a_running_study_asked_to_stop_asks_no_more_trials_and_ends_stopped(
        store: Store) -> None:
    """A stop requested while a worker runs a study: the runner lets the trial in flight land
    and asks at most one more (one it was starting as the request came), and the study ends
    'stopped' (with the reason) well short of its budget, no trial left running."""
    store.create_study("long", quick_document("long", BUDGET), device="local-cpu", queued=True)
    outcomes: list[WorkerOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.extend(StudyWorker(store).serve(once=True)), daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while len(store.list_trials("long", state="complete")) < 3:
        assert worker.is_alive(), "the worker ended before three trials landed"
        assert time.monotonic() < deadline, "three trials did not land in 120 s"
        time.sleep(0.05)
    asked = store.request_stop("long", reason="enough")
    asked_with = len(store.list_trials("long"))  # the one in flight included
    assert asked.status == "stopping"
    worker.join(timeout=120)
    assert not worker.is_alive(), "the worker did not stop"

    study = store.get_study("long")
    assert (study.status, study.status_reason) == ("stopped", "enough")
    assert study.finished_at is not None
    assert [(o.study, o.status) for o in outcomes] == [("long", "stopped")]
    trials = store.list_trials("long")
    complete = [t for t in trials if t.state == "complete"]
    assert 3 <= len(complete) < BUDGET
    assert all(t.state != "running" for t in trials)
    assert len(trials) <= asked_with + 1  # at most one asked while the request arrived
