"""Evaluating accuracy on Ray: a pool of long-lived worker actors, one evaluator each.

Accuracy evaluations are seconds long and keep large caches (teacher, calibration data, block
bank), so each worker is an actor that makes its evaluator once from the study's ``accuracy``
section and scores one candidate at a time. Ray Tune is not used: its per-trial overhead (about
2 s a trial at 2 concurrent trials, measured with Ray 2.60) would dominate. Local Ray stays on
loopback; on a cluster the workers are spread over its nodes, and each evaluation names the
node it ran on.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

#: A local single-node Ray: on 127.0.0.1 instead of the machine's outward address, and sending
#: no usage statistics to Ray's authors (each a default: a user's own setting wins).
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


#: How the error of an evaluation whose worker died begins.
WORKER_DIED = "its Ray worker died"


class RayUnavailable(ValueError):
    """A Ray cluster address that does not answer."""


def _check_address(address: str) -> None:
    """Fail in seconds, with the address in the message, when nothing listens there."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"Ray address {address!r} is not HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as error:
        raise RayUnavailable(f"Ray address {address} does not answer: {error}") from error


@contextmanager
def _sigterm_handler_kept() -> Iterator[None]:
    """Put back the process's own SIGTERM handler after ``ray.init`` (which installs an exit)
    and ``ray.shutdown`` (which leaves the signal's default, whatever Python believes): a study
    worker asked to stop (``docker compose stop``) finishes its study instead of dying."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(handler) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)


@contextmanager
def ray_session(address: str | None, *, num_cpus: int) -> Iterator[None]:
    """Ray for the duration of a run: a local instance on loopback, or ``address``'s cluster."""
    if address is None:  # read when Ray starts its node: set before anything imports ray
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        yield
        return
    with _sigterm_handler_kept():
        if address is None:
            # The environment alone leaves Ray 2.60 registering the node on the host's address;
            # the node IP keeps the GCS, raylet and workers on loopback.
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, _node_ip_address="127.0.0.1")
        else:
            _check_address(address)
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, TimeoutError) as error:
                raise RayUnavailable(f"Ray address {address} does not answer: {error}"
                                     ) from error
    try:
        yield
    finally:
        with _sigterm_handler_kept():  # ray.shutdown resets SIGTERM to its default
            ray.shutdown()


@dataclass
class Evaluation:
    """What a worker returned for one trial: objectives, or the error that failed it."""

    trial_id: int
    objectives: dict[str, float] | None = None
    details: dict[str, Any] | None = None
    error: str | None = None
    #: The worker that evaluated it, ``HOSTNAME/NODE_IP:PID`` (see :func:`worker_name`).
    node: str | None = None
    #: The worker died before answering (its process killed, its node lost): the error is
    #: the worker's, not the candidate's.
    lost: bool = False


def worker_name() -> str:
    """This process as ``HOSTNAME/NODE_IP:PID``. The Ray node's IP is in it because nodes of
    one cluster can share a hostname (containers, network namespaces) but not an IP."""
    import ray

    # The address the node registered with (what the cluster knows it by); the routing guess
    # of ray.util.get_node_ip_address() names the host's interface even for a loopback node.
    node_id = ray.get_runtime_context().get_node_id()
    address = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id),
                   ray.util.get_node_ip_address())
    return f"{socket.gethostname()}/{address}:{os.getpid()}"


class AccuracyWorker:
    """A Ray actor holding one accuracy evaluator (made on first use)."""

    def __init__(self, accuracy: dict[str, Any], home: str | None) -> None:
        if home is not None:
            os.environ["NANOSD_NAS_HOME"] = home
        self.accuracy = accuracy
        self._evaluator: Any = None
        self.node = worker_name()  # an actor never moves: named once

    def evaluate(self, trial_id: int, spec_json: str) -> Evaluation:
        node = self.node
        try:
            from nanosd_nas.search.evaluators import AccuracyConfig, make_evaluator
            from nanosd_nas.search.store import json_details
            from nanosd_nas.spaces import ArchSpec

            if self._evaluator is None:
                self._evaluator = make_evaluator(AccuracyConfig(**self.accuracy))
            result = self._evaluator.evaluate(ArchSpec.from_json(spec_json))
            # Details go back as plain JSON: an evaluator's NumPy scalar or unpicklable object
            # cannot fail the trial on its way back through Ray.
            details = json_details(result.details)
        except Exception as error:  # a failed evaluation fails its trial, with the reason
            last = traceback.extract_tb(error.__traceback__)[-1:]
            where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
            return Evaluation(trial_id, error=f"{type(error).__name__}: {error}{where}",
                              node=node)
        return Evaluation(trial_id, objectives=result.objectives, details=details, node=node)


