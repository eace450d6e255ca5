"""The study worker: claims queued studies and runs them, and honours a stop request, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search._worker import StudyWorker, WorkerOutcome
from nanosd_nas.search.store import Store

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


def test_a_study_whose_worker_was_killed_is_taken_over_and_finished(
        store: Store, database_url: str, tmp_path: Path) -> None:
    """A worker process killed with SIGKILL mid-study leaves the study 'running'; once its
    runner has not held it for the orphan time, the next worker takes it over, fails what the
    dead one left in flight (asked again) and finishes the budget with every trial completed
    before the kill kept."""
    import os
    import signal
    import subprocess
    import sys

    store.create_study("orphan", quick_document("orphan", 60), device="local-cpu", queued=True)
    env = {**os.environ, "NANOSD_NAS_DATABASE_URL": database_url,
           "NANOSD_NAS_HOME": str(tmp_path / "home")}
    first = subprocess.Popen([sys.executable, "-m", "nanosd_nas", "worker"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(store.list_trials("orphan", state="complete")) < 5:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    kept = {t.id for t in store.list_trials("orphan", state="complete")}
    orphaned = store.get_study("orphan")
    assert orphaned.status == "running"
    assert orphaned.runner == f"queue:{os.uname().nodename}:{first.pid}"
    # Held a moment ago: not taken over yet; not held for the orphan time: taken over.
    assert StudyWorker(store, orphaned_after_s=60).run_next() is None
    time.sleep(1.5)
    [outcome] = StudyWorker(store, orphaned_after_s=1.0).serve(once=True)
    assert (outcome.study, outcome.status) == ("orphan", "completed")
    trials = store.list_trials("orphan")
    complete = [t for t in trials if t.state == "complete"]
    assert len(complete) == 60 and kept <= {t.id for t in complete}
    assert all(t.state != "running" for t in trials)


@pytest.mark.slow  # three processes and a resumed run: ~30-60 s
def test_ctrl_c_lets_the_trials_in_flight_land_and_leaves_the_study_stopped_and_resumable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT to 'study run' and SIGTERM to 'worker': each lets its trial in flight land, asks
    no more, leaves the study 'stopped' (the signal as its reason) with nothing running in
    the store or in Optuna, and exits 0; the worker prints the study's outcome line. The next
    run finishes the budget, every trial completed before the signal kept. (SQLite only: the
    stop itself is the store's, tested on both above.)"""
    import json
    import os
    import signal
    import subprocess
    import sys

    import optuna

    from nanosd_nas.search import StudyRunner

    database_url = f"sqlite:///{tmp_path / 'nas.db'}"
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    env = {**os.environ, "NANOSD_NAS_DATABASE_URL": database_url}
    store = Store.open(database_url, upgrade=True)
    store.upsert_device(DeviceRegistry().get("local-cpu"))
    budget = 40  # a few land before the signal; the rest is the resumed run's
    store.create_study("by-hand", quick_document("by-hand", budget), device="local-cpu")
    store.create_study("queued", quick_document("queued", budget), device="local-cpu",
                       queued=True)
    for name, command, sent in (("by-hand", ["study", "run", "by-hand", "--json"],
                                 signal.SIGINT),
                                ("queued", ["worker"], signal.SIGTERM)):
        process = subprocess.Popen([sys.executable, "-m", "nanosd_nas", *command], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(store.list_trials(name, state="complete")) < 3:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "three trials did not land in 120 s"
            time.sleep(0.05)
        process.send_signal(sent)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        study = store.get_study(name)
        assert (study.status, study.status_reason) == (
            "stopped", f"interrupted ({sent.name})"), stderr
        trials = store.list_trials(name)
        assert all(t.state != "running" for t in trials)
        assert 3 <= sum(t.state == "complete" for t in trials) < budget
        assert not [t for t in trials if t.state == "failed"]  # in flight: landed, not lost
        if name == "by-hand":
            assert json.loads(stdout)["stopped"] is True
        else:
            assert f"queued: stopped (interrupted (SIGTERM)), {len(trials)} trials" in stdout
        loaded = optuna.load_study(study_name=name, storage=database_url)
        assert optuna.trial.TrialState.RUNNING not in {t.state for t in loaded.trials}
    kept = {t.id for t in store.list_trials("by-hand", state="complete")}
    with store:
        assert StudyRunner(store, "by-hand").run().complete == budget
        assert store.get_study("by-hand").status == "completed"
        assert kept <= {t.id for t in store.list_trials("by-hand", state="complete")}
