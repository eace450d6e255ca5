"""What the API shows the network, on SQLite and on PostgreSQL: every write needs the token when
the server has one, a body over the limit is refused (413) before a handler reads it (and read
out first, up to a bound, so that the client reads the 413 rather than a reset), and no value a
client sends makes the server read or write a file outside its own folders (every file access
during the requests is watched through Python's audit hooks)."""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from dashboard_support import LiveServer, quick_document
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import load_point, to_scale

GUARDED = "guarded"
TOKEN = "s3cret-token"


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The service's own folders (project home, export folder) and one outside them that
    holds what a client might try to reach."""
    named = {"home": tmp_path / "home", "exports": tmp_path / "exports",
             "outside": tmp_path / "outside"}
    for folder in named.values():
        folder.mkdir()
    (named["outside"] / "secret.safetensors").write_bytes(b"not for clients")
    monkeypatch.setenv("NANOSD_NAS_HOME", str(named["home"]))
    return named


@pytest.fixture
def guarded_store(database_url: str, folders: dict[str, Path]) -> Iterator[Store]:
    """A store holding a queued study with two trials that have an architecture."""
    with Store.open(database_url, upgrade=True) as store:
        store.upsert_device(_local_cpu())
        store.create_study(GUARDED, quick_document(GUARDED), device="local-cpu", queued=True)
        spec_id = store.upsert_architecture(to_scale(load_point("sd15"), "mini"))
        for choice in (0, 1):
            store.add_trial(GUARDED, params={"choice": choice}, spec_id=spec_id)
        yield store


def _local_cpu() -> Any:
    from nanosd_nas.latency_models import DeviceRegistry

    return DeviceRegistry().get("local-cpu")


def _client(store: Store, folders: dict[str, Path], token: str | None = None) -> TestClient:
    settings = Settings(database_url=store.url, api_token=token, export_dir=folders["exports"])
    return TestClient(create_app(settings, store=store))


def _state(store: Store) -> list[tuple[str, str]]:
    return sorted((s.name, s.status) for s in store.list_studies())


# -- the token ---------------------------------------------------------------------------------
def _routes() -> list[Any]:
    """Every route of the app: those of each router in ``dashboards.routes`` and the app's
    own (OpenAPI, docs)."""
    from nanosd_nas.dashboards import routes

    found = [route for route in FastAPI().routes if isinstance(route, Route)]
    for module in pkgutil.iter_modules(routes.__path__):
        found += importlib.import_module(f"{routes.__name__}.{module.name}").router.routes
    return found


def _write_routes() -> list[tuple[str, str]]:
    return sorted((method, route.path) for route in _routes()
                  for method in (route.methods or set()) - {"GET", "HEAD"})


def _send_write(client: TestClient, method: str, path: str, token: str | None) -> Any:
    """``method path`` as its client sends it: the API with a bearer header, the pages' forms
    with a token field; a submission carries a valid study, so only the token can fail it."""
    url = path.replace("{name}", GUARDED).replace("{number}", "0")
    document = quick_document("smuggled")
    if path.startswith("/api"):
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        body = document if path == "/api/studies" else None
        return client.request(method, url, json=body, headers=headers)
    form = ({"document": yaml.safe_dump(document)} if path == "/studies" else
            {"fmt": "spec"} if path.endswith("/export") else {})
    if token is not None:
        form["token"] = token
    return client.request(method, url, data=form, follow_redirects=False)


def test_every_write_route_needs_the_token(guarded_store, folders):
    with _client(guarded_store, folders, token=TOKEN) as client:
        writes = _write_routes()
        assert set(writes) >= {("POST", "/api/studies"), ("POST", "/api/studies/{name}/stop"),
                               ("POST", "/studies"), ("POST", "/studies/{name}/stop")}
        before = _state(guarded_store)
        for method, path in writes:
            for token in (None, "wrong-token", TOKEN.upper()):
                answer = _send_write(client, method, path, token)
                refused = answer.status_code == 401 or (
                    answer.status_code == 303 and "error=token" in answer.headers["location"])
                assert refused, (method, path, token, answer.status_code, answer.text[:200])
        assert _state(guarded_store) == before  # nothing submitted, nothing stopped
        # The same requests with the token do what they say.
        assert _send_write(client, "POST", "/studies", TOKEN).status_code == 303
        stopped = _send_write(client, "POST", "/api/studies/{name}/stop", TOKEN)
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        assert _state(guarded_store) == sorted([(GUARDED, "stopped"), ("smuggled", "queued")])


def test_no_route_takes_put_or_patch_and_only_a_study_takes_delete(guarded_store, folders):
    with _client(guarded_store, folders) as client:  # no token: only the router stands guard
        before = _state(guarded_store)
        paths = {route.path.replace("{name}", GUARDED).replace("{number}", "0")
                 .replace("{fmt}", "spec").replace("{device}", "local-cpu")
                 for route in _routes()}
        assert f"/api/studies/{GUARDED}" in paths  # DELETE deletes it: not sent here
        for path in sorted(paths):
            for method in ("PUT", "PATCH", "DELETE"):
                if (method, path) == ("DELETE", f"/api/studies/{GUARDED}"):
                    continue
                assert client.request(method, path).status_code == 405, (method, path)
        assert _state(guarded_store) == before


@pytest.mark.parametrize("token", ["", "  ", " padded"])
def test_a_blank_or_padded_token_is_refused(token):
    with pytest.raises(ValueError, match="non-empty, without surrounding spaces"):
        Settings(api_token=token)


# -- the body limit ----------------------------------------------------------------------------
def _exchange(port: int, head: str, chunks: tuple[bytes, ...] = (), *,
              whole: bool = False) -> bytes:
    """Send a raw request (head, then ``chunks`` as they are) and read the answer until the
    server closes the connection.

    ``whole``: send the chunks a few milliseconds apart, as a client on a network does, and
    fail (ConnectionResetError, BrokenPipeError) if the server closes before it has them all.
    Otherwise the server may answer and close at any point.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(head.encode())
        try:
            for chunk in chunks:
                raw.sendall(chunk)
                time.sleep(0.005 if whole else 0.0)
        except OSError:
            if whole:
                raise
        answer = b""
        try:
            while piece := raw.recv(4096):
                answer += piece
        except ConnectionResetError:
            if whole:
                raise
            # The server closed with our unread chunks in its buffer, and the kernel's reset can
            # overtake the answer: what arrived is kept (empty if the reset won the race).
        return answer


