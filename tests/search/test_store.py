"""The store's contract: every test that takes ``store`` or ``database_url`` runs on SQLite and on
the real PostgreSQL server, and must behave the same on both."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy import inspect, text, update
from sqlalchemy.exc import IntegrityError
from store_support import add_trials

from nanosd_nas import latency_models, spaces
from nanosd_nas.search.store import (
    DATABASE_URL_ENV,
    STALE_TRIAL_REASON,
    VERSION_TABLE,
    ArchitectureNotFound,
    ObjectiveValue,
    SchemaOutdated,
    Store,
    StoreError,
    StoreUnavailable,
    StudyExists,
    StudyNotFound,
    TrialNotFound,
    TrialStateError,
    UnknownDevice,
    resolve_database_url,
)
from nanosd_nas.search.store._models import StudyRow
from nanosd_nas.search.store._types import utcnow

TABLES_0001 = {"nas_devices", "nas_architectures", "nas_predictors", "nas_studies",
               "nas_trials", "nas_trial_values", "nas_measurements", "nas_front_members",
               "nas_hypervolume_history", VERSION_TABLE}
#: 0004 adds the latency store's tables.
LATENCY_TABLES = {"nas_predictor_artifacts", "nas_reference_timings"}
#: 0007 adds the values rescored for other devices (``test_store_rescored.py``).
OUR_TABLES = TABLES_0001 | LATENCY_TABLES | {"nas_rescored_values"}
SUPPORT = Path(__file__).with_name("store_support.py")


def measured(value: float) -> ObjectiveValue:
    return ObjectiveValue(value, "measured")


def complete_trial(store: Store, study: str, fidelity: float) -> int:
    trial = store.add_trial(study, params={"fidelity": fidelity})
    store.complete_trial(trial.id, {"fidelity": measured(fidelity)})
    return trial.id


# -- schema -------------------------------------------------------------------------------------
def test_upgrade_creates_the_tables_and_a_second_upgrade_does_nothing(database_url):
    with Store.open(database_url, require_schema=False) as store:
        assert store.current_revision() is None
        head = Store.head_revision()
        assert store.upgrade() == (None, head)
        assert store.upgrade() == (head, head)
        tables = set(inspect(store.engine).get_table_names())
    assert tables == OUR_TABLES  # and no "alembic_version": that name is Optuna's
    with Store.open(database_url) as reopened:
        assert reopened.current_revision() == head


def test_a_database_without_our_tables_is_refused_with_the_command_that_fixes_it(database_url):
    with pytest.raises(SchemaOutdated, match="nanosd-nas db upgrade") as caught:
        Store.open(database_url)
    assert (caught.value.current, caught.value.head) == (None, Store.head_revision())
    if database_url.startswith("sqlite:///"):  # and no empty file is left behind
        assert not Path(database_url.removeprefix("sqlite:///")).exists()


def test_a_database_from_a_newer_nanosd_nas_is_refused_not_migrated(store, database_url):
    with store.engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(SchemaOutdated, match="newer than this nanosd-nas"):
        Store.open(database_url)
    with pytest.raises(SchemaOutdated, match="revision 9999, newer than this nanosd-nas"):
        store.upgrade()


def test_optuna_shares_the_database_and_leaves_our_tables_alone(store):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store.create_study("phone-sr", {"sampler": "tpe"})
    ours = complete_trial(store, "phone-sr", 30.0)

    study = optuna.create_study(storage=store.url, study_name="phone-sr",
                                directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_int("n", 0, 3)), n_trials=3)

    head = Store.head_revision()
    assert store.upgrade() == (head, head)  # Optuna's alembic_version does not confuse ours
    assert len(optuna.load_study(study_name="phone-sr", storage=store.url).trials) == 3
    [trial] = store.list_trials("phone-sr")
    assert (trial.id, trial.value("fidelity")) == (ours, 30.0)
    with store.engine.connect() as connection:
        optuna_revision = connection.execute(text("SELECT version_num FROM alembic_version"))
        assert optuna_revision.scalar_one() != head


def test_our_upgrade_works_where_optuna_created_its_tables_first(database_url):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=database_url, study_name="first")
    with Store.open(database_url, upgrade=True) as store:
        store.create_study("first", {})
        assert [s.name for s in store.list_studies()] == ["first"]
    assert optuna.load_study(study_name="first", storage=database_url).trials == []


def _rows(store: Store, tables: set[str] = TABLES_0001) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of ours (0001's by default), in primary-key order."""
    tables = sorted(tables - {VERSION_TABLE})
    with store.engine.connect() as connection:
        return {table: [tuple(row) for row in connection.execute(
                    text(f"SELECT * FROM {table} ORDER BY 1, 2"))] for table in tables}


def _schema(store: Store) -> dict[str, Any]:
    """Columns, check constraints and foreign keys of each table of ours, by name."""
    schema = inspect(store.engine)
    return {table: ([c["name"] for c in schema.get_columns(table)],
                    sorted(str(c["name"]) for c in schema.get_check_constraints(table)),
                    sorted(str(k["name"]) for k in schema.get_foreign_keys(table)))
            for table in sorted(TABLES_0001 - {VERSION_TABLE})}


