"""The device registry: in-process rules, and ``nanosd-nas device`` as a user meets it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from agent_support import ROOT, TOKEN, free_port, running_agent

from nanosd_nas.latency_models import (
    AgentError,
    Device,
    DeviceExists,
    DeviceNotFound,
    DeviceRegistry,
    DeviceUnreachable,
    LocalProfiler,
    Protocol,
    RemoteProfiler,
    profiler_for,
    project_home,
    write_json_atomic,
)


@pytest.fixture(scope="module")
def agent_url():
    with running_agent() as (url, _):
        yield url


@pytest.fixture
def registry(tmp_path) -> DeviceRegistry:
    return DeviceRegistry(home=tmp_path)


def stored(home) -> list[str]:
    folder = home / "devices"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- the registry -------------------------------------------------------------------------

def test_local_cpu_is_always_there_with_one_cpu_thread(registry):
    [device] = registry.devices()
    assert (device.name, device.kind, device.builtin) == ("local-cpu", "local", True)
    assert device.protocol == Protocol(threads=1, runs=60, provider="CPUExecutionProvider")
    profiler = profiler_for("local-cpu", home=registry.folder.parent)
    assert isinstance(profiler, LocalProfiler)
    assert profiler.device == "local-cpu" and profiler.protocol.threads == 1


def test_a_local_device_is_stored_listed_and_gives_its_profiler(registry, tmp_path):
    added = registry.add(Device(name="cpu-4t", kind="local", protocol=Protocol(threads=4)))
    assert added.added_at
    assert [d.name for d in registry.devices()] == ["local-cpu", "cpu-4t"]
    assert registry.get("cpu-4t") == added
    profiler = profiler_for("cpu-4t", home=tmp_path)
    assert isinstance(profiler, LocalProfiler) and profiler.protocol.threads == 4


@pytest.mark.parametrize("name", ["", "has space", "a/b", "../up", "-dash", "x" * 65, "é"])
def test_bad_device_names_are_refused(name):
    with pytest.raises(ValueError, match="device name"):
        Device(name=name, kind="local")


@pytest.mark.parametrize("name", ["local-cpu", "LOCAL-CPU", "phone", "Phone"])
def test_duplicates_are_refused_whatever_their_case(registry, name):
    registry.add(Device(name="phone", kind="local"))
    with pytest.raises(DeviceExists, match="already registered"):
        registry.add(Device(name=name, kind="local"))
    assert stored(registry.folder.parent) == ["phone.json"]


def test_an_uninstalled_provider_is_refused_and_nothing_stored(registry):
    device = Device(name="gpu", kind="local", protocol=Protocol(provider="CUDAExecutionProvider"))
    with pytest.raises(ValueError, match="'CUDAExecutionProvider' is not available on this host"):
        registry.add(device)
    assert stored(registry.folder.parent) == []


def test_unknown_devices_name_the_known_ones(registry):
    with pytest.raises(DeviceNotFound, match="'nope' is not registered; known devices: "
                                             "local-cpu"):
        profiler_for("nope", home=registry.folder.parent)


def test_a_remote_device_keeps_its_token_private(registry, agent_url, tmp_path):
    registry.add(Device(name="edge", kind="remote", url=agent_url, token=TOKEN,
                        protocol=Protocol(runs=3)))
    path = tmp_path / "devices" / "edge.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["token"] == TOKEN
    assert "token" not in registry.get("edge").describe()
    assert TOKEN not in repr(registry.get("edge"))
    profiler = profiler_for("edge", home=tmp_path)
    assert isinstance(profiler, RemoteProfiler) and profiler.url == agent_url
    assert profiler.protocol.runs == 3


def test_a_remote_device_is_checked_before_it_is_stored(registry, agent_url):
    with pytest.raises(AgentError, match="refused the token"):
        registry.add(Device(name="edge", kind="remote", url=agent_url, token="wrong"))
    with pytest.raises(DeviceUnreachable):
        registry.add(Device(name="edge", kind="remote", url=f"http://127.0.0.1:{free_port()}",
                            token=TOKEN))
    with pytest.raises(ValueError, match="not available on the agent"):
        registry.add(Device(name="edge", kind="remote", url=agent_url, token=TOKEN,
                            protocol=Protocol(provider="QNNExecutionProvider")))
    assert stored(registry.folder.parent) == []


def test_remove_forgets_a_device_but_not_the_built_in_one(registry):
    registry.add(Device(name="phone", kind="local"))
    registry.remove("phone")
    assert [d.name for d in registry.devices()] == ["local-cpu"]
    with pytest.raises(DeviceNotFound):
        registry.remove("phone")
    with pytest.raises(Exception, match="built in"):
        registry.remove("local-cpu")


def test_home_comes_from_the_environment_else_the_users_cache_whatever_the_folder(
        monkeypatch, tmp_path):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "h"))
    assert project_home() == tmp_path / "h"
    monkeypatch.delenv("NANOSD_NAS_HOME")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert project_home() == tmp_path / "cache" / "nanosd-nas"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # not absolute: ignored, as XDG says
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert project_home() == tmp_path / "user" / ".cache" / "nanosd-nas"


def test_json_files_are_replaced_whole_and_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "doc.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    with pytest.raises(FileExistsError):
        write_json_atomic(path, {"a": 3}, exclusive=True)
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})  # fails mid-serialisation
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["doc.json"]


# --- the command line ---------------------------------------------------------------------

def cli(home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanosd_nas", "device", *args],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
                          env={**os.environ, "NANOSD_NAS_HOME": str(home)})


def listed(home) -> dict[str, dict]:
    result = cli(home, "list", "--json")
    assert result.returncode == 0, result.stderr
    return {d["name"]: d for d in json.loads(result.stdout)["devices"]}


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_adds_lists_and_removes_a_local_device(tmp_path):
    assert list(listed(tmp_path)) == ["local-cpu"]
    added = cli(tmp_path, "add", "cpu-2t", "--kind", "local", "--threads", "2")
    assert added.returncode == 0, added.stderr
    devices = listed(tmp_path)
    assert devices["cpu-2t"]["protocol"]["threads"] == 2
    assert devices["cpu-2t"]["protocol"]["sessions"] == 1  # the default
    assert cli(tmp_path, "add", "three", "--kind", "local", "--sessions", "3").returncode == 0
    assert profiler_for("three", home=tmp_path).protocol.sessions == 3
    assert cli(tmp_path, "remove", "three").returncode == 0
    assert devices["local-cpu"]["builtin"] is True
    assert_refused(cli(tmp_path, "add", "cpu-2t", "--kind", "local"), "already registered")
    assert cli(tmp_path, "remove", "cpu-2t").returncode == 0
    assert list(listed(tmp_path)) == ["local-cpu"]
    assert_refused(cli(tmp_path, "remove", "cpu-2t"), "'cpu-2t' is not registered")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(["bad name", "--kind", "local"], "device name 'bad name'"),
     (["x", "--kind", "cloud"], "--kind 'cloud' is not one of 'local', 'remote', 'torch'"),
     (["x", "--kind", "local", "--provider", "NopeExecutionProvider"], "is not available"),
     (["x", "--kind", "local", "--threads", "0"], "threads=0"),
     (["x", "--kind", "local", "--sessions", "0"], "sessions=0"),
     (["x", "--kind", "remote", "--url", "http://127.0.0.1:1"], "needs --url and --token")],
)
def test_cli_refuses_bad_additions_in_one_line(tmp_path, args, fragment):
    assert_refused(cli(tmp_path, "add", *args), fragment)
    assert stored(tmp_path) == []


def test_cli_registers_a_remote_agent_only_when_it_answers_to_the_token(tmp_path, agent_url):
    dead = f"http://127.0.0.1:{free_port()}"
    assert_refused(cli(tmp_path, "add", "edge", "--kind", "remote", "--url", dead,
                       "--token", TOKEN), "unreachable", dead)
    assert_refused(cli(tmp_path, "add", "edge", "--kind", "remote", "--url", agent_url,
                       "--token", "wrong"), "refused the token", agent_url)
    assert stored(tmp_path) == []
    added = cli(tmp_path, "add", "edge", "--kind", "remote", "--url", agent_url,
                "--token", TOKEN)
    assert added.returncode == 0, added.stderr
    edge = listed(tmp_path)["edge"]
    assert (edge["kind"], edge["url"]) == ("remote", agent_url)
    assert "token" not in edge and TOKEN not in cli(tmp_path, "list").stdout
    assert stat.S_IMODE((tmp_path / "devices" / "edge.json").stat().st_mode) == 0o600


def test_cli_refuses_to_remove_the_built_in_device(tmp_path):
    assert_refused(cli(tmp_path, "remove", "local-cpu"), "built in")
