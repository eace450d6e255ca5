"""The candidate page shows the sample grid that ``accuracy sample`` left in the project home
(``samples/SPEC_ID/grid.png``), and nothing where there is none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_support import quick_document
from fastapi.testclient import TestClient
from PIL import Image

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search.store import ObjectiveValue, Store
from nanosd_nas.search.study_views import samples_folder
from nanosd_nas.spaces import load_space

STUDY = "sampled"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str]]:
    """A study with one complete trial, and the trial's spec id."""
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    with Store.open(f"sqlite:///{tmp_path / 'nanosd-nas.db'}", upgrade=True) as store:
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        store.create_study(STUDY, quick_document(STUDY), device="local-cpu")
        spec_id = store.upsert_architecture(load_space("nanosd").spec((0,) * 6, "mini"))
        trial = store.add_trial(STUDY, params={"n": 0}, spec_id=spec_id)
        store.complete_trial(trial.id, {"params_m": ObjectiveValue(2.0, "computed"),
                                        "macs_g": ObjectiveValue(1.0, "computed")})
        settings = Settings(database_url=store.url, export_dir=tmp_path / "exports")
        with TestClient(create_app(settings, store=store)) as opened:
            yield opened, spec_id


def test_the_candidate_page_shows_the_grid_only_when_there_is_one(client):
    http, spec_id = client
    page = http.get(f"/studies/{STUDY}/trials/0")
    assert page.status_code == 200 and 'id="sample-grid"' not in page.text
    assert http.get(f"/studies/{STUDY}/trials/0/grid.png").status_code == 404
    folder = samples_folder(spec_id)
    folder.mkdir(parents=True)
    Image.new("RGB", (20, 8), (200, 10, 10)).save(folder / "grid.png")
    page = http.get(f"/studies/{STUDY}/trials/0")
    assert f'src="/studies/{STUDY}/trials/0/grid.png"' in page.text
    grid = http.get(f"/studies/{STUDY}/trials/0/grid.png")
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
    assert grid.content == (folder / "grid.png").read_bytes()
    assert http.get(f"/studies/{STUDY}/trials/7/grid.png").status_code == 404