def test_migrating_a_filled_0001_database_to_head_keeps_every_row_and_widens_the_statuses(
        database_url: str) -> None:
    """A database holding a study with trials, values with provenance, a front and
    hypervolume history, taken back to 0001 and up again, keeps every row of every table
    through 0002 (SQLite rebuilds nas_studies: with foreign keys on, dropping it would cascade
    to the trials) and 0003 (the runner columns); afterwards the queue's statuses are
    accepted, an unknown status is still refused by the CHECK constraint, and the rebuilt
    table is still the trials' parent."""
    with Store.open(database_url, require_schema=False) as store:
        assert store.upgrade("0001") == (None, "0001")
        fresh = _schema(store)  # what a database made at 0001 looks like
        store.upgrade()  # filled by this build's store, then taken back to 0001
        store.upsert_device(latency_models.BUILTIN_DEVICES[0])
        predictor = store.record_predictor(device="local-cpu", space="nanosd",
                                           space_digest="0a1b2c3d4e5f", scale="mini",
                                           version="v1", held_out={"unet": {"rmspe": 0.05}})
        spec_id = store.upsert_architecture(spaces.load_point("bk-sdm-tiny"))
        store.create_study("old", {"n_trials": 4}, device="local-cpu")
        store.create_study("other", {})
        store.set_study_status("old", "running")
        kept = []
        for fidelity in (1.0, 2.0, 3.0):
            trial = store.add_trial("old", params={"E1": fidelity}, spec_id=spec_id)
            store.complete_trial(trial.id, {
                "fidelity": measured(fidelity),
                "latency_ms": ObjectiveValue(20.0 - fidelity, "predicted", predictor.id)},
                constraints={"params_m": -1.0})
            kept.append(trial.id)
            store.replace_front("old", kept, hypervolume=fidelity / 10)
        store.fail_trial(store.add_trial("old", params={"E1": 9}).id, "export failed")
        complete_trial(store, "other", 5.0)
        store.set_study_status("old", "completed")
        filled = _rows(store)
        assert store.downgrade("0001") == (Store.head_revision(), "0001")
        assert _schema(store) == fresh  # so the upgrade below is the one a 0001 database gets
        before = _rows(store)
        width = len(before["nas_studies"][0])  # 0001's columns lead, 0003's two follow
        assert width == len(filled["nas_studies"][0]) - 2
        trial_width = len(before["nas_trials"][0])  # and 0005's details follow the trials'
        assert trial_width == len(filled["nas_trials"][0]) - 1
        history_width = len(before["nas_hypervolume_history"][0])  # 0006's phase its points'
        assert history_width == len(filled["nas_hypervolume_history"][0]) - 1
        assert before == {**filled, "nas_studies": [r[:width] for r in filled["nas_studies"]],
                          "nas_trials": [r[:trial_width] for r in filled["nas_trials"]],
                          "nas_hypervolume_history": [
                              r[:history_width] for r in filled["nas_hypervolume_history"]]}
        with pytest.raises(IntegrityError, match=r"ck_nas_studies_status|CHECK constraint"), \
                store.engine.begin() as connection:  # 0001 does not know the queue
            connection.execute(text("UPDATE nas_studies SET status = 'queued' "
                                    "WHERE name = 'other'"))
        assert len(before["nas_trials"]) == 5 and len(before["nas_trial_values"]) == 7
        assert len(before["nas_front_members"]) == 3
        assert len(before["nas_hypervolume_history"]) == 3

        assert store.upgrade() == ("0001", Store.head_revision())
        after = _rows(store)
        # 0003 appends the runner columns to the studies, empty for the studies already there.
        assert all(row[width:] == (None, None) for row in after["nas_studies"])
        after["nas_studies"] = [row[:width] for row in after["nas_studies"]]
        assert all(row[trial_width:] == (None,) for row in after["nas_trials"])
        after["nas_trials"] = [row[:trial_width] for row in after["nas_trials"]]
        # Points recorded before 0006 read as the search's: nothing told them apart.
        assert all(row[history_width:] == ("search",)
                   for row in after["nas_hypervolume_history"])
        after["nas_hypervolume_history"] = [row[:history_width]
                                            for row in after["nas_hypervolume_history"]]
        assert after == before
        assert [t.id for t in store.front("old")] == kept
        [point] = store.hypervolume_history("old")[-1:]
        assert (point.n_complete, point.hypervolume, point.phase) == (3, pytest.approx(0.3),
                                                                     "search")

        store.create_study("new", {}, queued=True)
        assert store.claim_queued_study() == store.get_study("new")
        assert store.request_stop("new").status == "stopping"
        assert store.set_study_status("other", "queued").status == "queued"
        with pytest.raises(IntegrityError, match=r"ck_nas_studies_status|CHECK constraint"), \
                store.engine.begin() as connection:
            connection.execute(text("UPDATE nas_studies SET status = 'paused' "
                                    "WHERE name = 'old'"))
        assert store.get_study("old").status == "completed"
        schema = inspect(store.engine)
        assert [c["name"] for c in schema.get_check_constraints("nas_studies")] == [
            "ck_nas_studies_status"]
        assert {c["name"] for c in schema.get_unique_constraints("nas_studies")} == {
            "uq_nas_studies_name"}
        [device_key] = schema.get_foreign_keys("nas_studies")
        assert (device_key["referred_table"], device_key["options"].get("ondelete")) == (
            "nas_devices", "SET NULL")

        store.delete_study("old")  # the trials' foreign key still points at the new table
        remaining = _rows(store)
        assert [r for r in remaining["nas_trials"] if r[0] in {*kept}] == []
        assert len(remaining["nas_trials"]) == 1 and len(remaining["nas_trial_values"]) == 1
    with Store.open(database_url) as reopened:  # at head: opened without an upgrade
        assert reopened.current_revision() == Store.head_revision()