class EvaluationPool(Protocol):
    """Where a runner sends trials to be evaluated: :class:`WorkerPool` (Ray) or
    :class:`SequentialPool` (nothing to evaluate away from the runner)."""

    @property
    def free(self) -> int:
        """How many more trials it takes now."""

    def submit(self, trial_id: int, spec_json: str) -> None:
        """Start evaluating a trial (only while :attr:`free`)."""

    def collect(self, timeout: float) -> list[Evaluation]:
        """Evaluations finished within ``timeout`` seconds."""


class SequentialPool:
    """One trial at a time, evaluated by nobody: a study whose values all come from the runner
    (sizes, latency) runs its trials through this pool, with the loop a Ray pool gets.

    Each submitted trial comes back from the next :meth:`collect` at once, with no objectives
    and no worker: the runner computes its values and it stays the runner's trial.
    """

    def __init__(self) -> None:
        self._pending: int | None = None

    @property
    def free(self) -> int:
        return int(self._pending is None)

    @property
    def busy(self) -> int:
        return int(self._pending is not None)

    def submit(self, trial_id: int, spec_json: str) -> None:
        if self._pending is not None:
            raise RuntimeError(f"trial {self._pending} is still pending; collect it first")
        self._pending = trial_id

    def collect(self, timeout: float) -> list[Evaluation]:
        """The submitted trial, at once (``timeout`` is not waited)."""
        if self._pending is None:
            return []
        trial_id, self._pending = self._pending, None
        return [Evaluation(trial_id)]


class WorkerPool:
    """``size`` accuracy workers; submit trials, collect what finished.

    The workers are spread over the cluster's nodes (Ray's ``SPREAD``) rather than packed onto
    the first node with room, so that a cluster's evaluations use all of its nodes. A worker
    that dies (its process killed, its node lost) gives back an evaluation marked ``lost``,
    with the reason, and is replaced.
    """

    def __init__(self, size: int, accuracy: dict[str, Any], home: str | None) -> None:
        import ray

        self._ray = ray
        self._remote = ray.remote(num_cpus=1, max_restarts=0,
                                  scheduling_strategy="SPREAD")(AccuracyWorker)
        self._args = (accuracy, home)
        self._idle = [self._remote.remote(*self._args) for _ in range(size)]
        self._pending: dict[Any, tuple[Any, int]] = {}

    @property
    def free(self) -> int:
        return len(self._idle)

    @property
    def busy(self) -> int:
        return len(self._pending)

    def submit(self, trial_id: int, spec_json: str) -> None:
        actor = self._idle.pop()
        self._pending[actor.evaluate.remote(trial_id, spec_json)] = (  # type: ignore[attr-defined]
            actor, trial_id)

    def collect(self, timeout: float) -> list[Evaluation]:
        """Evaluations finished within ``timeout`` seconds (at least one if any is pending and
        finishes in time)."""
        if not self._pending:
            return []
        ready, _ = self._ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        done = []
        for ref in ready:
            actor, trial_id = self._pending.pop(ref)
            try:
                done.append(self._ray.get(ref))
                self._idle.append(actor)
            except self._ray.exceptions.RayError as error:
                exceptions = self._ray.exceptions
                lost = isinstance(error, exceptions.RayActorError | exceptions.WorkerCrashedError
                                  | exceptions.NodeDiedError | exceptions.LocalRayletDiedError)
                reason = " ".join(str(error).split())[:300] or type(error).__name__
                what = WORKER_DIED if lost else "Ray failed the evaluation"
                done.append(Evaluation(trial_id, error=f"{what} ({type(error).__name__}: "
                                                       f"{reason})", lost=lost))
                # An unavailable actor may still hold its CPU: kill it before replacing it.
                self._ray.kill(actor, no_restart=True)
                self._idle.append(self._remote.remote(*self._args))
        return done
