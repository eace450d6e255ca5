"""The remote device agent as a client meets it: a real agent process on loopback, real HTTP."""

from __future__ import annotations

import functools
import http.client
import http.server
import json
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from urllib.parse import urlsplit

import pytest
from agent_support import (
    ROOT,
    TOKEN,
    custom_domain_onnx,
    external_data_onnx,
    free_port,
    huge_input_onnx,
    local_function_onnx,
    microsoft_domain_onnx,
    running_agent,
    tiny_onnx,
    unsorted_graph_onnx,
)

import nanosd_nas.latency_models.agent._server as server_module
import nanosd_nas.latency_models.agent._timing as timing_module
from nanosd_nas.latency_models import (
    AgentError,
    DeviceUnreachable,
    InvalidModel,
    LatencyStats,
    Protocol,
    RemoteProfiler,
)
from nanosd_nas.latency_models.agent import AgentClient, make_server

FINGERPRINT_KEYS = {"cpu", "machine", "runtime", "provider", "threads"}


@pytest.fixture(scope="module")
def agent_url():
    with running_agent() as (url, _):
        yield url


def request(url: str, method: str, path: str, body: bytes | None = None,
            token: str | None = TOKEN, headers: dict[str, str] | None = None,
            ) -> tuple[int, dict[str, str], dict]:
    """One raw HTTP exchange; returns status, headers and the JSON answer."""
    connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, dict(response.headers), json.loads(response.read())
    finally:
        connection.close()


def assert_sane(stats: LatencyStats, runs: int) -> None:
    assert 0 < stats.min_ms <= stats.p10_ms <= stats.median_ms <= stats.p90_ms
    assert stats.n == runs
    assert set(stats.fingerprint) >= FINGERPRINT_KEYS


def test_info_reports_device_providers_version_and_upload_limit(agent_url):
    status, _, info = request(agent_url, "GET", "/v1/info")
    assert status == 200
    assert {"cpu", "machine", "runtime"} <= set(info["fingerprint"])
    assert info["fingerprint"]["runtime"].startswith("onnxruntime ")
    assert "CPUExecutionProvider" in info["providers"]
    assert info["agent_version"] == server_module.AGENT_VERSION
    assert info["max_upload_bytes"] == 512 * 2**20


def test_remote_profiler_measures_a_real_model_with_the_protocol(agent_url):
    protocol = Protocol(threads=1, warmup=2, runs=7)
    profiler = RemoteProfiler(url=agent_url, token=TOKEN, protocol=protocol, device="edge")
    stats = profiler.measure_onnx(tiny_onnx())
    assert_sane(stats, runs=7)
    assert stats.fingerprint["provider"] == "CPUExecutionProvider"
    assert stats.fingerprint["threads"] == 1
    assert profiler.fingerprint() == stats.fingerprint


def test_the_agent_splits_the_runs_between_the_sessions_asked_for(local_agent, monkeypatch):
    opened = []
    real = timing_module.open_session

    def counted(model, protocol):
        opened.append(protocol.sessions)
        return real(model, protocol)

    monkeypatch.setattr(timing_module, "open_session", counted)
    url = local_agent.url
    stats = RemoteProfiler(url=url, token=TOKEN, protocol=Protocol(warmup=1, runs=7, sessions=3)
                           ).measure_onnx(tiny_onnx())
    assert stats.n == 7 and opened == [3, 3, 3]
    opened.clear()
    assert RemoteProfiler(url=url, token=TOKEN, protocol=Protocol(warmup=0, runs=2)
                          ).measure_onnx(tiny_onnx()).n == 2
    assert opened == [1]  # one session, and no sessions= in the query for older agents


def test_shapes_fill_in_dynamic_dimensions(agent_url):
    profiler = RemoteProfiler(url=agent_url, token=TOKEN, protocol=Protocol(warmup=0, runs=3))
    with pytest.raises(AgentError) as refused:
        profiler.measure_onnx(tiny_onnx(batch="N"))
    assert refused.value.status == 400
    assert "'x'" in refused.value.reason and "dynamic" in refused.value.reason
    assert profiler.measure_onnx(tiny_onnx(batch="N"), shapes={"x": [2, 64]}).n == 3


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/info"), ("POST", "/v1/measure"),
                                              ("GET", "/anything")])
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_endpoint_needs_the_token(agent_url, method, path, token):
    body = tiny_onnx() if method == "POST" else None
    status, headers, answer = request(agent_url, method, path, body=body, token=token)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert answer["error"] == ("token refused" if token else
                               "missing bearer token (send 'Authorization: Bearer TOKEN')")


