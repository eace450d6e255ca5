"""A trial's accuracy details as the API and the pages show them, on SQLite and on PostgreSQL:
the trial document gives them whole, the trials page the interval, the timestep figures and
the untrained parameters, the candidate page the fidelity with its 95% interval and by
timestep bucket; paths to the server's files are refused in a submitted study."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dashboard_support import quick_document
from fastapi.testclient import TestClient

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search.store import ObjectiveValue, Store
from nanosd_nas.spaces import load_space

STUDY = "detailed"
DETAILS = {"untrained_parameters": 1234, "fidelity_ci95": [22.9, 23.8],
           "fidelity_by_t": {"0-250": 25.5, "250-500": 23.25, "500-750": 21.0,
                             "750-1000": None},
           "unet_fidelity_db_ci95": [22.9, 23.8], "vae_psnr_db_ci95": [30.0, 31.5],
           "stage_errors": {"E1": 0.0125, "D3": 0.25}, "teacher": "demo", "mode": "distill"}


@pytest.fixture
def store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Store]:
    """A study with a trial that has details (0), one without (1) and a failed one (2)."""
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    document = {**quick_document(STUDY), "objectives": [
        {"name": "fidelity", "direction": "maximize"},
        {"name": "latency_ms", "direction": "minimize"},
        {"name": "params_m", "direction": "minimize"}]}
    with Store.open(database_url, upgrade=True) as opened:
        opened.upsert_device(DeviceRegistry().get("local-cpu"))
        opened.create_study(STUDY, document, device="local-cpu")
        space = load_space("nanosd")
        ids = []
        for number, fidelity in enumerate((23.4, 19.0, None)):
            spec_id = opened.upsert_architecture(space.spec((number,) * 6, "mini"))
            trial = opened.add_trial(STUDY, params={"n": number}, spec_id=spec_id)
            if fidelity is None:
                opened.fail_trial(trial.id, "RuntimeError: out of memory")
                continue
            opened.complete_trial(trial.id, {
                "fidelity": ObjectiveValue(fidelity), "vae_psnr_db": ObjectiveValue(30.75),
                "latency_ms": ObjectiveValue(10.0 + number, "predicted"),
                "params_m": ObjectiveValue(2.0 - number, "computed")},
                details=DETAILS if number == 0 else None)
            ids.append(trial.id)
        opened.replace_front(STUDY, ids, hypervolume=1.0)
        yield opened


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=store.url, export_dir=tmp_path / "exports")
    with TestClient(create_app(settings, store=store)) as opened:
        yield opened


def test_the_trial_document_gives_the_details_whole_or_null(client):
    first = client.get(f"/api/studies/{STUDY}/trials/0")
    assert first.status_code == 200, first.text
    assert first.json()["details"] == DETAILS
    for number in (1, 2):
        assert client.get(f"/api/studies/{STUDY}/trials/{number}").json()["details"] is None


def test_the_trials_page_shows_the_interval_timestep_figures_and_untrained_parameters(client):
    page = client.get(f"/api/studies/{STUDY}/trials", params={"sort": "fidelity",
                                                              "order": "desc"}).json()
    rows = {row["number"]: row for row in page["trials"]}
    assert [row["number"] for row in page["trials"]] == [0, 1, 2]
    assert (rows[0]["fidelity_ci95"], rows[0]["fidelity_by_t"],
            rows[0]["untrained_parameters"]) == (DETAILS["fidelity_ci95"],
                                                 DETAILS["fidelity_by_t"], 1234)
    for number in (1, 2):
        assert (rows[number]["fidelity_ci95"], rows[number]["fidelity_by_t"],
                rows[number]["untrained_parameters"]) == (None, None, None)
    assert "fidelity_ci95" not in page["columns"]  # shown, not a column to sort or filter by


def test_the_candidate_page_shows_the_interval_the_timestep_figures_and_the_untrained(client):
    page = client.get(f"/studies/{STUDY}/trials/0")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert "fidelity 23.4 dB (95% CI 22.9\u201323.8)" in text
    assert "untrained parameters: 1,234" in text
    by_t = text[text.index('id="fidelity-by-t"'):]
    by_t = by_t[:by_t.index("</table>")]
    cells = [(bucket, shown) for bucket, shown in (
        ("0-250", "25.5 dB"), ("250-500", "23.2 dB"), ("500-750", "21.0 dB"),
        ("750-1000", "\u2014"))]
    positions = []
    for bucket, shown in cells:
        row = f"<tr><td>{bucket}</td><td class=\"num\">{shown}</td></tr>"
        assert row in by_t, (row, by_t)
        positions.append(by_t.index(row))
    assert positions == sorted(positions)  # in timestep order
    values = text[text.index('id="values"'):]
    values = values[:values.index("</table>")]
    assert "95% CI 30.0\u201331.5" in values  # vae_psnr_db's interval beside its value
    errors = text[text.index('id="stage-errors"'):]
    assert "0.25" in errors and errors.index("<td>E1</td>") < errors.index("<td>D3</td>")
    assert "scored against demo (distill)" in text


def test_a_trial_without_details_has_no_accuracy_section(client):
    for number in (1, 2):
        page = client.get(f"/studies/{STUDY}/trials/{number}")
        assert page.status_code == 200, page.text
        assert 'id="fidelity-by-t"' not in page.text and "95% CI" not in page.text


def test_the_study_page_gives_the_fidelity_interval_as_a_tooltip(client):
    page = client.get(f"/studies/{STUDY}")
    assert page.status_code == 200, page.text
    assert 'title="95% CI 22.9\u201323.8"' in html.unescape(page.text)


@pytest.mark.parametrize("field", ["images", "context"])
def test_a_submitted_study_may_not_name_a_path_on_the_server(client, store, tmp_path, field):
    (tmp_path / "there").mkdir()
    document = {**quick_document("pathed"), "objectives": [{"name": "fidelity"}],
                "accuracy": {"evaluator": "surgery", field: str(tmp_path / "there")}}
    answer = client.post("/api/studies", json=document)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(f"study: accuracy.{field}: a path on this server "
                                              "cannot be given over HTTP")
    form = client.post("/studies", data={"document": yaml.safe_dump(document)})
    assert form.status_code == 422 and f"accuracy.{field}" in form.text
    assert [s.name for s in store.list_studies()] == [STUDY]


@pytest.mark.parametrize(("accuracy", "message"), [
    ({"distill": {"steps": "many"}}, "study: accuracy.distill.steps: input should be a valid "
                                     "integer"),
    ({"device": "gpu"}, "study: accuracy.device: 'gpu' is not one of auto, cpu, cuda"),
])
def test_a_submitted_studys_bad_accuracy_field_is_named(client, accuracy, message):
    document = {**quick_document("bad"), "objectives": [{"name": "fidelity"}],
                "accuracy": {"evaluator": "surgery", **accuracy}}
    answer = client.post("/api/studies", json=document)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(message), answer.text
    image_size = {**quick_document("tile"), "pipeline": {"steps": 1, "image_size": 100}}
    answer = client.post("/api/studies", json=image_size)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("study: pipeline.image_size: input should be a "
                                              "multiple of 64 (got 100)")
