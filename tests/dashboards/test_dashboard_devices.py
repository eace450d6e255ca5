"""A predictor's held-out accuracy as the API and the devices page give it, on SQLite and on
PostgreSQL: the components that vary across the space lead, the pipeline's figure beside them
(on ``nanosd`` the VAE is the same in every member: its latency flatters the pipeline's), also
for a predictor stored before the varying components were recorded."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import load_space


def _accuracy(within_10pct: float, spearman: float | None, n: int = 4) -> dict:
    return {"within_5pct": within_10pct / 2, "within_10pct": within_10pct, "spearman": spearman,
            "rmspe": 0.2 - within_10pct / 10, "n": n}


#: The held-out figures of a ``nanosd`` predictor whose U-Net is poorly predicted: half its
#: U-Nets within 10%, every pipeline within 10% (the fixed VAE dominates the pipeline).
HELD_OUT = {"unet": _accuracy(0.5, 0.4), "vae_encoder": _accuracy(1.0, None),
            "vae_decoder": _accuracy(1.0, None),
            "pipeline": {**_accuracy(1.0, 0.6), "steps": 1,
                         "points": {"predicted_ms": [10.0, 11.0, 12.0, 13.0],
                                    "measured_ms": [10.2, 10.8, 12.1, 13.3]}}}


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """local-cpu with two predictors of ``nanosd``: one recording ``varying`` (version v2),
    one stored before it was recorded (v1)."""
    digest = load_space("nanosd").digest
    with Store.open(database_url, upgrade=True) as store:
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        for version, held_out in (("v1", HELD_OUT), ("v2", {**HELD_OUT, "varying": ["unet"]})):
            store.record_predictor(device="local-cpu", space="nanosd", space_digest=digest,
                                   scale="mini", version=version, statistic="normalised_ms",
                                   held_out=held_out)
        settings = Settings(database_url=store.url, export_dir=tmp_path / "exports")
        with TestClient(create_app(settings, store=store)) as opened:
            yield opened


def test_the_api_leads_with_the_unet_and_gives_the_pipeline_beside_it(client):
    answer = client.get("/api/devices/local-cpu")
    assert answer.status_code == 200, answer.text
    predictors = answer.json()["predictors"]
    assert [p["version"] for p in predictors] == ["v1", "v2"]
    for predictor in predictors:  # recorded (v2) or read from the figures (v1): the same
        assert list(predictor)[:6] == ["id", "space", "scale", "version", "statistic",
                                       "headline"]
        headline = predictor["headline"]
        assert headline["varying"] == ["unet"]
        assert headline["fixed"] == ["vae_encoder", "vae_decoder"]
        assert [c["name"] for c in headline["components"]] == ["unet"]
        assert headline["components"][0]["within_10pct"] == 0.5
        assert headline["pipeline"] == {"name": "pipeline", "within_10pct": 1.0,
                                        "within_5pct": 0.5, "spearman": 0.6,
                                        "rmspe": pytest.approx(0.1), "n": 4}
        assert predictor["held_out"]["pipeline"]["points"]["measured_ms"][0] == 10.2


def test_a_predictor_without_held_out_members_has_no_headline(database_url, tmp_path):
    with Store.open(database_url, upgrade=True) as store:
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        store.record_predictor(device="local-cpu", space="nanosd", space_digest="0" * 12,
                               scale="mini", version="v1", held_out={})
        with TestClient(create_app(Settings(database_url=store.url), store=store)) as client:
            [predictor] = client.get("/api/devices/local-cpu").json()["predictors"]
            assert predictor["headline"] is None
            page = html.unescape(client.get("/devices").text)
            assert "no held-out members measured" in page


def test_the_devices_page_shows_the_unet_row_first_and_the_pipeline_beside(client):
    page = client.get("/devices")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    tables = re.findall(r'<table class="held-out" id="held-out-\d+">(.*?)</table>', text,
                        re.DOTALL)
    assert len(tables) == 2
    for table in tables:
        rows = re.findall(r'<tr class="(\w+)"><td>([\w-]+)</td>\s*<td class="num">([^<]+)</td>',
                          table)
        assert rows == [("varies", "unet", "50%"), ("pipeline", "pipeline", "100%")]
    assert text.count("vae_encoder, vae_decoder are the same in every member of nanosd") == 2
