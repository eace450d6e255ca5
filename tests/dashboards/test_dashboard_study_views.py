"""The study's views through the API, on SQLite and on PostgreSQL, over a small study the real
runner ran: the trials table with each trial's architecture (as its Optuna trial names it),
the filtered table as CSV, parameter importances per objective; deleting a study (with its
trials, front, history and Optuna study) and queueing a failed or stopped one again, refused
with the reason where the study's status does not allow it, and never without the token."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from dashboard_support import quick_document
from fastapi.testclient import TestClient

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search import StudyRunner
from nanosd_nas.search.store import Store, StudyNotFound

RAN = "ran"
KEPT = "kept"
TOKEN = "views-token"
TRIALS = 6


@pytest.fixture
def store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Store]:
    """Two studies on ``local-cpu``: ``ran``, run to completion by the real runner (size
    objectives: seconds), and ``kept``, created and never run."""
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    with Store.open(database_url, upgrade=True) as opened:
        opened.upsert_device(DeviceRegistry().get("local-cpu"))
        opened.create_study(RAN, quick_document(RAN, trials=TRIALS), device="local-cpu")
        StudyRunner(opened, RAN).run()
        opened.create_study(KEPT, quick_document(KEPT), device="local-cpu")
        yield opened


def _client(store: Store, tmp_path: Path, token: str | None = None) -> TestClient:
    settings = Settings(database_url=store.url, api_token=token,
                        export_dir=tmp_path / "exports")
    return TestClient(create_app(settings, store=store))


def test_the_table_csv_and_importances_of_a_run_study(store, tmp_path):
    """Each row has the layout and widths its Optuna trial names, when it ran, for how long
    and on which worker; the CSV holds the filtered table in its order; the importances name
    the space's dimensions for each objective."""
    with _client(store, tmp_path) as client:
        table = client.get(f"/api/studies/{RAN}/trials", params={"limit": 100}).json()
        assert table["total"] == TRIALS
        by_number = {t.number: t for t in optuna.load_study(
            study_name=RAN, storage=store.url).get_trials()}
        for row in table["trials"]:
            attrs = by_number[row["number"]].user_attrs
            assert row["layout"] == attrs["nas_layout"]
            assert row["widths"] == " ".join(
                f"{part}:{'/'.join(map(str, widths))}"
                for part, widths in attrs["nas_widths"].items())
            assert row["worker"] and row["duration_s"] >= 0
            assert row["started_at"] <= row["finished_at"]

        bound = sorted(t["params_m"] for t in table["trials"])[TRIALS // 2]
        answer = client.get(f"/api/studies/{RAN}/trials.csv", params={
            "range": f"params_m::{bound}", "sort": "macs_g", "order": "desc"})
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        assert f'filename="{RAN}-trials.csv"' in answer.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        expected = sorted((t for t in table["trials"] if t["params_m"] <= bound),
                          key=lambda t: -t["macs_g"])
        assert [int(r["number"]) for r in rows] == [t["number"] for t in expected]
        assert list(rows[0]) == table["columns"]
        assert [r["layout"] for r in rows] == [t["layout"] for t in expected]
        bad = client.get(f"/api/studies/{RAN}/trials.csv", params={"sort": "nope"})
        assert bad.status_code == 422 and "nope" in bad.json()["detail"]

        found = client.get(f"/api/studies/{RAN}/importances").json()
        assert found["evaluator"] == "PedAnovaImportanceEvaluator"
        dimensions = set(store.list_trials(RAN)[0].params)
        assert set(found["importances"]) == {"params_m", "macs_g"}
        for shares in found["importances"].values():
            assert set(shares) == dimensions
            assert sum(shares.values()) == pytest.approx(1.0)
        assert client.get(f"/api/studies/{KEPT}/importances").json()["importances"] == {
            "params_m": {}, "macs_g": {}}


def test_delete_and_requeue_follow_the_status_and_need_the_token(store, tmp_path):
    """Without the token nothing moves; a running study is not deleted (409, stop it first)
    and a completed one not queued again (409); a stopped one is queued again; a deleted study
    leaves no trial, front, history or Optuna study behind, and the other study as it was."""
    with _client(store, tmp_path, token=TOKEN) as client:
        auth = {"authorization": f"Bearer {TOKEN}"}
        for method, path in (("DELETE", f"/api/studies/{RAN}"),
                             ("POST", f"/api/studies/{KEPT}/requeue")):
            assert client.request(method, path).status_code == 401
            assert client.request(method, path, headers={
                "authorization": "Bearer wrong"}).status_code == 401
        page = client.post(f"/studies/{RAN}/delete", data={"token": "wrong"},
                           follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].endswith("error=token")
        assert {s.name for s in store.list_studies()} == {RAN, KEPT}

        refused = client.post(f"/api/studies/{RAN}/requeue", headers=auth)
        assert refused.status_code == 409
        assert "completed" in refused.json()["detail"]
        store.set_study_status(KEPT, "running")
        busy = client.delete(f"/api/studies/{KEPT}", headers=auth)
        assert busy.status_code == 409 and "stop it first" in busy.json()["detail"]
        shown = client.post(f"/studies/{KEPT}/delete", data={"token": TOKEN})
        assert "cannot be deleted: stop it" in shown.text
        store.request_stop(KEPT)
        store.set_study_status(KEPT, "stopped")
        queued = client.post(f"/api/studies/{KEPT}/requeue", headers=auth)
        assert queued.status_code == 200 and queued.json()["status"] == "queued"
        assert store.get_study(KEPT).finished_at is None

        assert RAN in optuna.get_all_study_names(store.url)
        assert client.delete(f"/api/studies/{RAN}", headers=auth).status_code == 204
        assert client.get(f"/api/studies/{RAN}").status_code == 404
        with pytest.raises(StudyNotFound):
            store.list_trials(RAN)
        assert RAN not in optuna.get_all_study_names(store.url)
        assert [s.name for s in store.list_studies()] == [KEPT]
        assert client.delete(f"/api/studies/{RAN}", headers=auth).status_code == 404
        # The name is free again, with no trace of the deleted study's Optuna trials.
        store.create_study(RAN, quick_document(RAN, trials=2), device="local-cpu")
        assert StudyRunner(store, RAN).run().complete == 2
        assert len(optuna.load_study(study_name=RAN, storage=store.url).trials) == 2
