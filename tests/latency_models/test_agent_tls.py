"""The device agent over HTTPS: a client that trusts the agent's certificate (named by
``NANOSD_NAS_AGENT_CA_FILE``) measures through it, one that does not is refused, a client that
never finishes its handshake holds up nobody, and certificate files that do not load are one
line before the agent listens."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_support import ROOT, TOKEN, tiny_onnx

from nanosd_nas.latency_models import DeviceUnreachable, Protocol, RemoteProfiler
from nanosd_nas.latency_models.agent import (
    CA_FILE_ENV,
    AgentClient,
    AgentServer,
    make_server,
    tls_context,
)


@pytest.fixture
def tls_agent(self_signed: tuple[Path, Path]) -> Iterator[tuple[AgentServer, Path]]:
    cert, key = self_signed
    agent = make_server("127.0.0.1", 0, token=TOKEN, tls=tls_context(cert, key))
    thread = threading.Thread(target=agent.serve_forever, daemon=True)
    thread.start()
    yield agent, cert
    agent.shutdown()
    agent.server_close()


def test_an_https_agent_measures_for_a_client_that_trusts_its_certificate(
        tls_agent, monkeypatch):
    agent, cert = tls_agent
    assert agent.url.startswith("https://127.0.0.1:")
    with socket.create_connection(agent.server_address[:2]):  # connects, never shakes hands
        monkeypatch.setenv(CA_FILE_ENV, str(cert))
        profiler = RemoteProfiler(url=agent.url, token=TOKEN, protocol=Protocol(runs=2),
                                  timeout=30)
        assert profiler.info()["api"] == "v1"
        assert profiler.measure_onnx(tiny_onnx()).n == 2
    monkeypatch.delenv(CA_FILE_ENV)
    with pytest.raises(DeviceUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        AgentClient(url=agent.url, token=TOKEN).info()
    plain = agent.url.replace("https://", "http://")
    with pytest.raises(DeviceUnreachable):
        AgentClient(url=plain, token=TOKEN, timeout=10).info()
    assert AgentClient(url=agent.url, token=TOKEN, ca_file=cert).info()["api"] == "v1"
    with pytest.raises(ValueError, match="cannot load the agent's CA file"):
        AgentClient(url=agent.url, token=TOKEN, ca_file=cert.with_name("missing.pem"))


def test_tls_files_that_do_not_load_are_one_line_before_listening(tmp_path, self_signed):
    cert, _ = self_signed
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "agent", "--port", "0", "--token", TOKEN,
         "--tls-cert", str(cert), "--tls-key", str(tmp_path / "missing.pem")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: cannot load the TLS certificate {cert} with the "
                                     f"key {tmp_path / 'missing.pem'}: No such file or "
                                     "directory")
    assert "listening" not in result.stdout
