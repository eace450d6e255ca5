"""docker-compose.yml run as processes, without a Docker engine: each service in a network
namespace of its own on a private LAN whose ``/etc/hosts`` names the services (what a Compose
network gives them) and in a PID namespace of its own, where its command is PID 1 (as in a
container: Ray finds a node to attach a driver to among the processes it sees), each running
the command the file gives it, with the file's environment and its variables interpolated as
Compose does. The one difference: the services share a SQLite file (on the shared filesystem)
instead of the ``postgres`` service.

A queued study runs on the study worker, whose namespace has no Ray until its command joins
the cluster; its trials are evaluated on the Ray nodes, never on the study worker's own node,
the API shows it completed, and the worker's node ends with the worker. (The study is queued
in the database, as ``POST /api/studies`` queues one: the API takes built-in evaluators only,
which need a block bank, and the study's evaluator is a cheap plugin.)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from compose_support import COMPOSE, interpolate
from netns_support import namespaces_on_a_lan, pids

from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search.store import Store

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "tests" / "search"  # evaluator_plugin, imported by the Ray workers
VENV_BIN = ROOT / ".venv" / "bin"
SERVICES = ("ray-head", "ray-worker", "api", "study-worker")
TRIALS = 6
#: What makes a service's command PID 1 of a PID namespace of its own, as in a container.
CONTAINED = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")

pytestmark = pytest.mark.slow

#: An API client for the api service's namespace: METHOD PATH [BODY] -> {"status", "body"}.
CLIENT = """
import json, os, sys, urllib.error, urllib.request
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
request = urllib.request.Request(
    "http://127.0.0.1:8000" + sys.argv[2], data=body, method=sys.argv[1],
    headers={"Authorization": "Bearer " + os.environ["NANOSD_NAS_API_TOKEN"],
             "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=30) as answer:
        status, text = answer.status, answer.read()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read()
print(json.dumps({"status": status, "body": json.loads(text)}))
"""


@dataclass
class Topology:
    """The running services: their namespaces and addresses, and how to run a command as one."""

    compose: dict
    hosts: dict[str, tuple[str, str]]
    folder: Path
    ray_temp: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, service: str) -> dict[str, str]:
        """``service``'s environment from the file, with the shared SQLite database and a
        project home of the test's; the project's commands and the plugins found as in the
        image; Ray's files in the test's folder (a short one: Ray's socket paths are)."""
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("RAY_", "NANOSD_NAS_")) and k != "PYTHONPATH"}
        declared = {k: str(v) for k, v in self.compose["services"][service]["environment"].items()}
        assert declared.pop("NANOSD_NAS_DATABASE_URL").startswith("postgresql+psycopg://")
        return {**base, **declared, "NANOSD_NAS_DATABASE_URL": self.database_url,
                "NANOSD_NAS_HOME": str(self.folder / "home"), "RAY_TMPDIR": str(self.ray_temp),
                "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(PLUGINS),
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.folder / 'nanosd-nas.db'}"

    def command(self, service: str) -> list[str]:
        command: list[str] = self.compose["services"][service]["command"]
        return command

    def start(self, service: str) -> None:
        """Start ``service``'s command in its namespaces, its output in ``SERVICE.log``."""
        with (self.folder / f"{service}.log").open("wb") as log:
            self.processes[service] = subprocess.Popen(
                ["ip", "netns", "exec", self.hosts[service][0], *CONTAINED,
                 *self.command(service)],
                env=self.env(service), stdout=log, stderr=subprocess.STDOUT)

    def stop(self, service: str, timeout: float) -> int:
        """``docker compose stop``: SIGTERM to the service's PID 1; its exit status."""
        ns, started = self.hosts[service][0], self.processes[service]
        first = next(pid for pid in pids(ns) if _parent(pid) == started.pid)
        os.kill(first, signal.SIGTERM)
        return started.wait(timeout)

    def run(self, service: str, *command: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.hosts[service][0], *command],
                              env=self.env(service), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def log(self, service: str) -> str:
        path = self.folder / f"{service}.log"
        return f"--- {service}:\n" + (path.read_text(errors="replace")[-3000:]
                                     if path.exists() else "")

    def wait_healthy(self, service: str, timeout: float) -> None:
        """Run ``service``'s healthcheck from the file until it passes."""
        test = self.compose["services"][service]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        deadline = time.monotonic() + timeout
        while True:
            checked = self.run(service, *test[1:], timeout=60)
            if checked.returncode == 0:
                return
            assert time.monotonic() < deadline and self.processes[service].poll() is None, \
                checked.stdout[-1500:] + checked.stderr[-1500:] + self.log(service)
            time.sleep(2)

    def api(self, method: str, path: str, body: str | None = None) -> dict:
        done = self.run("api", "python", "-c", CLIENT, method, path,
                        *([body] if body is not None else []), timeout=60)
        assert done.returncode == 0, done.stderr[-3000:]
        answer: dict = json.loads(done.stdout)
        return answer


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    if shutil.which("unshare") is None:
        pytest.skip("util-linux's 'unshare' is not installed")
    variables = {"RAY_AUTH_TOKEN": secrets.token_hex(24),
                 "NANOSD_NAS_API_TOKEN": secrets.token_hex(24)}
    compose = yaml.safe_load(interpolate(COMPOSE.read_text(), variables))
    ray_temp = Path(tempfile.mkdtemp(prefix="nas-"))
    try:
        with namespaces_on_a_lan(list(SERVICES)) as hosts:
            made = Topology(compose, hosts, tmp_path, ray_temp)
            try:
                yield made
            finally:  # the namespaces' removal ended them: collect their exit statuses
                for process in made.processes.values():
                    if process.poll() is None:
                        process.kill()
                    process.wait(30)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):  # ended meanwhile
        return None


