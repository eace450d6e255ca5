"""A study with thousands of trials: the pages send one page of the table and draw the
dominated trials with WebGL, so the browser gets a bounded amount of work."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.search import pareto_mask
from nanosd_nas.search.store import ObjectiveValue, Store

TRIALS = 2000
pytestmark = pytest.mark.slow  # 4,000 transactions to fill the study


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite study of 2,000 completed trials with stored values and front (values drawn from
    a seeded generator: this is about volume, not about search)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('big') / 'nas.db'}"
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.uniform(5, 30, TRIALS), rng.uniform(10, 200, TRIALS)])
    with Store.open(url, upgrade=True) as store:
        store.create_study("big", {"name": "big", "objectives": [
            {"name": "fidelity", "direction": "maximize"},
            {"name": "latency_ms", "direction": "minimize"}]})
        ids = []
        for fidelity, latency in values:
            trial = store.add_trial("big", params={"E1": 0})
            store.complete_trial(trial.id, {
                "fidelity": ObjectiveValue(float(fidelity), "measured"),
                "latency_ms": ObjectiveValue(float(latency), "predicted")})
            ids.append(trial.id)
        mask = pareto_mask(values, ["maximize", "minimize"])
        store.replace_front("big", [i for i, m in zip(ids, mask, strict=True) if m],
                            hypervolume=1.0)
    return url


def test_the_study_page_sends_one_page_of_trials_and_draws_the_rest_with_webgl(big):
    with TestClient(create_app(Settings(database_url=big))) as client:
        page = client.get("/studies/big").text
        rows = re.findall(r'<a href="/studies/big/trials/\d+">', page)
        assert len(rows) == 50
        assert "page 1 of 40" in page
        assert '"type":"scattergl"' in page  # 2,000 dominated points on WebGL
        last = client.get("/studies/big", params={"page": 40, "sort": "latency_ms",
                                                  "order": "desc"}).text
        assert len(re.findall(r'<a href="/studies/big/trials/\d+">', last)) == 50
        answer = client.get("/api/studies/big/trials", params={"limit": 10_000}).json()
        assert answer["total"] == TRIALS and len(answer["trials"]) == 500  # the page cap