# -- studies ------------------------------------------------------------------------------------
def test_studies_are_created_found_listed_and_deleted_by_name(store):
    config = {"space": "nanosd", "objectives": [{"name": "fidelity", "direction": "maximize"}]}
    created = store.create_study("phone-sr", config)
    store.create_study("watch", {"n_trials": 10})
    assert (created.status, created.config) == ("created", config)
    assert store.get_study("phone-sr") == created
    assert [s.name for s in store.list_studies()] == ["phone-sr", "watch"]

    with pytest.raises(StudyExists, match="'phone-sr' already exists"):
        store.create_study("phone-sr", {})
    with pytest.raises(StudyNotFound, match="'nope' does not exist"):
        store.get_study("nope")
    with pytest.raises(StudyNotFound):
        store.add_trial("nope", params={})
    with pytest.raises(ValueError, match="study name"):
        store.create_study("no spaces/or slashes", {})
    with pytest.raises(ValueError, match="not a JSON document"):
        store.create_study("nan", {"seed": float("nan")})

    complete_trial(store, "watch", 1.0)
    store.delete_study("watch")
    assert [s.name for s in store.list_studies()] == ["phone-sr"]
    with pytest.raises(StudyNotFound):
        store.list_trials("watch")


def test_study_status_moves_with_its_timestamps_and_reason(store):
    store.upsert_device(latency_models.BUILTIN_DEVICES[0])
    assert store.create_study("s", {}, device="local-cpu").device == "local-cpu"
    with pytest.raises(UnknownDevice, match="ghost"):
        store.create_study("t", {}, device="ghost")

    running = store.set_study_status("s", "running")
    assert running.started_at is not None and running.finished_at is None
    failed = store.set_study_status("s", "failed", reason="device unreachable")
    assert failed.finished_at is not None and failed.finished_at >= running.started_at
    resumed = store.set_study_status("s", "running")
    assert (resumed.started_at, resumed.finished_at) == (running.started_at, None)
    assert store.get_study("s").status == "running"
    with pytest.raises(ValueError, match="'paused' does not exist"):
        store.set_study_status("s", "paused")


# -- the study queue -----------------------------------------------------------------------------
def _claim_all(url: str, barrier: threading.Barrier, claimed: list[str]) -> None:
    """A worker of its own (its own store, so its own connections): claim until none waits."""
    with Store.open(url) as own:
        barrier.wait(timeout=60)
        while (record := own.claim_queued_study()) is not None:
            claimed.append(record.name)


