"""``nanosd-nas serve`` and ``nanosd-nas worker`` as processes: the server answers on the port
it was given, a worker runs what the API queued, and their mistakes are one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

QUICK = {"name": "from-the-api", "space": "nanosd", "scale": "mini", "device": "local-cpu",
         "objectives": [{"name": "params_m", "direction": "minimize"},
                        {"name": "macs_g", "direction": "minimize"}],
         "n_trials": 3, "sampler": "random", "seed": 2}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "NANOSD_NAS_HOME": str(tmp_path / "home"),
            "NANOSD_NAS_DATABASE_URL": f"sqlite:///{tmp_path / 'nas.db'}"}


def cli(env: dict[str, str], *args: str, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


def request(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers),
                                    timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_answers_and_a_worker_runs_what_it_queued(env, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "nanosd_nas", "serve", "--port", str(port), "--token", "t0k"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, studies = request(f"{base}/api/studies")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the server did not answer in 120 s"
                time.sleep(0.5)
        assert (status, studies) == (200, [])
        assert request(f"{base}/api/studies", QUICK)[0] == 401  # --token guards writes
        status, created = request(f"{base}/api/studies", QUICK, token="t0k")
        assert status == 201 and created["status"] == "queued"

        worked = cli(env, "worker", "--once", "--json")
        assert worked.returncode == 0, worked.stderr
        assert json.loads(worked.stdout) == [{"study": "from-the-api", "status": "completed",
                                              "reason": None, "complete": 3}]
        status, shown = request(f"{base}/api/studies/from-the-api")
        assert shown["status"] == "completed" and shown["trials"]["complete"] == 3
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_database_that_does_not_answer_is_one_line(env):
    env = {**env, "NANOSD_NAS_DATABASE_URL":
           "postgresql+psycopg://postgres@127.0.0.1:1/nothing"}
    for args in (("serve", "--port", str(free_port())), ("worker", "--once")):
        result = cli(env, *args, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "127.0.0.1:1" in lines[0]


def test_serving_beyond_loopback_needs_a_token(env):
    env = {k: v for k, v in env.items() if k != "NANOSD_NAS_API_TOKEN"}
    result = cli(env, "serve", "--host", "0.0.0.0", "--port", str(free_port()), timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "needs --token" in lines[0]


@pytest.mark.parametrize("token", ["", " padded "])
def test_a_blank_or_padded_token_is_refused_before_binding(env, token):
    result = cli(env, "serve", "--host", "0.0.0.0", "--port", str(free_port()),
                 "--token", token, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "must be non-empty, without surrounding spaces" in lines[0]
    assert "padded" not in result.stderr  # the token itself is not repeated


def test_a_worker_with_nothing_queued_returns_at_once(env):
    result = cli(env, "worker", "--once", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