WRITE_PATHS = ("/api/studies", "/studies", f"/api/studies/{GUARDED}/stop", "/nowhere")


def test_a_body_declared_over_the_limit_is_413_without_waiting_for_it(guarded_store, folders):
    settings = Settings(database_url=guarded_store.url, max_body_bytes=2048)
    before = _state(guarded_store)
    with LiveServer(settings) as server:
        for path in WRITE_PATHS:
            answer = _exchange(server.port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Content-Type: application/yaml\r\n"
                               f"Content-Length: {2**30}\r\n\r\n")  # not one byte of it sent
            assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
            assert b"larger than this server accepts (2048 bytes)" in answer
    assert _state(guarded_store) == before


def test_a_body_over_the_limit_sent_whole_is_read_out_and_answered_413(guarded_store, folders):
    """A client that sends its whole body before reading (most do): the server reads and drops
    the rest (up to a bound) before it answers, so the client reads the 413, not a reset."""
    settings = Settings(database_url=guarded_store.url, max_body_bytes=2048)
    pieces = (b"#" + b"x" * 4095,) * 64  # 256 KiB
    before = _state(guarded_store)
    with LiveServer(settings) as server:
        for path in WRITE_PATHS:
            answer = _exchange(server.port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Content-Type: application/yaml\r\n"
                               f"Content-Length: {64 * 4096}\r\n\r\n", pieces, whole=True)
            assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200])
    assert _state(guarded_store) == before