def test_every_queued_study_is_claimed_by_exactly_one_of_several_concurrent_workers(
        store: Store, database_url: str) -> None:
    """Workers racing for the queue (PostgreSQL: SKIP LOCKED; SQLite: one writer at a time)
    never claim a study twice and leave none behind; each claims oldest first, and a study
    that is not queued is never claimed."""
    queued = [f"q{i:02d}" for i in range(16)]
    for name in queued[:8]:
        store.create_study(name, {}, queued=True)
    store.create_study("by-hand", {})  # created, for 'study run': not the queue's
    for name in queued[8:]:
        store.create_study(name, {}, queued=True)

    workers = 4
    barrier = threading.Barrier(workers)
    claims: list[list[str]] = [[] for _ in range(workers)]
    threads = [threading.Thread(target=_claim_all, args=(database_url, barrier, mine))
               for mine in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()

    every = [name for mine in claims for name in mine]
    assert sorted(every) == queued  # each exactly once
    assert all(mine == sorted(mine) for mine in claims)  # oldest first
    assert store.claim_queued_study() is None
    statuses = {s.name: s for s in store.list_studies()}
    assert statuses["by-hand"].status == "created"
    assert all(statuses[n].status == "running" and statuses[n].started_at is not None
               and statuses[n].finished_at is None for n in queued)


def test_request_stop_stops_a_waiting_study_at_once_asks_a_running_one_and_leaves_the_rest(
        store: Store) -> None:
    """queued and created -> stopped (finished, with the reason); running -> stopping (its
    runner finishes the trials in flight); finished or already stopping studies are left as
    they are; a stopped queued study is no longer claimed; an unknown one is not found."""
    store.create_study("waiting", {}, queued=True)
    store.create_study("made", {})
    store.create_study("busy", {})
    store.create_study("done", {})
    store.create_study("broken", {})
    store.set_study_status("busy", "running")
    done = store.set_study_status("done", "completed")
    broken = store.set_study_status("broken", "failed", reason="device unreachable")

    stopped = store.request_stop("waiting", reason="no longer needed")
    assert (stopped.status, stopped.status_reason) == ("stopped", "no longer needed")
    assert stopped.finished_at is not None
    assert store.request_stop("made").status == "stopped"
    assert store.claim_queued_study() is None

    asked = store.request_stop("busy")
    assert (asked.status, asked.status_reason) == ("stopping", "stopped on request")
    assert asked.finished_at is None and asked.started_at is not None
    assert store.request_stop("busy", reason="again").status == "stopping"

    assert store.request_stop("done") == done
    assert store.request_stop("broken") == broken
    assert store.request_stop("waiting", reason="twice") == store.get_study("waiting")
    assert store.get_study("waiting").status_reason == "no longer needed"
    with pytest.raises(StudyNotFound):
        store.request_stop("nope")


# -- trials -------------------------------------------------------------------------------------
def test_trial_numbers_stay_unique_when_runners_add_trials_at_once(store):
    store.create_study("race", {})
    context = multiprocessing.get_context("spawn")
    barrier, numbers = context.Barrier(3), context.Queue()
    runners = [context.Process(target=add_trials, args=(store.url, "race", 15, barrier, numbers))
               for _ in range(2)]
    for runner in runners:
        runner.start()
    barrier.wait(timeout=60)
    mine = [store.add_trial("race", params={"i": i}).number for i in range(15)]
    taken = [numbers.get(timeout=60) for _ in runners]
    for runner in runners:
        runner.join(timeout=30)
        assert runner.exitcode == 0
    every = sorted(mine + taken[0] + taken[1])
    assert every == list(range(45))
    assert [t.number for t in store.list_trials("race")] == list(range(45))


def test_completed_and_failed_trials_persist_with_provenance(store, database_url):
    store.upsert_device(latency_models.BUILTIN_DEVICES[0])
    predictor = store.record_predictor(
        device="local-cpu", space="nanosd", space_digest="0a1b2c3d4e5f", scale="mini",
        version="2026-05-10T12:00:00Z", statistic="normalised_ms",
        held_out={"pipeline": {"within_10pct": 0.93}})
    spec_id = store.upsert_architecture(spaces.load_point("bk-sdm-tiny"))
    store.create_study("prov", {})
    done = store.add_trial("prov", params={"E1": 2}, spec_id=spec_id, worker="host:41",
                           optuna_trial_number=7)
    store.complete_trial(done.id, {
        "fidelity": ObjectiveValue(31.2, "measured"),
        "latency_ms": ObjectiveValue(21.5, "predicted", predictor.id),
        "params_m": ObjectiveValue(323.4, "computed"),
    }, constraints={"latency_ms": -18.5, "params_m": 8.4})
    broken = store.add_trial("prov", params={"E1": 3})
    store.fail_trial(broken.id, "export failed: channels not divisible by 32")

    with Store.open(database_url) as reopened:  # another engine: it was committed
        complete, failed = reopened.list_trials("prov")
    assert (complete.state, complete.spec_id, complete.worker) == ("complete", spec_id, "host:41")
    assert complete.optuna_trial_number == 7 and complete.finished_at is not None
    latency = next(v for v in complete.values if v.name == "latency_ms")
    assert (latency.value, latency.provenance, latency.predictor_id) == (21.5, "predicted",
                                                                         predictor.id)
    assert complete.value("params_m", "computed") == 323.4
    assert complete.constraints == {"latency_ms": -18.5, "params_m": 8.4}
    assert complete.feasible is False  # params over its limit
    assert (failed.state, failed.fail_reason) == ("failed",
                                                  "export failed: channels not divisible by 32")
    assert failed.values == ()

    verified = store.add_values(complete.id, {"latency_ms": ObjectiveValue(23.0, "measured")})
    assert verified.value("latency_ms") == 23.0  # measured beats predicted
    assert verified.value("latency_ms", "predicted") == 21.5
    assert [t.number for t in store.list_trials("prov", state="failed")] == [failed.number]


def test_the_worker_that_evaluated_a_trial_replaces_its_runner_when_it_lands(store):
    store.create_study("where", {})
    kept, done, failed = (store.add_trial("where", params={}, worker="runner:1")
                          for _ in range(3))
    store.complete_trial(kept.id, {"fidelity": measured(1.0)})
    store.complete_trial(done.id, {"fidelity": measured(2.0)}, worker="a/10.213.0.1:7")
    store.fail_trial(failed.id, "evaluator raised", worker="b/10.213.0.2:8")
    assert [t.worker for t in store.list_trials("where")] == [
        "runner:1", "a/10.213.0.1:7", "b/10.213.0.2:8"]
    with pytest.raises(TrialStateError):  # a trial that already landed keeps its worker
        store.fail_trial(done.id, "too late", worker="c/10.213.0.3:9")
    assert store.get_trial("where", 1).worker == "a/10.213.0.1:7"


def test_a_trial_finishes_once(store):
    store.create_study("once", {})
    trial = store.add_trial("once", params={})
    store.complete_trial(trial.id, {"fidelity": measured(1.0)})
    with pytest.raises(TrialStateError, match="trial 0 of study 'once' is complete"):
        store.complete_trial(trial.id, {"fidelity": measured(2.0)})
    with pytest.raises(TrialStateError):
        store.fail_trial(trial.id, "too late")
    assert store.get_trial("once", 0).value("fidelity") == 1.0

    stale = store.add_trial("once", params={})
    store.fail_trial(stale.id, "runner lost")
    with pytest.raises(TrialStateError, match="runner lost"):
        store.complete_trial(stale.id, {"fidelity": measured(3.0)})
    assert store.get_trial("once", 1).values == ()

    with pytest.raises(TrialNotFound):
        store.complete_trial(10**6, {"fidelity": measured(1.0)})
    with pytest.raises(TrialNotFound):
        store.get_trial("once", 99)
    for bad in ({}, {"fidelity": 1.0}):
        with pytest.raises(ValueError):
            store.complete_trial(trial.id, bad)
    with pytest.raises(ValueError, match="finite"):
        ObjectiveValue(float("nan"))
    with pytest.raises(ValueError, match="'guessed' does not exist"):
        ObjectiveValue(1.0, "guessed")
    with pytest.raises(ValueError, match="reason"):
        store.fail_trial(store.add_trial("once", params={}).id, " ")


def test_stale_running_trials_are_failed_with_a_reason_and_finished_ones_kept(store):
    store.create_study("s", {})
    complete_trial(store, "s", 5.0)
    dead = store.add_trial("s", params={}, worker="host:1")
    alive = store.add_trial("s", params={}, worker="host:2")
    time.sleep(0.3)
    assert store.heartbeat([alive.id]) == 1

    [stale] = store.fail_stale_trials("s", older_than_s=0.2)  # another runner may be alive
    assert (stale.number, stale.state, stale.fail_reason) == (dead.number, "failed",
                                                              STALE_TRIAL_REASON)
    assert store.get_trial("s", alive.number).state == "running"

    [restarted] = store.fail_stale_trials("s", reason="runner restarted")
    assert (restarted.number, restarted.fail_reason) == (alive.number, "runner restarted")
    assert store.fail_stale_trials("s") == []
    assert [t.state for t in store.list_trials("s")] == ["complete", "failed", "failed"]
    assert store.list_trials("s")[0].value("fidelity") == 5.0
    assert store.add_trial("s", params={}).number == 3  # asked again, under a new number


def test_a_runner_killed_mid_study_loses_nothing_and_leaves_no_lock(store, database_url):
    store.create_study("killed", {})
    runner = subprocess.Popen([sys.executable, str(SUPPORT), database_url, "killed"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(store.list_trials("killed", state="complete")) < 8:
            assert runner.poll() is None, runner.communicate()[1]
            assert time.monotonic() < deadline, "the runner completed too few trials"
            time.sleep(0.05)
    finally:
        runner.kill()  # SIGKILL: no cleanup, possibly inside a transaction
        runner.wait(timeout=30)
        assert runner.stderr is not None
        runner.stderr.close()

    stale = store.fail_stale_trials("killed")
    trials = store.list_trials("killed")
    assert [t.number for t in trials] == list(range(len(trials)))
    complete = [t for t in trials if t.state == "complete"]
    assert all(t.value("fidelity") == t.params["i"] for t in complete)
    assert len(stale) <= 1 and len(complete) + len(stale) == len(trials)
    started = time.monotonic()
    assert store.add_trial("killed", params={}).number == len(trials)
    assert time.monotonic() - started < 5  # no lock was left behind


# -- fronts -------------------------------------------------------------------------------------
def test_the_front_is_replaced_whole_and_hypervolume_history_kept_in_order(store):
    store.create_study("f", {})
    store.create_study("other", {})
    first = [complete_trial(store, "f", v) for v in (1.0, 2.0)]
    store.replace_front("f", first, hypervolume=0.5)
    later = [complete_trial(store, "f", v) for v in (3.0, 4.0)]
    store.replace_front("f", [first[1], *later], hypervolume=0.75)
    assert [t.number for t in store.front("f")] == [1, 2, 3]
    history = store.hypervolume_history("f")
    assert [(p.n_complete, p.hypervolume) for p in history] == [(2, 0.5), (4, 0.75)]
    assert history[0].recorded_at <= history[1].recorded_at

    running = store.add_trial("f", params={}).id
    elsewhere = complete_trial(store, "other", 9.0)
    for bad in (running, elsewhere):
        with pytest.raises(ValueError, match="not completed trials of study 'f'"):
            store.replace_front("f", [first[0], bad], hypervolume=0.9)
    assert [t.number for t in store.front("f")] == [1, 2, 3]  # a refused front changes nothing
    assert len(store.hypervolume_history("f")) == 2

    # After the front's latencies were measured on the device: a point marked as such.
    store.replace_front("f", [first[1], *later], hypervolume=0.7, phase="verify")
    assert [(p.hypervolume, p.phase) for p in store.hypervolume_history("f")] == [
        (0.5, "search"), (0.75, "search"), (0.7, "verify")]
    with pytest.raises(ValueError, match="phase 'late'"):
        store.replace_front("f", first, hypervolume=0.1, phase="late")

    store.replace_front("f", [])
    assert store.front("f") == [] and len(store.hypervolume_history("f")) == 3
    store.delete_study("f")
    assert [t.id for t in store.list_trials("other")] == [elsewhere]


# -- architectures, devices, predictors, measurements -------------------------------------------
def test_an_architecture_is_stored_once_per_spec_id(store):
    sd15 = spaces.load_point("sd15")
    mini = spaces.to_scale(sd15, "mini")
    first = store.upsert_architecture(sd15)
    assert store.upsert_architecture(spaces.ArchSpec.from_json(sd15.to_json())) == first
    assert store.upsert_architecture(mini) == mini.spec_id != first
    assert store.get_architecture(first) == sd15
    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT spec_id, spec_json FROM nas_architectures"))
        assert dict(stored.all()) == {first: sd15.to_json(), mini.spec_id: mini.to_json()}
    with pytest.raises(ArchitectureNotFound):
        store.get_architecture("0" * 16)
    store.create_study("s", {})
    with pytest.raises(StoreError, match="upsert_architecture"):
        store.add_trial("s", params={}, spec_id="0" * 16)


def test_devices_and_measurements_round_trip_without_the_agent_token(store):
    phone = latency_models.Device(name="pixel-9", kind="remote", url="http://10.0.0.2:8765",
                                  token="s3cret-token")
    stored = store.upsert_device(phone, fingerprint={"cpu": "Snapdragon"})
    updated = store.upsert_device(latency_models.Device(
        name="pixel-9", kind="remote", url="http://10.0.0.3:8765", token="s3cret-token",
        protocol=latency_models.Protocol(threads=4)))
    assert updated.id == stored.id and updated.url == "http://10.0.0.3:8765"
    assert updated.protocol["threads"] == 4 and updated.fingerprint == {"cpu": "Snapdragon"}
    assert [d.name for d in store.list_devices()] == ["pixel-9"]
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM nas_devices")).all()
        assert "s3cret-token" not in repr(rows)

    stats = latency_models.LatencyStats(9.0, 9.4, 10.0, 11.5, 60, {"cpu": "Snapdragon"},
                                        normalised_ms=9.8)
    records = [
        latency_models.MeasurementRecord(device="pixel-9", kind="model", key="0a1b2c3d4e5f6a7b",
                                         component="unet", scale="mini", stats=stats),
        latency_models.MeasurementRecord(device="pixel-9", kind="block", key="unet/d0/resnet",
                                         component="unet", scale="mini",
                                         stats=latency_models.LatencyStats(1, 1, 1, 2, 30)),
    ]
    assert store.add_measurements(records) == 2
    assert store.measurements("pixel-9") == records
    assert store.measurements(kind="block") == records[1:]
    assert store.measurements(key="0a1b2c3d4e5f6a7b") == records[:1]

    ghost = latency_models.MeasurementRecord(device="ghost", kind="block", key="k",
                                             component="unet", scale="mini", stats=stats)
    with pytest.raises(UnknownDevice, match="ghost"):
        store.add_measurements([records[0], ghost])
    assert len(store.measurements()) == 2  # all or nothing

    # The file store's records move in any number of times, each once.
    later = latency_models.MeasurementRecord(device="pixel-9", kind="model", key="0a1b2c3d4e5f6a7b",
                                             component="vae_decoder", scale="mini", stats=stats)
    assert store.import_measurements([*records, later]) == 1
    assert store.import_measurements([*records, later]) == 0
    assert store.measurements("pixel-9") == [*records, later]


def test_a_predictor_is_recorded_once_per_device_space_scale_and_version(store):
    store.upsert_device(latency_models.BUILTIN_DEVICES[0])
    key = {"device": "local-cpu", "space": "nanosd", "space_digest": "0a1b2c3d4e5f",
           "scale": "mini"}
    first = store.record_predictor(**key, version="v1", held_out={"unet": {"rmspe": 0.05}})
    again = store.record_predictor(**key, version="v1", held_out={"unet": {"rmspe": 0.04}},
                                   path="/home/predictors/local-cpu")
    newer = store.record_predictor(**key, version="v2")
    assert again.id == first.id and again.held_out == {"unet": {"rmspe": 0.04}}
    assert newer.id != first.id
    assert [(p.version, p.path) for p in store.predictors("local-cpu")] == [
        ("v1", "/home/predictors/local-cpu"), ("v2", None)]
    with pytest.raises(UnknownDevice):
        store.record_predictor(**{**key, "device": "ghost"}, version="v1")


# -- where the database is, and when it is not there ---------------------------------------------
def test_an_unreachable_server_is_reported_fast_on_one_line_without_its_password():
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable) as caught:
        Store.open("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nanosd", connect_timeout=3)
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "hunter2" not in message and "\n" not in message


def test_a_sqlite_file_in_a_missing_folder_is_unavailable(tmp_path):
    with pytest.raises(StoreUnavailable, match="unable to open database file"):
        Store.open(f"sqlite:///{tmp_path / 'missing' / 'nanosd-nas.db'}", upgrade=True)


@pytest.mark.parametrize(("url", "problem"), [("not a url", "not a valid URL"),
                                              ("mysql://root@127.0.0.1/test", "not supported")])
def test_a_malformed_or_unsupported_url_names_the_expected_forms(url, problem):
    with pytest.raises(StoreError, match=problem) as caught:
        Store.open(url)
    assert "postgresql+psycopg://" in str(caught.value)


def test_the_url_comes_from_the_argument_then_the_environment_then_the_project_home(
        monkeypatch, tmp_path):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))  # not made yet
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_database_url() == f"sqlite:///{tmp_path.resolve() / 'home' / 'nanosd-nas.db'}"
    with Store.open(upgrade=True) as store:  # the first write makes the home
        store.create_study("here", {})
    assert (tmp_path / "home" / "nanosd-nas.db").is_file()
    assert not (tmp_path / "nanosd-nas.db").exists()
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+psycopg://postgres@127.0.0.1:1/env")
    assert resolve_database_url() == "postgresql+psycopg://postgres@127.0.0.1:1/env"
    assert resolve_database_url("sqlite:///given.db") == "sqlite:///given.db"
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1/env"):
        Store.open()
    # A bare postgresql:// URL gets the installed psycopg 3 driver, not a missing psycopg2.
    with pytest.raises(StoreUnavailable):
        Store.open("postgresql://postgres@127.0.0.1:1/bare", connect_timeout=2)


