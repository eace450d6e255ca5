"""``nanosd-nas worker --join-ray``: a Ray node of the worker's own, joined to a cluster, that
the worker's studies attach to the cluster through.

Ray 2.60 attaches a driver to a cluster through a node it finds among the processes it can see:
a worker in a container (its own process namespace, no Ray node in it) cannot use the head's
address alone, and gives up with "does not answer".
The node is ``ray start --address HEAD --num-cpus 0 --block`` (Ray's own way to join a cluster),
a child of the worker in a session of its own: it takes no evaluation (no CPUs), a signal meant
for the worker does not reach it, and it ends with the worker.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

from nanosd_nas.cli._output import UserError, err_console

#: What ``ray start`` prints once its node has joined the cluster.
STARTED = "Ray runtime started"
#: Seconds to wait for the node to join, and for it to stop at the end.
JOIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


class RayNode:
    """The running ``ray start --block`` of :func:`joined_ray_node`."""

    def __init__(self, address: str, process: subprocess.Popen[str]) -> None:
        self.address, self.process = address, process
        self.said: collections.deque[str] = collections.deque(maxlen=20)
        self.started = threading.Event()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def last_words(self) -> str:
        """The last line ``ray start`` printed that says something (its error, usually)."""
        lines = [line for line in self.said if line.strip(" -")]
        return lines[-1] if lines else f"ray start exited with {self.process.returncode}"

    def _read(self) -> None:
        """Keep what ``ray start`` prints until its node is up; pass the rest on to stderr
        (a node process that dies says so there)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip()
            self.said.append(line)
            if self.started.is_set():
                err_console.print(f"ray node: {line}", markup=False, highlight=False)
            elif STARTED in line:
                self.started.set()
        self.started.set()  # it ended: whoever waits looks at alive


def _answers(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--join-ray {address!r} is not HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as error:
        raise UserError(f"Ray address {address} does not answer: {error}") from None


@contextlib.contextmanager
def joined_ray_node(address: str, *, timeout_s: float = JOIN_TIMEOUT_S) -> Iterator[RayNode]:
    """A Ray node on this machine joined to the cluster at ``address`` (the head's GCS,
    ``HOST:PORT``), from its start until the block ends; a driver here then reaches the cluster
    with ``ray.init(address=address)``. The cluster's token comes from the environment
    (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN``), as for every node.

    Raises:
        UserError: nothing answers at ``address``, or the node did not join (Ray's reason).
    """
    _answers(address)
    process = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--address", address,
         "--num-cpus", "0", "--disable-usage-stats", "--block"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        start_new_session=True)
    node = RayNode(address, process)
    threading.Thread(target=node._read, name="ray-node-output", daemon=True).start()
    try:
        if not node.started.wait(timeout_s):
            raise UserError(f"the Ray node did not join {address} in {timeout_s:.0f} s: "
                            f"{node.last_words()}")
        if not node.alive:
            raise UserError(f"the Ray node could not join {address}: {node.last_words()}")
        err_console.print(f"worker: joined the Ray cluster at {address} with a node of its own")
        yield node
    finally:
        process.terminate()  # ray start --block stops its node's processes on SIGTERM
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ray_node_for(address: str | None) -> contextlib.AbstractContextManager[RayNode | None]:
    """:func:`joined_ray_node` for ``--join-ray ADDRESS``; nothing when it is not given."""
    return contextlib.nullcontext() if address is None else joined_ray_node(address)


def check_node(node: RayNode | None) -> None:
    """Raise when the worker's own node stopped under it (its studies could not reach Ray).

    Raises:
        UserError: it stopped, with what Ray said last.
    """
    if node is not None and not node.alive:
        raise UserError(f"the worker's Ray node stopped: {node.last_words()}")
