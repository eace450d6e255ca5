"""``study rescore`` refuses, in one line and exit code 2, what it cannot rescore: an unknown
study or device, a study that runs or never ran, the study's own device, a study without a
latency objective, a study without complete trials; and writes nothing. (A rescoring that
succeeds, from the command line too: ``tests/search/test_rescore.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanosd_nas.latency_models import BUILTIN_DEVICES, Device, DeviceRegistry, Protocol
from nanosd_nas.search.store import Store

OTHER = "two-threads"
LATENCY = [{"name": "latency_ms", "direction": "minimize"},
           {"name": "params_m", "direction": "minimize"}]


def study(name: str, objectives: list[dict] = LATENCY) -> dict:
    return {"name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
            "objectives": objectives, "sampler": "random", "n_trials": 2}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    DeviceRegistry(home=home).add(Device(name=OTHER, kind="local",
                                         protocol=Protocol(threads=2)))
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with Store.open(url, upgrade=True) as store:
        store.upsert_device(BUILTIN_DEVICES[0])
        for name, status in (("running", "running"), ("stopping", "stopping"),
                             ("never-run", "created"), ("empty", "completed")):
            store.create_study(name, study(name), device="local-cpu")
            if status != "created":
                store.set_study_status(name, status)
        store.create_study("sizes", study("sizes", LATENCY[1:]), device="local-cpu")
        store.set_study_status("sizes", "completed")
    return {**os.environ, "NANOSD_NAS_HOME": str(home), "NANOSD_NAS_DATABASE_URL": url}


def rescore(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanosd_nas", "study", "rescore", *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.parametrize(("name", "device", "fragments"), [
    ("no-such-study", OTHER, ("study 'no-such-study' does not exist",)),
    ("empty", "no-such-device", ("device 'no-such-device' is not registered", OTHER)),
    ("running", OTHER, ("study 'running' is running", "once its run has finished")),
    ("stopping", OTHER, ("study 'stopping' is stopping",)),
    ("never-run", OTHER, ("study 'never-run' has not run yet (created)",
                          "nanosd-nas study run never-run")),
    ("empty", "local-cpu", ("device 'local-cpu' is the device study 'empty' ran on",)),
    ("sizes", OTHER, ("study 'sizes' has no latency objective or constraint",)),
    ("empty", OTHER, ("study 'empty' has no complete trial to rescore",)),
])
def test_what_cannot_be_rescored_is_one_line_and_writes_nothing(env, name, device, fragments):
    result = rescore(env, name, "--device", device)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""
    with Store.open(env["NANOSD_NAS_DATABASE_URL"]) as store:
        for stored in store.list_studies():
            assert store.rescored_values(stored.name) == []
        assert [d.name for d in store.list_devices()] == ["local-cpu"]


def test_rescore_is_listed_with_its_options(env):
    result = subprocess.run([sys.executable, "-m", "nanosd_nas", "study", "rescore", "--help"],
                            capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0
    for option in ("--device", "--measure", "--db", "--json"):
        assert option in result.stdout