# -- command line -------------------------------------------------------------------------------
def nanosd_nas(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, **(env or {})})


def test_db_upgrade_migrates_the_database_and_db_current_reads_it_from_the_environment(
        database_url):
    upgraded = nanosd_nas("db", "upgrade", "--db", database_url, "--json")
    assert upgraded.returncode == 0, upgraded.stderr
    report = json.loads(upgraded.stdout)
    assert (report["from_revision"], report["revision"]) == (None, Store.head_revision())
    assert report["changed"] is True
    current = nanosd_nas("db", "current", "--json", env={DATABASE_URL_ENV: database_url})
    assert current.returncode == 0, current.stderr
    assert json.loads(current.stdout)["up_to_date"] is True


def test_db_upgrade_on_an_unreachable_database_prints_one_line_and_exits_2():
    failed = nanosd_nas("db", "upgrade", "--db",
                        "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nanosd")
    assert failed.returncode == 2
    assert failed.stdout == ""
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith("error: cannot connect to the database at postgresql+psycopg://")
    assert "hunter2" not in line


def _last_held(store: Store, name: str, seconds_ago: float) -> None:
    """Backdate when the study's holder was last seen (no sleeping in the test)."""
    with store.engine.begin() as connection:
        connection.execute(update(StudyRow).where(StudyRow.name == name).values(
            runner_seen_at=utcnow() - timedelta(seconds=seconds_ago)))


