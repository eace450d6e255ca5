"""Faults under a running study, on the real PostgreSQL server: a Ray worker killed during an
evaluation, the database server restarted mid-run, the remote device agent killed during a
measurement. Each time the study ends with its exact trial budget, every failed trial says why,
and nothing half-written is left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import optuna
import psycopg
import pytest

from nanosd_nas.latency_models import Device, DeviceRegistry, Protocol
from nanosd_nas.search import StudyRunner, pareto_mask
from nanosd_nas.search.run import DeviceLost, asked_again
from nanosd_nas.search.store import Store, TrialRecord

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])  # Ray workers import plugins
COMPLETE = optuna.trial.TrialState.COMPLETE


def document(name: str, trials: int, **extra: object) -> dict:
    return {"name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
            "objectives": [{"name": "params_m", "direction": "minimize"},
                           {"name": "macs_g", "direction": "minimize"}],
            "sampler": "random", "n_trials": trials, "seed": 0, **extra}


def create(store: Store, study: dict, device: str = "local-cpu",
           registry: DeviceRegistry | None = None) -> None:
    store.upsert_device((registry or DeviceRegistry()).get(device))
    store.create_study(study["name"], study, device=device)


def assert_settled(store: Store, name: str, url: str, trials: int) -> list[TrialRecord]:
    """Exactly ``trials`` complete trials, each once in the store and in Optuna; every failed
    trial asked again and saying why; nothing left running; the stored front recomputed."""
    stored = store.list_trials(name)
    complete = [t for t in stored if t.state == "complete"]
    assert len(complete) == trials
    assert not [t for t in stored if t.state == "running"]
    assert all(asked_again(t.fail_reason) for t in stored if t.state == "failed")
    numbers = [t.optuna_trial_number for t in stored]
    assert len(set(numbers)) == len(numbers)
    loaded = optuna.load_study(study_name=name, storage=url)
    by_number = {t.number: t for t in loaded.get_trials(states=(COMPLETE,))}
    assert sorted(by_number) == sorted(t.optuna_trial_number for t in complete)
    objectives = store.get_study(name).config["objectives"]
    names = [o["name"] for o in objectives]
    for trial in complete:
        assert by_number[trial.optuna_trial_number].values == [trial.value(n) for n in names]
    values = np.array([[t.value(n) for n in names] for t in complete])
    mask = pareto_mask(values, [o["direction"] for o in objectives])
    assert {t.id for t in store.front(name)} == {
        t.id for t, m in zip(complete, mask, strict=True) if m}
    return stored


@pytest.mark.slow
def test_a_ray_worker_killed_mid_evaluation_fails_its_trial_which_is_asked_again(
        postgres_url, tmp_path, monkeypatch):
    marker = tmp_path / "worker.pid"
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NAS_TEST_PID_FILE", str(marker))  # Ray's workers inherit it
    study = document("worker-killed", 8, parallelism=2,
                     accuracy={"evaluator": "evaluator_plugin:announces_then_sleeps"})
    study["objectives"] = [{"name": "fidelity", "direction": "maximize"},
                           {"name": "params_m", "direction": "minimize"}]
    killed: list[int] = []

    def kill_the_first_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = marker.read_text() if marker.exists() else ""
            if text.endswith("\n"):  # the worker wrote its pid and is now mid-evaluation
                os.kill(int(text), signal.SIGKILL)
                killed.append(int(text))
                return
            time.sleep(0.05)

    with Store.open(postgres_url, upgrade=True) as store:
        create(store, study)
        killer = threading.Thread(target=kill_the_first_worker, daemon=True)
        killer.start()
        summary = StudyRunner(store, "worker-killed").run()
        killer.join(timeout=5)
        assert killed, "the evaluator never announced itself"
        trials = assert_settled(store, "worker-killed", postgres_url, 8)
        assert store.get_study("worker-killed").status == "completed"
    assert summary.complete == 8
    [failed] = [t for t in trials if t.state == "failed"]
    assert "Ray worker died" in str(failed.fail_reason)
    # Asked again: the same candidate completes in a later trial.
    again = [t for t in trials if t.state == "complete" and t.params == failed.params]
    assert again and again[0].number > failed.number


def _postgres_started_at(admin: str) -> object:
    with psycopg.connect(admin, autocommit=True) as connection:
        return connection.execute("SELECT pg_postmaster_start_time()").fetchone()[0]  # type: ignore[index]


def _local_cluster(admin: str) -> tuple[str, str]:
    """(version, name) of this machine's PostgreSQL cluster that ``admin`` talks to; the
    test is skipped when the server is not one it may restart (elsewhere, or not managed by
    pg_ctlcluster)."""
    info = psycopg.conninfo.conninfo_to_dict(admin)
    if info.get("host") not in ("127.0.0.1", "localhost") or not shutil.which("pg_lsclusters"):
        pytest.skip("the database restart test restarts a local cluster only")
    listed = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                            check=True, timeout=30).stdout.split("\n")
    for line in listed:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == str(info.get("port", 5432)):
            return fields[0], fields[1]
    pytest.skip(f"no local cluster listens on port {info.get('port', 5432)}")
    raise AssertionError("unreachable")


def _restart_postgres(cluster: tuple[str, str]) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart", "--",
                    "-m", "fast"], check=True, timeout=120, capture_output=True)


@pytest.mark.slow
@pytest.mark.restarts_postgres
def test_a_runner_rides_out_a_database_restart_and_writes_nothing_by_halves(
        postgres_url, postgres_admin, tmp_path):
    admin, _ = postgres_admin
    cluster = _local_cluster(admin)
    trials = 160
    with Store.open(postgres_url, upgrade=True) as store:
        create(store, document("restarted", trials, sampler="tpe"))
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path / "home"),
           "NANOSD_NAS_DATABASE_URL": postgres_url}
    runner = subprocess.Popen([sys.executable, "-m", "nanosd_nas", "study", "run", "restarted",
                               "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        before = _postgres_started_at(admin)
        with Store.open(postgres_url) as store:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = len(store.list_trials("restarted", state="complete"))
                if done >= 20:
                    break
                time.sleep(0.1)
        assert 20 <= done < trials and runner.poll() is None, "restart would not be mid-run"
        _restart_postgres(cluster)
        _, err = runner.communicate(timeout=600)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert _postgres_started_at(admin) != before  # the server really restarted
    assert runner.returncode == 0, err
    assert "lost the database" in err  # it noticed, waited and went on
    with Store.open(postgres_url) as store:
        assert_settled(store, "restarted", postgres_url, trials)
        assert store.get_study("restarted").status == "completed"


def _established_connections(pid: int) -> int:
    """TCP connections of process ``pid`` in state ESTABLISHED (from /proc, no extra package)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            count += fields[3] == "01" and fields[9] in inodes
    return count


