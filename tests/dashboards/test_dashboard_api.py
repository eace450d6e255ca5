"""The API on a real database seeded by a real study, on SQLite and on PostgreSQL: what a
client reads (studies, trials paged and filtered, the front, devices, exports) and how it is
told about its mistakes (4xx with a reason, never a 500)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import numpy as np
import optuna
import pytest
import yaml
from dashboard_support import SEEDED, SEEDED_TRIALS, Seeded, quick_document
from fastapi.testclient import TestClient

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.search._worker import StudyWorker
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import ArchSpec

pytestmark = pytest.mark.slow  # seeding runs a real study per backend


@pytest.fixture
def client(seeded: Seeded, tmp_path) -> Iterator[TestClient]:
    settings = Settings(database_url=seeded.url, export_dir=tmp_path / "exports")
    with TestClient(create_app(settings)) as opened:
        yield opened


@pytest.fixture
def store(seeded: Seeded) -> Iterator[Store]:
    with Store.open(seeded.url) as opened:
        yield opened


def test_the_seeded_study_reads_back_with_its_progress_front_and_history(client, store):
    listed = {s["name"]: s for s in client.get("/api/studies").json()}
    shown = listed[SEEDED]
    assert shown["status"] == "completed"
    assert shown["trials"]["complete"] + shown["trials"]["failed"] == SEEDED_TRIALS
    front = client.get(f"/api/studies/{SEEDED}/front").json()
    numbers = sorted(m["number"] for m in front["front"])
    assert numbers == sorted(t.number for t in store.front(SEEDED))
    assert shown["front_size"] == len(numbers) > 0
    assert [o["name"] for o in front["objectives"]] == ["fidelity", "latency_ms", "params_m"]
    # every front member was measured on the device: measured latency beside the predicted
    for member in front["front"]:
        provenances = {v["provenance"] for v in member["values"] if v["name"] == "latency_ms"}
        assert provenances == {"predicted", "measured"}
        assert member["objectives"]["latency_ms"]["provenance"] == "measured"
    history = client.get(f"/api/studies/{SEEDED}/hypervolume").json()
    assert history and history[-1]["hypervolume"] == pytest.approx(front["hypervolume"])
    assert shown["best_hypervolume"] == pytest.approx(max(h["hypervolume"] for h in history))
    # Optuna's RDB storage shares the database: optuna-dashboard would open the study
    assert len(optuna.load_study(study_name=SEEDED, storage=store.url).trials) >= SEEDED_TRIALS


def test_trials_are_paged_sorted_and_filtered_on_the_server(client, store):
    every = store.list_trials(SEEDED)
    first = client.get(f"/api/studies/{SEEDED}/trials", params={"limit": 3}).json()
    assert first["total"] == len(every) and len(first["trials"]) == 3
    assert [t["number"] for t in first["trials"]] == [0, 1, 2]
    second = client.get(f"/api/studies/{SEEDED}/trials", params={"limit": 3, "offset": 3})
    assert [t["number"] for t in second.json()["trials"]] == [3, 4, 5]
    by_params = client.get(f"/api/studies/{SEEDED}/trials",
                           params={"sort": "params_m", "order": "desc", "limit": 100}).json()
    values = [t["params_m"] for t in by_params["trials"] if t["params_m"] is not None]
    assert values == sorted(values, reverse=True)
    feasible = client.get(f"/api/studies/{SEEDED}/trials",
                          params={"feasible": "false", "limit": 100}).json()
    assert feasible["total"] == sum(t.feasible is False for t in every)
    assert all(t["params_m"] > 6.0 for t in feasible["trials"])  # the constraint they break
    ranged = client.get(f"/api/studies/{SEEDED}/trials",
                        params=[("range", "params_m::6"), ("range", "fidelity:0:"),
                                ("limit", "100")]).json()
    expected = [t.number for t in every if t.state == "complete"
                and t.value("params_m") <= 6 and t.value("fidelity") >= 0]
    assert sorted(t["number"] for t in ranged["trials"]) == expected


def test_a_trial_shows_its_architecture_and_block_latencies(client, store):
    member = store.front(SEEDED)[0]
    detail = client.get(f"/api/studies/{SEEDED}/trials/{member.number}").json()
    assert detail["on_front"] and detail["spec_id"] == member.spec_id
    spec = store.get_architecture(member.spec_id)
    assert detail["architecture"]["total_params"] == pytest.approx(
        member.value("params_m") * 1e6)
    assert [s["stage"] for s in detail["architecture"]["stages"]][:2] == ["E1", "D1"]
    assert detail["architecture"]["latent"][1] == spec.latent_size
    blocks = detail["blocks"]
    assert blocks["device"] == "local-cpu" and len(blocks["blocks"]) > 10
    assert {b["component"] for b in blocks["blocks"]} == {"unet", "vae_encoder", "vae_decoder"}
    assert all(b["latency_ms"] is not None and b["latency_ms"] > 0 for b in blocks["blocks"])


def test_the_fronts_on_each_device_begin_with_the_stored_front(client, store):
    """The study's own device first, its stored front with the values the front page shows
    (measured latency); any device it was rescored for after it, each once."""
    document = client.get(f"/api/studies/{SEEDED}/fronts").json()
    own = document["fronts"][0]
    assert (own["device"], own["own"]) == ("local-cpu", True)
    assert [m["number"] for m in own["front"]] == [t.number for t in store.front(SEEDED)]
    assert {m["objectives"]["latency_ms"]["provenance"] for m in own["front"]} == {"measured"}
    devices = [f["device"] for f in document["fronts"]]
    assert len(devices) == len(set(devices)) and not any(f["own"] for f in document["fronts"][1:])
    assert client.get("/api/studies/no-such-study/fronts").status_code == 404


def test_the_run_moved_its_measurements_into_the_database(store):
    blocks = store.measurements("local-cpu", kind="block")
    assert len(blocks) > 10 and all(m.stats.normalised_ms for m in blocks)
    models = {m.key for m in store.measurements("local-cpu", kind="model")}
    assert {t.spec_id for t in store.front(SEEDED)} <= models  # the verified front


def test_devices_list_the_predictor_with_its_held_out_points(client):
    devices = {d["name"]: d for d in client.get("/api/devices").json()}
    predictor = devices["local-cpu"]["predictors"][0]
    assert (predictor["space"], predictor["scale"]) == ("nanosd", "mini")
    pipeline = predictor["held_out"]["pipeline"]
    points = pipeline["points"]
    assert len(points["predicted_ms"]) == len(points["measured_ms"]) == 4
    assert 0 <= pipeline["within_10pct"] <= 1
    # nanosd's VAE is the same in every member: the U-Net's figures lead, the pipeline's beside
    headline = predictor["headline"]
    assert headline["varying"] == predictor["held_out"]["varying"] == ["unet"]
    assert [c["name"] for c in headline["components"]] == ["unet"]
    assert headline["components"][0]["within_10pct"] == predictor["held_out"]["unet"][
        "within_10pct"]
    assert headline["pipeline"]["within_10pct"] == pipeline["within_10pct"]
    assert client.get("/api/devices/local-cpu").json()["name"] == "local-cpu"
    assert client.get("/api/devices/no-such-device").status_code == 404


def test_the_spec_export_downloads_the_stored_architecture(client, store):
    member = store.front(SEEDED)[0]
    answer = client.get(f"/api/studies/{SEEDED}/trials/{member.number}/export/spec")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert f'filename="{SEEDED}-trial{member.number}-spec.json"' in \
        answer.headers["content-disposition"]
    assert ArchSpec.from_dict(answer.json()) == store.get_architecture(member.spec_id)


def test_the_safetensors_export_is_a_zip_of_the_assembled_student(client, store, seeded):
    if seeded.backend != "postgresql":
        pytest.skip("the export does not depend on the backend; once is enough")
    member = store.front(SEEDED)[0]
    answer = client.get(f"/api/studies/{SEEDED}/trials/{member.number}/export/safetensors")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert "spec.json" in names and any(n.endswith(".safetensors") for n in names)
    again = client.get(f"/api/studies/{SEEDED}/trials/{member.number}/export/safetensors")
    assert again.content == answer.content  # kept from the first download


def test_a_submitted_study_is_queued_run_by_a_worker_and_done(client, seeded):
    name = f"submitted-{seeded.backend}"
    answer = client.post("/api/studies", content=yaml.safe_dump(quick_document(name)),
                         headers={"content-type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "queued"
    assert answer.headers["location"] == f"/api/studies/{name}"
    with Store.open(seeded.url) as store:
        outcomes = StudyWorker(store).serve(once=True)
    assert [(o.study, o.status) for o in outcomes] == [(name, "completed")]
    shown = client.get(f"/api/studies/{name}").json()
    assert shown["status"] == "completed" and shown["trials"]["complete"] == 4
    assert shown["config"]["n_trials"] == 4


def test_a_queued_study_can_be_stopped_before_a_worker_takes_it(client, seeded):
    name = f"stopped-{seeded.backend}"
    assert client.post("/api/studies", json=quick_document(name)).status_code == 201
    stopped = client.post(f"/api/studies/{name}/stop").json()
    assert stopped["status"] == "stopped" and stopped["status_reason"]
    with Store.open(seeded.url) as store:
        assert all(o.study != name for o in StudyWorker(store).serve(once=True))


@pytest.mark.parametrize(("body", "status", "words"), [
    (json.dumps({**quick_document("bad-sampler"), "sampler": "annealing"}), 422,
     "sampler: 'annealing' is not one of"),
    (json.dumps({**quick_document("bad-space"), "space": "/etc/hostname"}), 422,
     "not a shipped space"),
    (json.dumps({**quick_document("plugin"), "accuracy": {"evaluator": "os:system"}}), 422,
     "built-in evaluators only"),
    ("name: [unclosed", 422, "malformed YAML"),
    ("", 422, "empty"),
    ("- just\n- a list\n", 422, "must be a mapping"),
    (json.dumps(quick_document(SEEDED)), 409, "already exists"),
])
def test_a_bad_study_is_refused_with_its_reason_and_nothing_stored(client, store, body, status,
                                                                   words):
    before = [s.name for s in store.list_studies()]
    answer = client.post("/api/studies", content=body,
                         headers={"content-type": "application/yaml"})
    assert answer.status_code == status and words in answer.json()["detail"], answer.text
    assert [s.name for s in store.list_studies()] == before


@pytest.mark.parametrize(("path", "status"), [
    ("/api/studies/no-such-study", 404),
    ("/api/studies/no-such-study/front", 404),
    (f"/api/studies/{SEEDED}/trials/99999", 404),
    (f"/api/studies/{SEEDED}/trials?limit=0", 422),
    (f"/api/studies/{SEEDED}/trials?sort=nothing", 422),
    (f"/api/studies/{SEEDED}/trials?range=fidelity:low:", 422),
    (f"/api/studies/{SEEDED}/trials?range=unknown:1:2", 422),
    (f"/api/studies/{SEEDED}/trials?order=sideways", 422),
    (f"/api/studies/{SEEDED}/trials/0/export/pickle", 422),
    (f"/api/studies/{SEEDED}/trials/abc", 422),
])
def test_bad_ids_and_query_parameters_are_4xx_with_a_reason(client, path, status):
    answer = client.get(path)
    assert answer.status_code == status and answer.json()["detail"]


def test_an_oversized_body_is_refused_before_it_is_read(client):
    answer = client.post("/api/studies", content=b"x" * (300 * 1024),
                         headers={"content-type": "application/yaml"})
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"]


def test_writes_need_the_token_when_the_server_has_one(seeded, tmp_path):
    settings = Settings(database_url=seeded.url, api_token="s3cret")
    with TestClient(create_app(settings)) as client:
        name = f"token-{seeded.backend}"
        refused = client.post("/api/studies", json=quick_document(name))
        assert refused.status_code == 401
        wrong = client.post("/api/studies", json=quick_document(name),
                            headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get(f"/api/studies/{name}").status_code == 404  # nothing stored
        taken = client.post("/api/studies", json=quick_document(name),
                            headers={"authorization": "Bearer s3cret"})
        assert taken.status_code == 201
        assert client.post(f"/api/studies/{name}/stop").status_code == 401
        assert client.get("/api/studies").status_code == 200  # reads stay open


def test_the_openapi_document_lists_every_resource(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/studies", "/api/studies/{name}", "/api/studies/{name}/stop",
                 "/api/studies/{name}/front", "/api/studies/{name}/fronts",
                 "/api/studies/{name}/hypervolume",
                 "/api/studies/{name}/trials", "/api/studies/{name}/trials/{number}",
                 "/api/studies/{name}/trials/{number}/export/{fmt}", "/api/devices",
                 "/api/devices/{device}"):
        assert path in paths, path
    assert not any(p.startswith("/studies") for p in paths)  # pages stay out of the API


def test_pages_render_server_side_and_plotly_comes_from_this_server(client):
    page = client.get(f"/studies/{SEEDED}").text
    assert '<script src="/static/plotly.min.js">' in page and "Plotly.newPlot" in page
    assert "cdn" not in page.lower()
    script = client.get("/static/plotly.min.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript") and len(script.content) > 1_000_000
    missing = client.get("/studies/no-such-study")
    assert missing.status_code == 404 and "does not exist" in missing.text
    assert np.isfinite(len(page))


def test_the_study_page_draws_the_spaces_front_behind_the_trials_once_bench_search_kept_it(
        client, dashboard_home):
    try:
        _draws_the_backdrop(client, dashboard_home)
    finally:  # the session's home: leave no backdrop to the other page tests
        for path in (dashboard_home / "space-fronts").glob("*.json"):
            path.unlink()


def _draws_the_backdrop(client, dashboard_home) -> None:
    from nanosd_nas.dashboards._figures import backdrop_trace
    from nanosd_nas.search._space_front import SpaceFront, find_backdrop, write_backdrop
    from nanosd_nas.spaces import load_space

    label = "what the space allows"
    assert label not in client.get(f"/studies/{SEEDED}").text  # nothing kept yet
    # (latency ms, params M, fidelity dB): in latency/fidelity (32, 19) is dominated by (30, 20).
    values = np.array([[30, 5, 20], [35, 6, 25], [32, 5.5, 19], [40, 7, 30]], dtype=float)
    front = SpaceFront(rows=np.arange(4), values=values, low=values.min(axis=0),
                       high=values.max(axis=0), size=32768, seconds=0.1, peak_mb=1.0, chunk=4)
    objectives = (("latency_ms", "minimize"), ("params_m", "minimize"), ("fidelity", "maximize"))
    about = {"steps": 1, "predictor_created": "now", "bank": {"settings": {"steps": 150}}}
    space = load_space("nanosd")
    write_backdrop(front, space=space, scale="mini", device="other-device",
                   objectives=objectives, about=about, home=dashboard_home)
    write_backdrop(front, space=space, scale="mini", device="local-cpu", objectives=objectives,
                   about={**about, "steps": 4}, home=dashboard_home)
    assert label not in client.get(f"/studies/{SEEDED}").text  # another device, other steps
    write_backdrop(front, space=space, scale="mini", device="local-cpu", objectives=objectives,
                   about=about, home=dashboard_home)
    page = client.get(f"/studies/{SEEDED}?x=latency_ms&y=fidelity").text
    assert f"{label}: 32,768 members" in page and "150-step bank" in page
    kept = find_backdrop("nanosd", "mini", "local-cpu", home=dashboard_home)
    assert kept is not None and kept["front"] == values.tolist()
    trace = backdrop_trace(kept, "latency_ms", "fidelity",
                           {"latency_ms": "minimize", "fidelity": "maximize"})
    assert trace is not None and list(zip(trace.x, trace.y, strict=True)) == [
        (30.0, 20.0), (35.0, 25.0), (40.0, 30.0)]
    assert backdrop_trace(kept, "latency_ms", "macs_g", {}) is None  # not a cheap objective