def test_a_study_no_longer_held_by_its_worker_is_taken_over_once(store: Store) -> None:
    """With an orphan time, a worker that finds nothing queued takes over a running (or
    stopping, which it keeps) study that a worker held and that has not been held for that
    long, and holds it itself; a held one, or one run by hand, is left alone; a queued study
    still goes first."""
    for name in ("held", "orphan", "asked-to-stop"):
        store.create_study(name, {}, queued=True)
        assert store.claim_queued_study(runner=f"queue:a:{name}").runner == f"queue:a:{name}"
    store.create_study("by-hand", {})
    store.set_study_status("by-hand", "running")
    store.hold_study("by-hand", "laptop:42")
    store.request_stop("asked-to-stop")
    for name in ("orphan", "asked-to-stop", "by-hand"):
        _last_held(store, name, 600)
    _last_held(store, "held", 30)

    assert store.claim_queued_study(runner="queue:c:3") is None  # no orphan time: queue only
    taken = store.claim_queued_study(runner="queue:c:3", orphaned_after_s=300)
    assert (taken.name, taken.status, taken.runner) == ("orphan", "running", "queue:c:3")
    stopping = store.claim_queued_study(runner="queue:c:3", orphaned_after_s=300)
    assert (stopping.name, stopping.status) == ("asked-to-stop", "stopping")
    assert store.claim_queued_study(runner="queue:d:4", orphaned_after_s=300) is None
    store.create_study("new", {}, queued=True)
    _last_held(store, "held", 600)
    assert store.claim_queued_study(runner="queue:e:5", orphaned_after_s=300).name == "new"
    assert store.claim_queued_study(runner="queue:e:5", orphaned_after_s=300).name == "held"
    assert store.get_study("by-hand").runner == "laptop:42"