@contextmanager
def agent_process(port: int, token: str) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if k != "NANOSD_NAS_AGENT_TOKEN"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nanosd_nas", "agent", "--host", "127.0.0.1", "--port",
         str(port), "--token", token], env=env, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("listening on http://")
        yield process
    finally:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_an_agent_killed_mid_measurement_fails_the_trial_and_stores_no_measurement(
        postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    port, token = free_port(), "fault-test-token"
    study = document("agent-killed", 6, device="phone",
                     latency={"source": "measured", "verify_front": False})
    study["objectives"].append({"name": "latency_ms", "direction": "minimize"})
    killed: list[bool] = []
    with Store.open(postgres_url, upgrade=True) as store:
        with agent_process(port, token) as agent:
            DeviceRegistry().add(Device(name="phone", kind="remote", protocol=Protocol(runs=50),
                                        url=f"http://127.0.0.1:{port}", token=token))
            create(store, study, "phone")

            def kill_during_a_measurement() -> None:
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    if (store.list_trials("agent-killed", state="complete")
                            and _established_connections(agent.pid)):
                        agent.kill()  # SIGKILL while it holds the runner's upload
                        killed.append(True)
                        return
                    time.sleep(0.01)

            killer = threading.Thread(target=kill_during_a_measurement, daemon=True)
            killer.start()
            with pytest.raises(DeviceLost, match="phone"):
                StudyRunner(store, "agent-killed").run()
            killer.join(timeout=5)
        assert killed, "no measurement was caught in flight"
        trials = store.list_trials("agent-killed")
        failed = [t for t in trials if t.state == "failed"]
        complete = {str(t.spec_id) for t in trials if t.state == "complete"}
        assert len(failed) == 3 and complete  # three in a row stop the run
        for trial in failed:
            assert asked_again(trial.fail_reason)
            assert "measuring it on device 'phone' failed" in str(trial.fail_reason)
        assert store.get_study("agent-killed").status == "failed"
        # Only whole measurements are stored: every component of a completed trial's model,
        # nothing of the ones cut off.
        records = store.measurements("phone", kind="model")
        assert {r.key for r in records} == complete
        assert len(records) == 3 * len(complete)

        with agent_process(port, token):  # the agent is back: the study continues
            StudyRunner(store, "agent-killed").run()
        trials = assert_settled(store, "agent-killed", postgres_url, 6)
        assert store.get_study("agent-killed").status == "completed"
        later = [t.params for t in trials if t.state == "complete"
                 and t.number > max(f.number for f in failed)]
        assert all(f.params in later for f in failed)  # each cut-off candidate asked again
        complete = {str(t.spec_id) for t in trials if t.state == "complete"}
        assert {r.key for r in store.measurements("phone", kind="model")} == complete


@pytest.mark.slow
def test_a_candidate_that_kills_every_worker_is_asked_again_twice_then_failed(
        postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    study = document("killer", 12, parallelism=1, sampler="tpe",  # 12: room for 2 corners
                     accuracy={"evaluator": "evaluator_plugin:dies_on_full_attention"})
    study["objectives"] = [{"name": "fidelity", "direction": "maximize"},
                           {"name": "params_m", "direction": "minimize"}]
    with Store.open(postgres_url, upgrade=True) as store:
        create(store, study)
        StudyRunner(store, "killer").run()  # the corners put the all-attention member second
        trials = store.list_trials("killer")
        assert store.get_study("killer").status == "completed"
    assert sum(t.state == "complete" for t in trials) == 12 - 1
    failed = [t for t in trials if t.state == "failed"]
    assert len({t.spec_id for t in failed}) == 1 and len(failed) == 3
    assert all("Ray worker died" in str(t.fail_reason) for t in failed)
    assert [asked_again(t.fail_reason) for t in failed] == [True, True, False]


class DatabaseProxy:
    """A TCP forwarder from a loopback port to the PostgreSQL server. Cutting it is the
    database going away for the clients that reach it through the proxy, and for nobody else
    (the server itself, which other tests use, stays up)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        assert self._listener is not None
        with self._lock:
            dropped, self._open = [self._listener, *self._open], []
        for connection in dropped:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                return
            server.settimeout(None)
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@pytest.mark.slow
def test_a_database_gone_past_the_reconnect_budget_ends_the_run_and_a_new_run_resumes(
        postgres_url, tmp_path, monkeypatch):
    """The database stays away longer than a run waits for it (2 s here) while a ``study run``
    process has trials in flight: the run gives up with one line naming the database, and once
    the database is back the next run settles the trials it held (failed and asked again) and
    completes the study."""
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    direct = make_url(postgres_url)
    proxy = DatabaseProxy((direct.host or "127.0.0.1", direct.port or 5432))
    proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
    trials = 6
    study = document("gone", trials, parallelism=2,
                     accuracy={"evaluator": "evaluator_plugin:slow_share"})
    study["objectives"] = [{"name": "fidelity", "direction": "maximize"},
                           {"name": "params_m", "direction": "minimize"}]
    env = {**os.environ, "NANOSD_NAS_DATABASE_URL": proxied, "NANOSD_NAS_DATABASE_WAIT_S": "2"}
    proxy.start()
    with Store.open(postgres_url, upgrade=True) as store:
        create(store, study)
        runner = subprocess.Popen([sys.executable, "-m", "nanosd_nas", "study", "run", "gone",
                                   "--json"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and runner.poll() is None:
                stored = store.list_trials("gone")
                if any(t.state == "complete" for t in stored) and any(
                        t.state == "running" for t in stored):
                    break
                time.sleep(0.02)
            proxy.cut()  # mid-trial: the runner holds trials in flight
            _, err = runner.communicate(timeout=180)
        finally:
            if runner.poll() is None:
                runner.kill()
        assert runner.returncode == 2, err
        assert "Traceback" not in err
        [gave_up] = [line for line in err.splitlines() if line.startswith("error:")]
        assert "lost the database at " in gave_up
        assert f"127.0.0.1:{proxy.port}/{direct.database}" in gave_up  # the proxy's address
        assert "did not come back within 2 s" in gave_up and "study run gone" in gave_up
        held = [t for t in store.list_trials("gone") if t.state == "running"]
        assert held and {t.worker for t in held} == {f"{socket.gethostname()}:{runner.pid}"}

    proxy.start()  # the database is back, at the same address
    with Store.open(proxied) as store:
        assert StudyRunner(store, "gone").run().complete == trials
        settled = {t.id: t for t in assert_settled(store, "gone", proxied, trials)}
        assert all(settled[t.id].state == "failed" and asked_again(settled[t.id].fail_reason)
                   for t in held)
        assert store.get_study("gone").status == "completed"
    proxy.cut()
