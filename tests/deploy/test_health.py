"""``/api/health``, the API container's healthcheck: 200 while the database answers, 503 with
the reason when it does not; no token needed either way."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from fastapi.testclient import TestClient

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.search.store import Store

TOKEN = "health-check-token"


def test_health_is_ok_while_the_database_answers(tmp_path: Path):
    with Store.open(f"sqlite:///{tmp_path / 'nas.db'}", upgrade=True) as store:
        app = create_app(Settings(database_url=store.url, api_token=TOKEN), store=store)
        with TestClient(app) as client:
            answer = client.get("/api/health")  # no Authorization header
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "reachable"}


def test_health_is_503_with_the_reason_when_the_database_does_not_answer():
    # A PostgreSQL server that went away: nothing listens on port 1.
    url = "postgresql+psycopg://nanosd@127.0.0.1:1/nanosd_nas"
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 2})
    with Store(engine=engine) as store:
        app = create_app(Settings(database_url=url, api_token=TOKEN), store=store)
        with TestClient(app) as client:
            answer = client.get("/api/health")
    assert answer.status_code == 503
    body = answer.json()
    assert (body["status"], body["database"]) == ("unavailable", "unreachable")
    assert "cannot connect to the database at" in body["detail"] and "127.0.0.1:1" in \
        body["detail"]