# -- the latency store (migration 0004) -----------------------------------------------------------
def _saved_predictor(store: Store, created: str) -> Any:
    """A real (fitted, not measured) predictor of local-cpu, saved whole through the store."""
    import numpy as np

    from nanosd_nas.latency_models._predictor import RidgeEnsemble

    space = spaces.load_space("nanosd")
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 2, size=(12, len(latency_models.FEATURES)))
    models = {c: RidgeEnsemble.fit(x, x.sum(axis=1), members=2) for c in spaces.COMPONENTS}
    fingerprint = {"cpu": "test", "runtime": "onnxruntime", "threads": 1}
    predictor = latency_models.LatencyPredictor(
        table=latency_models.BlockLatencyTable(device="local-cpu", scale="mini"), models=models,
        metadata={"device": "local-cpu", "space": space.name, "space_digest": space.digest,
                  "scale": "mini", "statistic": "p10_ms", "created": created,
                  "fingerprint": fingerprint,
                  "held_out": {"pipeline": {"within_5pct": 1.0, "within_10pct": 1.0,
                                            "spearman": 1.0, "rmspe": 0.01, "n": 3}}})
    return store.save_predictor(predictor)


def test_a_predictor_saved_whole_is_registered_where_the_dashboard_lists_devices(store):
    store.upsert_device(latency_models.BUILTIN_DEVICES[0])
    first = _saved_predictor(store, "2026-12-01T10:00:00.000+00:00")
    newer = _saved_predictor(store, "2026-12-02T10:00:00.000+00:00")
    listed = store.predictors("local-cpu")
    assert [p.id for p in listed] == [first.id, newer.id]  # each calibration kept: values cite it
    assert listed[1].held_out["pipeline"]["rmspe"] == 0.01 and listed[1].statistic == "p10_ms"
    assert [s.id for s in store.list_predictors("local-cpu")] == [newer.id]
    with pytest.raises(UnknownDevice, match="edge"):
        store.save_reference(latency_models.ReferenceTiming(
            device="edge", nominal_ms=1.0, protocol={}, fingerprint={}))


def test_migrating_to_0004_and_back_keeps_every_other_row(database_url: str) -> None:
    """At head a database holds predictors saved whole and a reference timing; taken back to
    0003 the latency store's tables go and every other row stays (the predictors' rows too,
    as 0003 knew them); upgraded again, the tables are back, empty, and the store works."""
    with Store.open(database_url, upgrade=True) as store:
        store.upsert_device(latency_models.BUILTIN_DEVICES[0])
        saved = _saved_predictor(store, "2026-12-01T10:00:00.000+00:00")
        store.save_reference(latency_models.ReferenceTiming(
            device="local-cpu", nominal_ms=0.9, protocol={"threads": 1}, fingerprint={"cpu": "x"}))
        store.record_predictor(device="local-cpu", space="nanosd", space_digest="0a1b2c3d4e5f",
                               scale="mini", version="v1", path="/home/predictors/local-cpu")
        store.create_study("s", {})
        filled = _rows(store)
        assert len(_rows(store, LATENCY_TABLES)["nas_predictor_artifacts"]) == 1

        assert store.downgrade("0003") == (Store.head_revision(), "0003")
        assert not set(inspect(store.engine).get_table_names()) & LATENCY_TABLES
        assert _rows(store) == filled
        assert store.upgrade() == ("0003", Store.head_revision())
        assert _rows(store) == filled
        assert _rows(store, LATENCY_TABLES) == {table: [] for table in sorted(LATENCY_TABLES)}
        nanosd = spaces.load_space("nanosd")
        assert store.find_predictor("local-cpu", nanosd, "mini") is None  # its artifact went
        assert store.load_reference("local-cpu") is None
        again = _saved_predictor(store, "2026-12-03T10:00:00.000+00:00")
        assert store.find_predictor("local-cpu", nanosd, "mini") == again != saved


# -- trial details (migration 0005) ---------------------------------------------------------------
def _trial_tables(store: Store) -> dict[str, Any]:
    """nas_trials as the database describes it: columns, constraints, keys and indexes."""
    schema = inspect(store.engine)
    return {"columns": [c["name"] for c in schema.get_columns("nas_trials")],
            "checks": sorted(str(c["name"]) for c in schema.get_check_constraints("nas_trials")),
            "keys": sorted((str(k["name"]), k["referred_table"], str(k["options"]))
                           for k in schema.get_foreign_keys("nas_trials")),
            "unique": sorted(str(u["name"]) for u in schema.get_unique_constraints("nas_trials")),
            "indexes": sorted(str(i["name"]) for i in schema.get_indexes("nas_trials"))}