def test_wrong_token_is_an_agent_error_that_says_so(agent_url):
    profiler = RemoteProfiler(url=agent_url, token="not-it")
    with pytest.raises(AgentError) as refused:
        profiler.measure_onnx(tiny_onnx())
    assert refused.value.status == 401
    assert "refused the token" in str(refused.value) and agent_url in str(refused.value)


def test_corrupt_onnx_is_a_400_invalid_model_saying_why(agent_url):
    status, _, answer = request(agent_url, "POST", "/v1/measure", body=b"not an onnx model")
    assert status == 400
    assert answer["code"] == "invalid_model"
    assert answer["error"].startswith("not a loadable ONNX model: the bytes do not parse as "
                                      "an ONNX ModelProto")
    with pytest.raises(InvalidModel) as invalid:
        RemoteProfiler(url=agent_url, token=TOKEN).measure_onnx(tiny_onnx()[:-20])
    assert isinstance(invalid.value, AgentError) and invalid.value.status == 400


@pytest.mark.parametrize(
    ("query", "named"),
    [("runs=0", "runs=0"), ("threads=two", "threads='two'"), ("warmup=-1", "warmup=-1"),
     ("sessions=0", "sessions=0"), ("sessions=101", "sessions=101"),
     ("provider=NopeExecutionProvider", "provider='NopeExecutionProvider'"),
     ("shapes=%7Bx", "shapes is not JSON"), ('shapes={"x":[0,64]}', "shapes must be"),
     ("colour=red", "unknown parameter 'colour'"), ("runs=3&runs=4", "'runs' given twice")],
)
def test_bad_parameters_are_400s_naming_the_parameter(agent_url, query, named):
    status, _, answer = request(agent_url, "POST", f"/v1/measure?{query}", body=tiny_onnx())
    assert status == 400
    assert named in answer["error"]


def test_unknown_path_is_404_and_wrong_method_is_405(agent_url):
    status, _, answer = request(agent_url, "GET", "/v2/info")
    assert status == 404 and "/v2/info" in answer["error"]
    status, _, answer = request(agent_url, "GET", "/v1/measure")
    assert status == 405 and "GET" in answer["error"]


def test_a_body_without_length_is_411(agent_url):
    address = urlsplit(agent_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
        raw.sendall(f"POST /v1/measure HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
                    .encode())
        raw.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: raw.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.0 411")
    assert b"Content-Length is required" in answer


def test_oversized_uploads_are_413_before_the_body_is_read():
    with running_agent("--max-upload-mb", "0.01") as (url, _):  # 10,485 bytes
        status, _, answer = request(url, "POST", "/v1/measure", body=b"\0" * 20_000)
        assert status == 413
        assert "20000 bytes exceeds this agent's limit of 10485 bytes" in answer["error"]
        # The limit is checked on Content-Length alone: a 1 GiB claim is refused at once.
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
            raw.sendall(f"POST /v1/measure HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n"
                        f"Content-Length: {2**30}\r\n\r\n".encode())
            assert raw.recv(4096).startswith(b"HTTP/1.0 413")
        # The client refuses before uploading; the agent keeps serving.
        profiler = RemoteProfiler(url=url, token=TOKEN, protocol=Protocol(warmup=0, runs=2))
        with pytest.raises(AgentError) as too_large:
            profiler.measure_onnx(tiny_onnx(width=64))  # ~16 KiB of weights
        assert too_large.value.status == 413
        assert profiler.measure_onnx(tiny_onnx(width=8)).n == 2


def test_unreachable_agent_is_device_unreachable_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DeviceUnreachable) as unreachable:
        RemoteProfiler(url=url, token=TOKEN).measure_onnx(tiny_onnx())
    assert url in str(unreachable.value)
    assert "refused" in str(unreachable.value).lower()


def test_a_server_that_is_not_an_agent_is_named_as_such(tmp_path):
    other = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler,
                                            directory=str(tmp_path)))
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{other.server_address[1]}"
        with pytest.raises(AgentError, match=r"404: File not found \(not a nanosd-nas agent"):
            AgentClient(url=url, token=TOKEN).info()
    finally:
        other.shutdown()
        other.server_close()


