"""A server without a token on loopback, against pages of other sites in the user's browser: a
request naming another host (DNS rebinding) is 400, a write from another origin or a form body
sent to the API is 403, and the server's own pages and non-browser clients still write. And
``serve`` over HTTPS: a certificate that does not load is one line at start."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dashboard_support import free_port, quick_document
from fastapi.testclient import TestClient

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search.store import Store

ROOT = Path(__file__).parents[2]
OWN = "http://127.0.0.1:8000"
GUARDED = "guarded"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    with Store.open(f"sqlite:///{tmp_path / 'nas.db'}", upgrade=True) as opened:
        opened.upsert_device(DeviceRegistry().get("local-cpu"))
        opened.create_study(GUARDED, quick_document(GUARDED), device="local-cpu", queued=True)
        yield opened


def _state(store: Store) -> list[tuple[str, str]]:
    return sorted((s.name, s.status) for s in store.list_studies())


def test_a_tokenless_server_refuses_other_hosts_and_other_sites_writes(store):
    settings = Settings(database_url=store.url, allowed_hosts=["127.0.0.1", "localhost", "::1"])
    form = {"document": yaml.safe_dump(quick_document("forged"))}
    before = _state(store)
    with TestClient(create_app(settings, store=store), base_url=OWN) as client:
        for host in ("evil.example", "evil.example:8000", "127.0.0.2:8000"):
            answer = client.get("/api/studies", headers={"host": host})
            assert answer.status_code == 400, host
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"):
            assert client.get("/api/studies", headers={"host": host}).status_code == 200, host
        forged = {  # what a hostile page can make the user's browser send
            "form from another site": client.post(
                "/studies", data=form, headers={"origin": "http://evil.example"},
                follow_redirects=False),
            "sandboxed page": client.post(f"/studies/{GUARDED}/stop",
                                          headers={"origin": "null"}),
            "another port": client.post(f"/api/studies/{GUARDED}/stop",
                                        headers={"origin": "http://127.0.0.1:9999"}),
            "script, cross-site": client.post("/api/studies", json=quick_document("forged"),
                                              headers={"sec-fetch-site": "cross-site"}),
            "text form to the API": client.post(
                "/api/studies", content=yaml.safe_dump(quick_document("forged")),
                headers={"content-type": "text/plain"}),
        }
        for what, answer in forged.items():
            assert answer.status_code == 403, (what, answer.status_code, answer.text[:200])
            assert "refused" in answer.json()["detail"] or "not text/plain" in (
                answer.json()["detail"]), what
        assert _state(store) == before  # nothing submitted, nothing stopped
        own_page = client.post("/studies", data=form, follow_redirects=False,
                               headers={"origin": OWN, "sec-fetch-site": "same-origin"})
        assert own_page.status_code == 303
        script = client.post("/api/studies", content=yaml.safe_dump(quick_document("scripted")),
                             headers={"content-type": "application/yaml"})
        assert script.status_code == 201
    assert _state(store) == sorted([*before, ("forged", "queued"), ("scripted", "queued")])
    # With a token the token decides: a write that carries it is taken whatever its origin.
    guarded = Settings(database_url=store.url, api_token="s3cret")
    with TestClient(create_app(guarded, store=store), base_url=OWN) as client:
        answer = client.post(f"/api/studies/{GUARDED}/stop", headers={
            "origin": "http://evil.example", "authorization": "Bearer s3cret"})
        assert answer.status_code == 200


@pytest.mark.parametrize("host", ["nas.example.com:8000", "a/b", "x.*.example.com"])
def test_an_allowed_host_that_is_no_host_name_is_refused(host):
    with pytest.raises(ValueError, match="must be a host name"):
        Settings(allowed_hosts=[host])



def _serve(tmp_path: Path, port: int, *options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path / "home")}
    env.pop("NANOSD_NAS_API_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "nanosd_nas", "serve", "--port", str(port), "--db",
         f"sqlite:///{tmp_path / 'served.db'}", *options], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_speaks_https_with_its_certificate_and_a_bad_one_is_one_line(tmp_path,
                                                                           self_signed):
    cert, key = self_signed
    (tmp_path / "not-a-key.pem").write_text("-----BEGIN NOTHING-----\n")
    refused = _serve(tmp_path, free_port(), "--tls-cert", str(cert), "--tls-key",
                     str(tmp_path / "not-a-key.pem"))
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 2, err
    assert err.strip() == (f"error: cannot load the TLS certificate {cert} with the key "
                           f"{tmp_path / 'not-a-key.pem'}: they are not a PEM certificate and "
                           "its matching private key")
    port = free_port()
    server = _serve(tmp_path, port, "--tls-cert", str(cert), "--tls-key", str(key),
                    "--allowed-host", "nas.example.com")
    try:
        assert server.stdout is not None
        assert f"https://127.0.0.1:{port}/" in server.stdout.readline()
        _wait_for_port(port)
        trusting = ssl.create_default_context(cafile=str(cert))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=trusting))
        with opener.open(f"https://127.0.0.1:{port}/api/studies", timeout=30) as answer:
            assert answer.status == 200 and answer.read() == b"[]"
        for host, status in (("nas.example.com", 200), ("evil.example", 400)):
            request = urllib.request.Request(f"https://127.0.0.1:{port}/api/studies",
                                             headers={"Host": host})
            try:
                with opener.open(request, timeout=30) as answer:
                    assert answer.status == status == 200
            except urllib.error.HTTPError as error:
                assert error.code == status == 400
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"https://127.0.0.1:{port}/api/studies", timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)