def _in_namespace(ns: str) -> list[str]:
    """The command lines of the processes in ``ns``."""
    lines = []
    for pid in pids(ns):
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # ended meanwhile
            continue
    return lines


def test_a_study_submitted_to_the_compose_topology_runs_on_its_ray_nodes(topology):
    migrated = topology.run("api", *topology.command("migrate"))
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    topology.start("ray-head")
    topology.wait_healthy("ray-head", timeout=90)
    topology.start("ray-worker")
    topology.start("api")
    topology.wait_healthy("api", timeout=60)

    worker_ns = topology.hosts["study-worker"][0]
    assert _in_namespace(worker_ns) == []  # no Ray node there until the worker joins one
    topology.start("study-worker")

    study = {"name": "on-compose", "space": "nanosd", "scale": "mini", "device": "local-cpu",
             "objectives": [{"name": "fidelity", "direction": "maximize"},
                            {"name": "params_m", "direction": "minimize"}],
             "sampler": "random", "n_trials": TRIALS, "parallelism": 2, "seed": 0,
             "accuracy": {"evaluator": "evaluator_plugin:transformer_share"}}
    with Store.open(topology.database_url) as store:
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        store.create_study(study["name"], study, device="local-cpu", queued=True)
    deadline = time.monotonic() + 150
    while (shown := topology.api("GET", "/api/studies/on-compose"))["body"]["status"] in (
            "queued", "running") and time.monotonic() < deadline:
        time.sleep(2)
    logs = "".join(topology.log(s) for s in SERVICES)
    assert shown["body"]["status"] == "completed", (shown, logs)
    assert any("raylet" in line for line in _in_namespace(worker_ns)), logs

    with Store.open(topology.database_url) as store:
        trials = store.list_trials("on-compose")
    assert [t.state for t in trials] == ["complete"] * TRIALS
    # worker is HOST/NODE_IP:PID of the Ray worker that evaluated the trial.
    nodes = {str(t.worker).split("/")[-1].rsplit(":", 1)[0] for t in trials}
    ray_worker_ip, study_worker_ip = (topology.hosts[s][1] for s in ("ray-worker",
                                                                     "study-worker"))
    assert ray_worker_ip in nodes and study_worker_ip not in nodes, (nodes, logs)

    # SIGTERM (docker compose stop) ends the worker, and its Ray node with it.
    assert topology.stop("study-worker", timeout=60) == 0, topology.log("study-worker")
    deadline = time.monotonic() + 30
    while _in_namespace(worker_ns) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _in_namespace(worker_ns) == [], topology.log("study-worker")
