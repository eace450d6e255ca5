"""The export API on a real server (uvicorn): heavy formats need the token, bad formats and
options are 422 with a reason, concurrent requests for one trial make one export that both
receive, a later one is read from the export folder, and a server with every export slot busy
answers 429."""

from __future__ import annotations

import io
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import LiveServer, quick_document

from nanosd_nas import search
from nanosd_nas.dashboards import Settings
from nanosd_nas.dashboards.routes import exports
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import load_point, to_scale

STUDY = "exportable"
TOKEN = "export-token"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """A study scored by surgery on the demo teacher, whose trial 0 is the teacher's own
    architecture at mini (the cheapest student to build), served with a token."""
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    document = {**quick_document(STUDY), "objectives": [{"name": "fidelity"},
                                                         {"name": "params_m"}],
                "accuracy": {"evaluator": "surgery", "teacher": "demo"}}
    with Store.open(url, upgrade=True) as store:
        from nanosd_nas.latency_models import DeviceRegistry

        store.upsert_device(DeviceRegistry().get("local-cpu"))
        store.create_study(STUDY, document, device="local-cpu", queued=True)
        spec_id = store.upsert_architecture(to_scale(load_point("sd15"), "mini"))
        for _ in range(2):
            store.add_trial(STUDY, params={}, spec_id=spec_id)
    settings = Settings(database_url=url, api_token=TOKEN, export_dir=tmp_path / "exports")
    with LiveServer(settings) as live:
        yield live


def _get(server: LiveServer, path: str, token: str | None = TOKEN) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"{server.url}/api/studies/{STUDY}/trials/{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _counting(export: Callable[..., Any], calls: list[tuple]) -> Callable[..., Any]:
    """``search.export_trial`` that records each call (the real export still runs)."""

    def counted(store: Store, study: str, number: int, fmt: str, out: Path, **kwargs: Any) -> Any:
        calls.append((study, number, fmt))
        return export(store, study, number, fmt, out, **kwargs)

    return counted


def test_heavy_exports_need_the_token_refuse_bad_options_and_run_once(
        server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The spec is a read like any other; building a model needs the token.
    assert _get(server, "0/export/spec", token=None)[0] == 200
    for token in (None, "wrong"):
        status, headers, _ = _get(server, "0/export/onnx", token=token)
        assert status == 401 and headers["www-authenticate"] == "Bearer"

    for path, reason in (("0/export/pickle", "fmt"), ("0/export/onnx?layout=coreml", "layout"),
                         ("0/export/onnx?precision=int4", "precision"),
                         ("0/export/onnx?shape=1024", "shape"),
                         ("0/export/safetensors?precision=fp16", "onnx format")):
        status, _, body = _get(server, path)
        assert status == 422 and reason in body.decode(), (path, body)

    calls: list[tuple] = []
    monkeypatch.setattr(search, "export_trial", _counting(search.export_trial, calls))
    wanted = "0/export/onnx?layout=optimum&precision=fp16&exporter=torchscript"
    answers: list[tuple[int, dict, bytes]] = []
    clients = [threading.Thread(target=lambda: answers.append(_get(server, wanted)))
               for _ in range(2)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    # Both waited on one export; the second read what the first wrote.
    assert [a[0] for a in answers] == [200, 200] and answers[0][2] == answers[1][2]
    assert calls == [(STUDY, 0, "onnx")]
    assert _get(server, wanted)[2] == answers[0][2] and len(calls) == 1  # from the folder

    archive = zipfile.ZipFile(io.BytesIO(answers[0][2]))
    assert {"unet/model.onnx", "vae_decoder/model.onnx", "vae_encoder/model.onnx",
            "model_index.json", "README.md", "export.json"} <= set(archive.namelist())
    card = archive.read("README.md").decode()
    assert f"trial 0 of study `{STUDY}`" in card and "surgery" in card
    assert "precision `fp16`" in card
    assert 'filename="exportable-trial0-onnx-optimum-fp16-torchscript.zip"' in \
        answers[0][1]["content-disposition"]

    # Every slot busy: another trial's export is turned away at once, with when to retry.
    with ExitStack() as busy:
        for _ in range(exports.EXPORT_SLOTS):
            busy.enter_context(exports._BOUNDS.slot())
        status, headers, body = _get(server, "1/export/safetensors")
    assert status == 429 and int(headers["retry-after"]) > 0 and b"ask again" in body
    assert len(calls) == 1

    # The candidate page cannot send a bearer header: with a token its buttons post the token
    # in a form, and get the same file (here the cached one) or the page with the reason.
    page = urllib.request.urlopen(f"{server.url}/studies/{STUDY}/trials/0", timeout=60).read()
    assert b'name="token"' in page and b'name="fmt" value="safetensors"' in page

    def post(fields: dict[str, str]) -> tuple[str, bytes]:
        data = urllib.parse.urlencode(fields).encode()
        form = urllib.request.Request(f"{server.url}/studies/{STUDY}/trials/0/export", data=data)
        with urllib.request.urlopen(form, timeout=300) as answer:
            return answer.url, answer.read()

    where, body = post({"fmt": "spec", "token": "wrong"})
    assert where.endswith("/trials/0?error=token") and b"needs its API token" in body
    assert post({"fmt": "spec", "token": TOKEN})[1] == _get(server, "0/export/spec")[2]
