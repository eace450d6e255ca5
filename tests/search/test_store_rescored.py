"""Values rescored for other devices (``study rescore``), in the store: kept beside the trials'
own values, replaced device by device, never touching the study's values or front; and the
front of a study on each device. On SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect, text

from nanosd_nas.latency_models import BUILTIN_DEVICES, Device, Protocol
from nanosd_nas.search import device_fronts, fronts_document
from nanosd_nas.search.store import (
    ObjectiveValue,
    Store,
    StudyNotFound,
    UnknownDevice,
)

OTHER = "two-threads"
THIRD = "four-threads"
RESCORED = "nas_rescored_values"
#: (params_m, latency_ms on the study's device, latency_ms on OTHER): the study's front is
#: trials 0, 1, 2; on OTHER trial 1 is slower than trial 3, which takes its place.
TRIALS = [(1.0, 30.0, 31.0), (2.0, 20.0, 40.0), (3.0, 10.0, 11.0), (2.5, 25.0, 24.0)]
STUDY = {"name": "s", "space": "nanosd", "scale": "mini", "device": "local-cpu",
         "objectives": [{"name": "latency_ms", "direction": "minimize"},
                        {"name": "params_m", "direction": "minimize"}]}


def predicted(value: float, predictor: int) -> ObjectiveValue:
    return ObjectiveValue(value, "predicted", predictor)


def computed(value: float) -> ObjectiveValue:
    return ObjectiveValue(value, "computed")


def predictor_id(store: Store, device: str) -> int:
    return store.record_predictor(device=device, space="nanosd", space_digest="0a1b2c3d4e5f",
                                  scale="mini", version="v1", held_out={}).id


def finished_study(store: Store, document: dict[str, Any] = STUDY) -> tuple[list[int], int]:
    """A completed study of :data:`TRIALS` with its front stored; the trials' ids and the
    id of the predictor of the study's device."""
    store.upsert_device(BUILTIN_DEVICES[0])
    for name, threads in ((OTHER, 2), (THIRD, 4)):
        store.upsert_device(Device(name=name, kind="local", protocol=Protocol(threads=threads)))
    own = predictor_id(store, "local-cpu")
    store.create_study(document["name"], document, device="local-cpu")
    ids = []
    for params, latency, _ in TRIALS:
        trial = store.add_trial(document["name"], params={"p": params})
        store.complete_trial(trial.id, {"latency_ms": predicted(latency, own),
                                        "params_m": computed(params)})
        ids.append(trial.id)
    store.fail_trial(store.add_trial(document["name"], params={"p": 9}).id, "broke")
    store.replace_front(document["name"], ids[:3], hypervolume=1.0)
    store.set_study_status(document["name"], "completed")
    return ids, own


