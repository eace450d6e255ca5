"""Network namespaces for the deployment tests: made with ``ip netns``, each process of a test
runs in one (``ip netns exec``), and everything is removed at the end, passed or not.

A namespace's processes are exactly ``ip netns pids`` of it: ending those ends what the test
started there and nothing else (``ray stop`` would kill every Ray process of the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where ``ip netns exec NS`` finds files it mounts over /etc for NS (``hosts``).
NETNS_ETC = Path("/etc/netns")


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False)


def checked_ip(*args: str) -> None:
    done = ip(*args)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


def pids(ns: str) -> list[int]:
    return [int(pid) for pid in ip("netns", "pids", ns).stdout.split()]


def remove_namespace(ns: str) -> None:
    """End every process in ``ns`` (TERM, then KILL after 5 s) and delete it."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in pids(ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids(ns) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not pids(ns):
            break
    ip("netns", "delete", ns)


def routes_and_addresses(ns: str) -> tuple[list[str], set[str]]:
    """The unicast routes (destinations) and IPv4 addresses of ``ns``."""
    routes = ip("-n", ns, "-j", "route", "show", "table", "all").stdout
    addresses = json.loads(ip("-n", ns, "-j", "addr", "show").stdout)
    return ([r["dst"] for r in json.loads(routes) if r.get("type", "unicast") == "unicast"],
            {a["local"] for link in addresses for a in link["addr_info"]
             if a["family"] == "inet"})


def skip_without_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's 'ip' is not installed")


@contextlib.contextmanager
def namespaces_on_a_lan(hosts: list[str]) -> Iterator[dict[str, tuple[str, str]]]:
    """One namespace per name of ``hosts``, each with an address on a private LAN (a bridge in
    a namespace of its own, so that the LAN never touches the machine's own network) and an
    ``/etc/hosts`` that names every other: what a Compose network gives its services.

    Yields:
        ``{host: (namespace, address)}``.
    """
    skip_without_namespaces()
    tag = secrets.token_hex(3)
    subnet = f"10.214.{secrets.randbelow(256)}"
    lan = f"nas-{tag}-lan"
    named = {host: (f"nas-{tag}-{host}", f"{subnet}.{i}") for i, host in enumerate(hosts, 2)}
    made: list[str] = []
    try:
        added = ip("netns", "add", lan)
        if added.returncode != 0:
            pytest.skip(f"ip netns add is not available here: {added.stderr.strip()}")
        made.append(lan)
        checked_ip("-n", lan, "link", "add", "br0", "type", "bridge")
        checked_ip("-n", lan, "link", "set", "br0", "up")
        table = "127.0.0.1 localhost\n" + "".join(f"{a} {h}\n" for h, (_, a) in named.items())
        for i, (ns, address) in enumerate(named.values()):
            checked_ip("netns", "add", ns)
            made.append(ns)
            port = f"port{i}"
            checked_ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                       "netns", ns)
            checked_ip("-n", lan, "link", "set", port, "master", "br0")
            checked_ip("-n", lan, "link", "set", port, "up")
            checked_ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            checked_ip("-n", ns, "link", "set", "eth0", "up")
            checked_ip("-n", ns, "link", "set", "lo", "up")
            (NETNS_ETC / ns).mkdir(parents=True)
            (NETNS_ETC / ns / "hosts").write_text(table)
        yield named
    finally:
        for ns in reversed(made):
            remove_namespace(ns)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        with contextlib.suppress(OSError):
            NETNS_ETC.rmdir()  # only if no other namespace has files there
        leftover = [ns for ns in made if ns in ip("netns", "list").stdout]
        assert not leftover, f"namespaces left behind: {leftover}"