@pytest.mark.parametrize("url", ["127.0.0.1:8765", "ftp://host:1", "http://host:1/v1/info"])
def test_malformed_agent_urls_are_refused(url):
    with pytest.raises(ValueError, match="agent URL"):
        RemoteProfiler(url=url, token=TOKEN)


def test_without_a_token_the_agent_generates_one_and_prints_it_once(tmp_path):
    log = tmp_path / "agent.log"
    with running_agent(token=None, log=log) as (url, lines):
        assert lines[1].startswith("token: ")
        generated = lines[1].split()[1]
        assert len(generated) >= 24
        assert AgentClient(url=url, token=generated).info()["api"] == "v1"
        assert AgentClient(url=url, token=generated).measure(tiny_onnx(), Protocol(runs=2)).n == 2
        with pytest.raises(AgentError):
            AgentClient(url=url, token="guess-wrong").info()
    # Shown once on standard output, never in the request log (which did log the requests).
    assert sum(generated in line for line in lines) == 1
    logged = log.read_text()
    assert "GET /v1/info" in logged and "POST /v1/measure" in logged
    assert generated not in logged and "guess-wrong" not in logged


@pytest.mark.parametrize("token", ["", " padded ", "\t"])
def test_a_blank_or_padded_token_is_refused_before_listening(token):
    with pytest.raises(ValueError, match="non-empty, without surrounding spaces"):
        make_server("127.0.0.1", 0, token=token)
    if token:  # an empty --token means "generate one"
        result = subprocess.run([sys.executable, "-m", "nanosd_nas", "agent", "--port", "0",
                                 "--token", token], capture_output=True, text=True, timeout=60,
                                cwd=ROOT, check=False)
        assert result.returncode == 2 and "without surrounding spaces" in result.stderr
        assert "listening" not in result.stdout