def test_rescored_values_stay_beside_the_trials_own_and_are_replaced_device_by_device(store):
    ids, own = finished_study(store)
    before = (store.list_trials("s"), store.front("s"), store.hypervolume_history("s"))
    other = predictor_id(store, OTHER)
    written = store.replace_rescored("s", OTHER, {
        trial: {"latency_ms": predicted(row[2], other), "photo_latency_ms": predicted(
            10 * row[2], other)} for trial, row in zip(ids, TRIALS, strict=True)})
    assert written == 2 * len(TRIALS)
    store.replace_rescored("s", THIRD, {ids[0]: {"latency_ms": ObjectiveValue(5.0)}})
    assert (store.list_trials("s"), store.front("s"), store.hypervolume_history("s")) == before

    on_other = store.rescored_values("s", OTHER)
    assert [(v.number, v.name, v.value, v.provenance, v.predictor_id) for v in on_other] == [
        (number, name, value, "predicted", other) for number, row in enumerate(TRIALS)
        for name, value in (("latency_ms", row[2]), ("photo_latency_ms", 10 * row[2]))]
    assert {v.trial_id for v in on_other} == set(ids) and {v.device for v in on_other} == {OTHER}
    assert store.rescored_devices("s") == [THIRD, OTHER]  # by name
    assert [v.device for v in store.rescored_values("s")] == [THIRD] + [OTHER] * 8

    # Rescored again (measured this time, two trials): that device's values are replaced
    # whole, the other device's stay, and so do the study's own.
    store.replace_rescored("s", OTHER, {ids[1]: {"latency_ms": ObjectiveValue(9.0)},
                                        ids[3]: {"latency_ms": ObjectiveValue(8.0)}})
    assert [(v.number, v.name, v.value, v.provenance, v.predictor_id)
            for v in store.rescored_values("s", OTHER)] == [
        (1, "latency_ms", 9.0, "measured", None), (3, "latency_ms", 8.0, "measured", None)]
    assert [(v.number, v.value) for v in store.rescored_values("s", THIRD)] == [(0, 5.0)]
    assert (store.list_trials("s"), store.front("s"), store.hypervolume_history("s")) == before
    assert store.get_trial("s", 1).value("latency_ms") == 20.0 == TRIALS[1][1]
    assert [v.predictor_id for v in store.get_trial("s", 1).values
            if v.name == "latency_ms"] == [own]

    store.replace_rescored("s", THIRD, {})  # nothing rescored: the device's values go
    assert store.rescored_devices("s") == [OTHER]


def test_what_cannot_be_rescored_is_refused_and_nothing_is_written(store):
    ids, _ = finished_study(store)
    store.create_study("t", {**STUDY, "name": "t"}, device="local-cpu")
    elsewhere = store.add_trial("t", params={})
    store.complete_trial(elsewhere.id, {"params_m": computed(1.0)})
    running = store.add_trial("s", params={"p": 0})
    value = {"latency_ms": ObjectiveValue(1.0)}
    with pytest.raises(ValueError, match=rf"\[{elsewhere.id}\] are not completed trials"):
        store.replace_rescored("s", OTHER, {ids[0]: value, elsewhere.id: value})
    with pytest.raises(ValueError, match=rf"\[{running.id}\] are not completed trials"):
        store.replace_rescored("s", OTHER, {running.id: value})
    with pytest.raises(UnknownDevice, match="no-such-device"):
        store.replace_rescored("s", "no-such-device", {ids[0]: value})
    with pytest.raises(StudyNotFound):
        store.replace_rescored("no-such-study", OTHER, {ids[0]: value})
    with pytest.raises(ValueError, match="must be an ObjectiveValue"):
        store.replace_rescored("s", OTHER, {ids[0]: {"latency_ms": 1.0}})  # type: ignore[dict-item]
    assert store.rescored_values("s") == [] and store.rescored_devices("s") == []
    with pytest.raises(StudyNotFound):
        store.rescored_values("no-such-study")


def test_a_deleted_study_takes_its_rescored_values_with_it(store):
    ids, _ = finished_study(store)
    store.replace_rescored("s", OTHER, {i: {"latency_ms": ObjectiveValue(1.0)} for i in ids})
    store.delete_study("s")
    with store.engine.connect() as connection:
        assert connection.execute(text(f"SELECT COUNT(*) FROM {RESCORED}")).scalar_one() == 0