@pytest.mark.parametrize(("path", "content_type", "piece"), [
    ("/api/studies", "application/yaml", b"#" + b"x" * 1023),
    ("/studies", "application/x-www-form-urlencoded", b"document=" + b"x" * 1015),
], ids=["api", "form"])
def test_a_chunked_body_over_the_limit_is_413_before_the_handler_sees_it(
        guarded_store, folders, path, content_type, piece):
    """No Content-Length to refuse on: the body is counted as the handler reads it, and the
    413 goes out at the limit (a form parser would otherwise make it its own 400), once the
    rest of the body is read out."""
    settings = Settings(database_url=guarded_store.url, max_body_bytes=2048)
    chunks = (*(b"400\r\n" + piece + b"\r\n",) * 64, b"0\r\n\r\n")  # 64 KiB
    before = _state(guarded_store)
    with LiveServer(settings) as server:
        for _ in range(2):
            answer = _exchange(server.port, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               f"Content-Type: {content_type}\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n", chunks, whole=True)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
            assert answer.endswith(b"larger than this server accepts (2048 bytes)\"}")
    assert _state(guarded_store) == before


# -- files -------------------------------------------------------------------------------------
def test_a_submitted_teacher_is_demo_or_one_installed_on_the_server(guarded_store, folders):
    installed = folders["home"] / "teachers" / "sd15-local"
    installed.mkdir(parents=True)
    secret = folders["outside"] / "secret.safetensors"
    with _client(guarded_store, folders) as client:
        for teacher in (str(secret), str(installed), "../outside/secret.safetensors",
                        "sd15-local/../../../outside", "/etc/hostname", "sd15-missing"):
            document = {**quick_document("taught"),
                        "accuracy": {"evaluator": "surgery", "teacher": teacher}}
            answer = client.post("/api/studies", json=document)
            assert answer.status_code == 422, (teacher, answer.text)
            assert ("is not one of this server's teachers (demo, trained, sd15-local); teacher "
                    "paths can be used from the command line only") in answer.json()["detail"]
            form = client.post("/studies", data={"document": yaml.safe_dump(document)})
            assert form.status_code == 422 and "this server&#39;s teachers" in form.text
        assert client.get("/api/studies/taught").status_code == 404
        document = {**quick_document("taught"),
                    "accuracy": {"evaluator": "surgery", "teacher": "sd15-local"}}
        assert client.post("/api/studies", json=document).status_code == 201
    stored = guarded_store.get_study("taught").config["accuracy"]["teacher"]
    assert stored == str(installed.absolute())  # the worker loads it from the server's folder


class FileAudit:
    """Python's audit events of file access, recorded while :attr:`active`.

    A hook cannot be removed once added: one is added per test process and switched on and off.
    """

    WRITES = frozenset({"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir",
                        "os.truncate", "os.chmod", "os.symlink", "os.link", "shutil.rmtree",
                        "shutil.move", "shutil.copyfile"})
    READS = frozenset({"open", "os.listdir", "os.scandir", "shutil.copyfile"})
    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self) -> None:
        self.active = False
        self.reads: list[Path] = []
        self.writes: list[Path] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or event not in self.WRITES | self.READS:
            return
        given = args[:1] if event == "open" else args  # open's other arguments are modes
        named = [Path(os.fsdecode(a)) for a in given if isinstance(a, str | bytes | os.PathLike)]
        if (event != "open" and named and not named[0].is_absolute()
                and isinstance(args[-1], int)):
            return  # relative to a folder descriptor: inside an audited rmtree
        paths = [path.absolute() for path in named]
        writes = event in self.WRITES or (event == "open" and isinstance(args[-1], int)
                                          and args[-1] & self._WRITE_FLAGS)
        (self.writes if writes else self.reads).extend(paths)


_AUDIT = FileAudit()
sys.addaudithook(_AUDIT)


@contextlib.contextmanager
def audited() -> Iterator[FileAudit]:
    """The file accesses of the process while the block runs."""
    _AUDIT.reads.clear()
    _AUDIT.writes.clear()
    _AUDIT.active = True
    try:
        yield _AUDIT
    finally:
        _AUDIT.active = False


def _aimed(folders: dict[str, Path]) -> list[str]:
    """Values that name a file outside the service: absolute, relative to the project home,
    the export folder and the working folder, and deep enough to leave any of them."""
    secret = folders["outside"] / "secret.safetensors"
    return [str(secret), str(folders["outside"]), "../outside/secret.safetensors",
            "../../outside/secret.safetensors", os.path.relpath(secret, Path.cwd()),
            "../" * 16 + str(secret).lstrip("/"), "/etc/hostname", "..", "."]


