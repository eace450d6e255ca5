"""A study file with only ``name`` and ``space`` runs to completion on its defaults.

The failure this guards against: defaults that conflict (a full-size scale with the mini
teacher) were accepted at ``study create`` and every trial failed hours later. Nothing here is
shrunk: the default calibration plan, block bank, trial budget and front verification all run,
from an empty project home, as a user's first study would (about 20 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


@pytest.mark.slow
def test_a_study_of_only_name_and_space_runs_to_completion(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("NANOSD_NAS_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # an empty home: nothing reused
    study = tmp_path / "minimal.yaml"
    study.write_text("name: minimal\nspace: nanosd\n")

    created = _cli(env, "study", "create", str(study), "--json", timeout=120)
    assert created.returncode == 0, created.stderr
    config = json.loads(created.stdout)["config"]
    assert (config["space"], config["scale"]) == ("nanosd", "mini")  # the teacher's scale

    ran = _cli(env, "study", "run", "minimal", "--json", timeout=3600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    shown = _cli(env, "study", "show", "minimal", "--json", timeout=120)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["status"] == "completed", summary
    counts = summary["trials"]
    assert counts == {"complete": config["n_trials"], "failed": 0, "running": 0}, counts
    # The default verifies the front on the device: every member of the final front measured.
    front = _cli(env, "study", "front", "minimal", "--json", timeout=120)
    assert front.returncode == 0, front.stderr
    members = json.loads(front.stdout)["front"]
    assert members
    assert all(m["objectives"]["latency_ms"]["provenance"] == "measured" for m in members), \
        members