DETAILS = {"untrained_parameters": 1234, "fidelity_ci95": [22.9, 23.8],
           "fidelity_by_t": {"0-250": 25.5, "250-500": 23.0, "500-750": 21.25, "750-1000": None},
           "unet_fidelity_db_ci95": [22.9, 23.8], "vae_psnr_db_ci95": [30.0, 31.5],
           "stage_errors": {"E1": 0.01, "M": 0.2}, "teacher": "demo", "mode": "distill"}


def test_a_completed_trials_details_round_trip_made_json_safe(store: Store) -> None:
    import numpy as np

    store.create_study("d", {})
    trial = store.add_trial("d", params={"i": 0})
    raw = {**DETAILS, "untrained_parameters": np.int64(1234),
           "fidelity_ci95": (np.float32(22.9), np.float64(23.8)),
           "stage_errors": {"E1": np.float32(0.01), "M": float("nan"), "D1": float("inf")},
           "curve": np.arange(3, dtype=np.float32), "flag": np.bool_(True),
           "opaque": object, 7: "a key that is not text"}
    completed = store.complete_trial(trial.id, {"fidelity": measured(23.4)}, details=raw)
    expected = {**DETAILS, "fidelity_ci95": [pytest.approx(22.9), 23.8],
                "stage_errors": {"E1": pytest.approx(0.01), "M": None, "D1": None},
                "curve": [0.0, 1.0, 2.0], "flag": True, "opaque": "<class 'object'>",
                "7": "a key that is not text"}
    assert completed.details == expected
    assert json.loads(json.dumps(completed.details, allow_nan=False)) == completed.details
    assert store.get_trial("d", 0).details == expected
    assert store.list_trials("d")[0].details == expected
    store.replace_front("d", [trial.id])
    assert store.front("d")[0].details == expected

    plain = store.add_trial("d", params={"i": 1})
    assert store.complete_trial(plain.id, {"fidelity": measured(1.0)}).details is None
    failed = store.add_trial("d", params={"i": 2})
    assert store.fail_trial(failed.id, "it broke").details is None
    assert store.add_trial("d", params={"i": 3}).details is None


def test_details_too_large_keep_what_fits_and_name_the_rest(store: Store) -> None:
    from nanosd_nas.search.store._records import DETAILS_LIMIT

    store.create_study("big", {})
    trial = store.add_trial("big", params={})
    huge = {"fidelity_ci95": [1.0, 2.0], "trace": list(range(DETAILS_LIMIT)), "mode": "x"}
    details = store.complete_trial(trial.id, {"fidelity": measured(1.5)}, details=huge).details
    assert details == {"fidelity_ci95": [1.0, 2.0], "mode": "x", "left_out": ["trace"]}


def test_migrating_to_0005_and_back_drops_only_the_details(database_url: str) -> None:
    """At head a trial keeps its details; taken back to 0004 the column goes (and 0006's phase
    of the history points) and every row of every table stays (SQLite rebuilds nas_trials:
    its constraints, keys and indexes come back as 0004 made them, and its values and front
    membership stay its children); upgraded again, the old trials have no details and new
    ones keep theirs."""
    with Store.open(database_url, require_schema=False) as fresh:
        fresh.upgrade("0004")
        at_0004 = _trial_tables(fresh)
    with Store.open(database_url, require_schema=False) as store:
        store.upgrade()
        store.create_study("s", {})
        kept = store.add_trial("s", params={"i": 0})
        store.complete_trial(kept.id, {"fidelity": measured(23.4)}, details=DETAILS)
        store.replace_front("s", [kept.id], hypervolume=1.0)
        store.fail_trial(store.add_trial("s", params={"i": 1}).id, "broke")
        filled = _rows(store)
        assert store.get_trial("s", 0).details == DETAILS

        assert store.downgrade("0004") == (Store.head_revision(), "0004")
        assert _trial_tables(store) == at_0004
        assert "details" not in at_0004["columns"]
        width = len(at_0004["columns"])
        points = len(filled["nas_hypervolume_history"][0]) - 1  # and 0006's phase goes too
        assert _rows(store) == {
            **filled, "nas_trials": [r[:width] for r in filled["nas_trials"]],
            "nas_hypervolume_history": [r[:points] for r in filled["nas_hypervolume_history"]]}

        assert store.upgrade() == ("0004", Store.head_revision())
        assert store.get_trial("s", 0).details is None
        assert [t.id for t in store.front("s")] == [kept.id]
        again = store.add_trial("s", params={"i": 2})
        assert store.complete_trial(again.id, {"fidelity": measured(1.0)},
                                    details=DETAILS).details == DETAILS
        store.delete_study("s")  # the values still cascade from the rebuilt table
        assert _rows(store)["nas_trial_values"] == []


def test_a_study_stored_with_an_image_size_measures_latency_at_it(store: Store) -> None:
    """``pipeline.image_size`` is the tile latency is measured at: a study stored with it
    reads back with it, and its latency scale is the study's scale at that size."""
    from nanosd_nas.search import StudyConfig

    old = {"name": "old", "space": "nanosd", "scale": "mini",
           "pipeline": {"steps": 2, "image_size": 256},
           "accuracy": {"evaluator": "surgery", "teacher": "demo", "distill": {},
                        "options": {}, "device": "cpu"}}
    store.create_study("old", old)
    record = store.get_study("old")
    assert record.config == old
    config = StudyConfig.from_document(record.config, source="study 'old'")
    assert (config.pipeline.steps, config.accuracy.device) == (2, "cpu")
    assert (config.latency_scale, config.tile_size) == ("mini@256", 256)
    assert [s.config for s in store.list_studies()] == [record.config]