def test_the_front_on_each_device_is_the_studys_rule_over_that_devices_values(store):
    ids, _ = finished_study(store)
    other = predictor_id(store, OTHER)
    store.replace_rescored("s", OTHER, {
        trial: {"latency_ms": predicted(row[2], other)}
        for trial, row in zip(ids, TRIALS, strict=True)})
    store.replace_rescored("s", THIRD, {ids[0]: {"latency_ms": ObjectiveValue(50.0)}})
    own, on_third, on_other = device_fronts(store, "s")  # the study's, then by name
    assert (own.device, own.own, own.scored, own.feasible) == ("local-cpu", True, 4, 4)
    assert [m.trial.id for m in own.members] == [t.id for t in store.front("s")] == ids[:3]
    assert (on_other.device, on_other.own, on_other.scored) == (OTHER, False, 4)
    assert [m.trial.number for m in on_other.members] == [0, 2, 3]  # 1 fell off, 3 came on
    assert [m.values["latency_ms"].value for m in on_other.members] == [31.0, 11.0, 24.0]
    assert {m.values["params_m"].provenance for m in on_other.members} == {"computed"}
    # A trial without values on a device is left out of its front.
    assert (on_third.device, on_third.scored, [m.trial.number for m in on_third.members]) == (
        THIRD, 1, [0])

    document = fronts_document(store.get_study("s"), [own, on_other])
    assert [f["device"] for f in document["fronts"]] == ["local-cpu", OTHER]
    assert document["objectives"] == STUDY["objectives"]
    member = document["fronts"][1]["front"][0]
    assert member["objectives"]["latency_ms"] == {
        "name": "latency_ms", "value": 31.0, "provenance": "predicted", "predictor_id": other}


def test_a_latency_bound_is_judged_again_on_each_device(store):
    """Feasibility on a device is the study's constraints on that device's values: a 26-ms
    bound that trial 0 (30 ms) breaks on the study's device is broken by trials 0 (31 ms) and 1
    (40 ms) on the other."""
    bounded = {**STUDY, "constraints": {"latency_ms": {"max": 26.0}}}
    ids, _ = finished_study(store, bounded)
    store.replace_rescored("s", OTHER, {
        trial: {"latency_ms": ObjectiveValue(row[2])}
        for trial, row in zip(ids, TRIALS, strict=True)})
    _, on_other = device_fronts(store, "s")
    # On OTHER trials 0 (31 ms) and 1 (40 ms) break the bound; 2 and 3 meet it.
    assert on_other.feasible == 2
    assert [m.trial.number for m in on_other.members] == [2, 3]


def test_a_study_without_rescoring_has_its_own_front_only(store):
    finished_study(store)
    [own] = device_fronts(store, "s")
    assert own.own and [m.trial.number for m in own.members] == [0, 1, 2]
    with pytest.raises(StudyNotFound):
        device_fronts(store, "no-such-study")


# -- migration 0007 ----------------------------------------------------------------------------
def _rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of ours but the rescored values, in primary-key order."""
    names = sorted(set(inspect(store.engine).get_table_names()) - {RESCORED}
                   - {"alembic_version", "studies", "trials", "version_info"})
    with store.engine.connect() as connection:
        return {table: [tuple(row) for row in connection.execute(
                    text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
                for table in names if table.startswith("nas_")}


def test_migrating_to_0007_and_back_keeps_every_other_row(database_url: str) -> None:
    """At head a study has values rescored for another device; taken back to 0006 the table
    goes and every other row stays; upgraded again it is back, empty, and rescoring works."""
    with Store.open(database_url, upgrade=True) as store:
        ids, _ = finished_study(store)
        store.replace_rescored("s", OTHER, {i: {"latency_ms": ObjectiveValue(1.0)} for i in ids})
        filled = _rows(store)
        assert store.downgrade("0006") == (Store.head_revision(), "0006")
        assert RESCORED not in inspect(store.engine).get_table_names()
        assert _rows(store) == filled
        assert store.upgrade() == ("0006", Store.head_revision())
        assert _rows(store) == filled
        assert store.rescored_values("s") == []
        store.replace_rescored("s", OTHER, {ids[0]: {"latency_ms": ObjectiveValue(2.0)}})
        assert [(v.number, v.value) for v in store.rescored_values("s")] == [(0, 2.0)]
        schema = inspect(store.engine)
        assert {u["name"] for u in schema.get_unique_constraints(RESCORED)} == {
            "uq_nas_rescored_values_trial_id_device_id_name"}
        assert sorted(k["referred_table"] for k in schema.get_foreign_keys(RESCORED)) == [
            "nas_devices", "nas_predictors", "nas_studies", "nas_trials"]
