"""A study on a real two-node Ray cluster: a head node and a second node, each in a network
namespace of its own that the test creates, joined by a veth pair whose two addresses exist only
inside those namespaces. ``study run --ray-address`` runs inside the head's namespace, so every
Ray process and the study's driver reach each other through the namespaced addresses only:
neither namespace has a route out, nothing listens on or talks to the machine's real addresses.
The cluster has a token of its own (Ray's token authentication): a driver without it is refused.

Needs root (``ip netns``); skipped otherwise. Every namespace, process and folder it made is
removed at the end, passed or not. ``ray stop`` is not used for that: it kills every Ray process
of the machine by name, including those of other tests; the processes of the test's namespaces
(``ip netns pids``) are exactly the cluster's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from netns_support import (
    checked_ip,
    ip,
    remove_namespace,
    routes_and_addresses,
    skip_without_namespaces,
)

from nanosd_nas.search.store import Store

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "tests" / "search"  # evaluator_plugin, imported by the Ray workers
VENV_BIN = ROOT / ".venv" / "bin"
RAY, NANOSD_NAS = str(VENV_BIN / "ray"), str(VENV_BIN / "nanosd-nas")
#: The head's GCS port: not Ray's default 6379, which Redis holds on this machine (the head's
#: namespace has ports of its own, but the port is given as it must be outside a namespace).
PORT = 6390
TRIALS = 8
#: Logical CPUs per node: more than the study's two workers need on one node, so that the
#: workers land on both nodes only because the pool spreads them (``SPREAD``), not for want of
#: room on the head.
CPUS_PER_NODE = 4

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    """A running two-node cluster: its namespaces, addresses and the environment to reach it."""

    head_ns: str
    node_ns: str
    head_ip: str
    node_ip: str
    env: dict[str, str]

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{PORT}"

    def run(self, ns: str, *command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """``command`` inside namespace ``ns`` with the cluster's environment."""
        return subprocess.run(["ip", "netns", "exec", ns, *command], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)


def _ray_env(home: Path) -> dict[str, str]:
    """The environment of every cluster process: a token of this test's own (Ray 2.60 turns
    token authentication on by default; the nodes and the driver must share one), the plugin
    evaluators importable, nothing that would point Ray elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_") and k != "PYTHONPATH"}
    env.update({
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join([str(PLUGINS), *filter(None, [
            os.environ.get("PYTHONPATH")])]),
        "NANOSD_NAS_HOME": str(home),
    })
    return env


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    skip_without_namespaces()
    tag = secrets.token_hex(3)
    head_ns, node_ns = f"nas-test-{tag}-head", f"nas-test-{tag}-node"
    subnet = f"10.213.{secrets.randbelow(256)}"
    head_ip, node_ip = f"{subnet}.1", f"{subnet}.2"
    # Ray's socket paths must stay under 108 bytes: a short folder, not tmp_path.
    temp = Path(tempfile.mkdtemp(prefix=f"nas-ray-{tag}-"))
    made: list[str] = []
    try:
        added = ip("netns", "add", head_ns)
        if added.returncode != 0:
            pytest.skip(f"ip netns add is not available here: {added.stderr.strip()}")
        made.append(head_ns)
        checked_ip("netns", "add", node_ns)
        made.append(node_ns)
        # The pair is made inside the head's namespace with its peer in the node's: it never
        # exists in the machine's own namespace, so neither end can reach a real address.
        checked_ip("-n", head_ns, "link", "add", "veth0", "type", "veth", "peer", "name",
                    "veth1", "netns", node_ns)
        for ns, dev, address in ((head_ns, "veth0", head_ip), (node_ns, "veth1", node_ip)):
            checked_ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            checked_ip("-n", ns, "link", "set", dev, "up")
            checked_ip("-n", ns, "link", "set", "lo", "up")
        made_cluster = Cluster(head_ns, node_ns, head_ip, node_ip, _ray_env(tmp_path / "home"))

        common = ["--num-cpus", str(CPUS_PER_NODE), "--disable-usage-stats"]
        head = made_cluster.run(
            head_ns, RAY, "start", "--head", "--port", str(PORT), "--node-ip-address", head_ip,
            "--include-dashboard=false", "--temp-dir", str(temp / "head"), *common, timeout=120)
        assert head.returncode == 0, head.stdout + head.stderr
        node = made_cluster.run(
            node_ns, RAY, "start", "--address", made_cluster.address, "--node-ip-address", node_ip,
            "--temp-dir", str(temp / "node"), *common, timeout=120)
        assert node.returncode == 0, node.stdout + node.stderr
        yield made_cluster
    finally:
        for ns in reversed(made):
            remove_namespace(ns)
        shutil.rmtree(temp, ignore_errors=True)
        leftover = [ns for ns in made if ns in ip("netns", "list").stdout]
        assert not leftover, f"namespaces left behind: {leftover}"


def test_a_study_on_a_two_node_cluster_evaluates_trials_on_both_nodes(cluster, tmp_path):
    # The namespaces reach nothing but each other: no default route, no address but their own.
    for ns, address in ((cluster.head_ns, cluster.head_ip), (cluster.node_ns, cluster.node_ip)):
        routes, addresses = routes_and_addresses(ns)
        assert "default" not in routes and addresses == {"127.0.0.1", address}, \
            (routes, addresses)

    db = f"sqlite:///{tmp_path / 'cluster.db'}"
    study = {
        "name": "on-a-cluster", "space": "nanosd", "scale": "mini", "device": "local-cpu",
        "objectives": [{"name": "fidelity", "direction": "maximize"},
                       {"name": "params_m", "direction": "minimize"}],
        "sampler": "random", "n_trials": TRIALS, "parallelism": 2, "seed": 0,
        "accuracy": {"evaluator": "evaluator_plugin:transformer_share"},
    }
    (tmp_path / "study.json").write_text(json.dumps(study))
    created = subprocess.run([NANOSD_NAS, "study", "create", str(tmp_path / "study.json"),
                              "--db", db], env=cluster.env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert created.returncode == 0, created.stdout + created.stderr

    # The cluster takes no driver without its token: a run without one fails, naming the address.
    tokenless = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH")}
    refused = subprocess.run(
        ["ip", "netns", "exec", cluster.head_ns, NANOSD_NAS, "study", "run", study["name"],
         "--db", db, "--ray-address", cluster.address],
        env={**tokenless, "HOME": str(tmp_path)},  # no ~/.ray/auth_token either
        capture_output=True, text=True, timeout=180, check=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "InvalidAuthToken" in said, said[-3000:]
    assert f"Ray address {cluster.address} does not answer" in said, said[-3000:]

    ran = cluster.run(cluster.head_ns, NANOSD_NAS, "study", "run", study["name"], "--db", db,
                      "--ray-address", cluster.address, "--json", timeout=300)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert json.loads(ran.stdout)["complete"] == TRIALS

    with Store.open(db) as store:
        assert store.get_study(study["name"]).status == "completed"
        trials = store.list_trials(study["name"])
    assert [t.state for t in trials] == ["complete"] * TRIALS
    # worker is HOST/NODE_IP:PID of the Ray worker that evaluated the trial.
    nodes = {str(t.worker).split("/")[-1].rsplit(":", 1)[0] for t in trials}
    assert nodes == {cluster.head_ip, cluster.node_ip}, [t.worker for t in trials]