def _study_variants(value: str, number: int) -> list[dict[str, Any]]:
    """The quick study with ``value`` in each field that could name a file or code."""
    name = f"aimed-{number}"
    base = quick_document(name)
    fidelity = {**base, "objectives": [{"name": "fidelity"}, {"name": "params_m"}]}
    return [
        {**base, "name": value},
        {**base, "space": value},
        {**base, "device": value},
        {**base, "scale": value},
        {**fidelity, "accuracy": {"evaluator": "distill", "teacher": value}},
        {**fidelity, "accuracy": {"evaluator": f"{value}:main", "teacher": "demo"}},
        {**fidelity, "accuracy": {"evaluator": "pathlib:Path", "options": {"path": value}}},
        {**fidelity, "accuracy": {"evaluator": "distill", "images": value}},
        {**fidelity, "accuracy": {"evaluator": "distill", "context": value}},
    ]


def _aimed_requests(client: TestClient, value: str, number: int) -> list[Any]:
    answers = []
    for document in _study_variants(value, number):
        answers.append(client.post("/api/studies", json=document))
        answers.append(client.post("/studies", data={"document": yaml.safe_dump(document)}))
    segment = quote(value, safe="")
    for path in (f"/api/studies/{segment}", f"/api/studies/{segment}/front",
                 f"/api/studies/{segment}/hypervolume", f"/api/studies/{segment}/trials/0",
                 f"/api/studies/{segment}/trials/0/export/spec", f"/api/devices/{segment}",
                 f"/studies/{segment}", f"/studies/{segment}/trials/0", f"/static/{segment}",
                 f"/api/studies/{GUARDED}/trials/0/export/{segment}"):
        answers.append(client.get(path))
    for path, params in (
            (f"/api/studies/{GUARDED}/trials", {"sort": value}),
            (f"/api/studies/{GUARDED}/trials", {"range": f"{value}:0:1"}),
            (f"/api/studies/{GUARDED}/trials/0/export/onnx", {"weights": value}),
            (f"/studies/{GUARDED}", {"x": value, "y": value, "sort": value,
                                     "range_name": value}),
            ("/compare", {"study": value, "x": value, "y": value})):
        answers.append(client.get(path, params=params))
    return answers


def test_no_client_value_reads_or_writes_outside_the_service_folders(guarded_store, folders):
    outside_before = sorted(folders["outside"].rglob("*"))
    with _client(guarded_store, folders) as client:
        # The first export imports the model libraries; their import-time caches are no
        # client's doing.
        assert client.get(f"/api/studies/{GUARDED}/trials/1/export/spec").status_code == 200
        with audited() as audit:
            answers = []
            for number, value in enumerate(_aimed(folders)):
                answers += _aimed_requests(client, value, number)
            # What a client may do: export into the export folder (the audit sees it).
            exported = client.get(f"/api/studies/{GUARDED}/trials/0/export/spec")
    assert exported.status_code == 200 and exported.json()["schema_version"]
    assert all(a.status_code < 500 for a in answers), [a.text[:200] for a in answers
                                                       if a.status_code >= 500]
    touched = audit.reads + audit.writes
    aimed_at = [folders["outside"], Path("/etc/hostname")]
    assert not [p for p in touched for target in aimed_at if p.is_relative_to(target)]
    assert [p for p in audit.writes if not p.is_relative_to(folders["exports"])
            and not p.is_relative_to(folders["home"]) and "__pycache__" not in p.parts] == []
    assert any(p.is_relative_to(folders["exports"] / GUARDED / "0") for p in audit.writes)
    assert sorted(folders["outside"].rglob("*")) == outside_before
    stored = [s.config for s in guarded_store.list_studies() if s.name != GUARDED]
    for config in stored:  # what was accepted names nothing of the client's choosing
        assert config["space"] == "nanosd" and config["device"] == "local-cpu"
        assert config.get("accuracy", {}).get("teacher", "trained") in ("demo", "trained")
        assert config.get("accuracy", {}).get("evaluator", "distill") in ("distill", "surgery")