def test_the_agent_folder_runs_alone_without_torch_or_the_project(tmp_path):
    """An edge device gets only the agent folder, onnxruntime, onnx and numpy; the upload
    check comes along."""
    shutil.copytree(ROOT / "latency_models" / "agent", tmp_path / "agent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    probe = textwrap.dedent("""
        import sys
        import agent
        forbidden = {"torch", "spaces", "fastapi", "latency_models", "nanosd_nas",
                     "diffusers", "typer"}
        print(sorted(forbidden & {name.split(".")[0] for name in sys.modules}))
    """)
    imported = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, check=True)
    assert imported.stdout.strip() == "[]"
    command = [sys.executable, "-m", "agent"]
    (tmp_path / "weights.bin").write_bytes(bytes(32))  # beside the agent, in its working folder
    with running_agent(command=command, cwd=tmp_path) as (url, _):
        client = AgentClient(url=url, token=TOKEN)
        assert client.measure(tiny_onnx(), Protocol(runs=3)).n == 3
        with pytest.raises(InvalidModel, match=r"external file \('weights\.bin'\)"):
            client.measure(external_data_onnx("weights.bin"), Protocol(runs=3))


# In-process agents: to observe what cannot be provoked from outside (internal errors, overlap).

@pytest.fixture
def local_agent():
    agent = make_server("127.0.0.1", 0, token=TOKEN)
    thread = threading.Thread(target=agent.serve_forever, daemon=True)
    thread.start()
    yield agent
    agent.shutdown()
    agent.server_close()


def test_an_internal_failure_is_a_500_with_a_reason_and_the_agent_keeps_serving(
        local_agent, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("device on fire")

    monkeypatch.setattr(server_module, "time_model", broken)
    status, _, answer = request(local_agent.url, "POST", "/v1/measure", body=tiny_onnx())
    assert status == 500
    assert answer["error"] == "internal error: RuntimeError: device on fire"
    with pytest.raises(AgentError) as failed:
        AgentClient(url=local_agent.url, token=TOKEN).measure(tiny_onnx(), Protocol())
    assert failed.value.status == 500
    assert request(local_agent.url, "GET", "/v1/info")[0] == 200


def test_measurements_are_serialised_one_model_at_a_time(local_agent, monkeypatch):
    active, overlap = [0], [0]
    guard = threading.Lock()

    def slow(model, protocol, shapes=None):
        with guard:
            active[0] += 1
            overlap[0] = max(overlap[0], active[0])
        time.sleep(0.1)
        with guard:
            active[0] -= 1
        return LatencyStats.from_samples([1.0, 2.0], {"cpu": "test"})

    monkeypatch.setattr(server_module, "time_model", slow)
    client = AgentClient(url=local_agent.url, token=TOKEN)
    results: list[LatencyStats] = []
    threads = [threading.Thread(target=lambda: results.append(
        client.measure(tiny_onnx(), Protocol()))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 4
    assert overlap[0] == 1


def test_an_agent_that_does_not_answer_in_time_is_unreachable(local_agent, monkeypatch):
    def stuck(*args, **kwargs):
        time.sleep(1.5)
        raise RuntimeError("too late")

    monkeypatch.setattr(server_module, "time_model", stuck)
    client = AgentClient(url=local_agent.url, token=TOKEN, timeout=0.3)
    with pytest.raises(DeviceUnreachable, match=r"no answer within 0\.3 s"):
        client.measure(tiny_onnx(), Protocol())


# What an upload must be before the runtime sees it (in-process: a spy stands for the runtime).

@pytest.fixture
def runtime_calls(monkeypatch):
    """The models that reached the measurement (and so onnxruntime)."""
    calls: list[bytes] = []
    real = server_module.time_model

    def spy(model, protocol, shapes=None):
        calls.append(model)
        return real(model, protocol, shapes)

    monkeypatch.setattr(server_module, "time_model", spy)
    return calls


def _secret_file(tmp_path):
    secret = tmp_path / "secret" / "hostname"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(b"agent-secret-" + bytes(32))
    return secret


@pytest.mark.parametrize(("upload", "words"), [
    (lambda tmp: b"\x08\x07", "the ONNX checker refuses it: model with IR version"),
    (lambda tmp: tiny_onnx()[:-20], "do not parse as an ONNX ModelProto"),
    (lambda tmp: unsorted_graph_onnx(), "the ONNX checker refuses it: Nodes in a graph must "
                                       "be topologically sorted"),
    (lambda tmp: external_data_onnx("../../etc/hostname"),
     "tensor 'w' keeps its data in an external file ('../../etc/hostname')"),
    (lambda tmp: external_data_onnx(str(_secret_file(tmp))), "keeps its data in an external "
                                                             "file"),
    (lambda tmp: external_data_onnx("hostname"), "external file ('hostname')"),
    (lambda tmp: custom_domain_onnx(), "operator 'Frobnicate' of domain 'custom.ops' is not one "
                                       "the agent runs"),
    (lambda tmp: huge_input_onnx(), "input 'x' of shape [16385, 16384] brings the model's "
                                    "inputs to 268451840 elements"),
], ids=["no-opset", "truncated", "checker", "traversal", "absolute", "relative",
        "custom-domain", "huge-input"])
def test_an_upload_is_refused_before_the_runtime_sees_it(local_agent, runtime_calls, tmp_path,
                                                         monkeypatch, upload, words):
    monkeypatch.chdir(_secret_file(tmp_path).parent)  # "hostname" is a real file here
    status, _, answer = request(local_agent.url, "POST", "/v1/measure", body=upload(tmp_path))
    assert (status, answer["code"]) == (400, "invalid_model"), answer
    assert words in answer["error"]
    assert "agent-secret" not in answer["error"]
    assert runtime_calls == []
    assert request(local_agent.url, "POST", "/v1/measure?runs=2", body=tiny_onnx())[0] == 200
    assert len(runtime_calls) == 1  # the spy does see what passes


@pytest.mark.parametrize("upload", [microsoft_domain_onnx, local_function_onnx],
                         ids=["com.microsoft", "own-function"])
def test_standard_domains_and_the_models_own_functions_are_measured(local_agent, upload):
    stats = AgentClient(url=local_agent.url, token=TOKEN).measure(upload(), Protocol(runs=3))
    assert stats.n == 3 and stats.min_ms > 0


def test_input_shapes_beyond_the_allocation_bound_are_refused(local_agent):
    client = AgentClient(url=local_agent.url, token=TOKEN)
    with pytest.raises(AgentError) as refused:
        client.measure(tiny_onnx(batch="N"), Protocol(runs=2), shapes={"x": [2**22 + 1, 64]})
    assert refused.value.status == 400 and refused.value.code == "invalid_input"
    assert "268435520 elements" in refused.value.reason
    assert "at most 268435456 are allocated" in refused.value.reason
    assert client.measure(tiny_onnx(batch="N"), Protocol(runs=2), shapes={"x": [4, 64]}).n == 2
