"""The main job as a user runs it: ``demo`` on embedded defaults, then ``export`` of a trial;
then the user's own first study, of only ``name`` and ``space``, in the same project home.

The user's cache is one empty folder for this module: the demo calibrates the CPU and distils
its bank into it, and the minimal study reuses that calibration (a second study of the same
space, scale and device does) while its own default bank, trial budget and front verification
all run unshrunk.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort
import optuna
import pytest
from safetensors.torch import load_file

from nanosd_nas import spaces

pytestmark = pytest.mark.slow


#: A generous bound on one command, not a speed check: the unshrunk minimal study below took
#: 1,110 s on one 2-core host and passed 1,500 s on a slower one, beside the other worker.
COMMAND_TIMEOUT_S = 2700


def run(cache: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("NANOSD_NAS_")}
    env["XDG_CACHE_HOME"] = str(cache)  # the default project home and database lie in it
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S, env=env, cwd=cwd, check=False)


@dataclass(frozen=True)
class Demo:
    cache: Path
    first: Path
    elsewhere: Path
    run: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]

    @property
    def home(self) -> Path:
        return self.cache / "nanosd-nas"

    def cli(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.cache, cwd, *args)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """``demo`` from one folder with an empty cache, then again from another folder."""
    root = tmp_path_factory.mktemp("user")
    cache, first, elsewhere = root / "cache", root / "first", root / "elsewhere"
    for folder in (cache, first, elsewhere):
        folder.mkdir()
    ran = run(cache, first, "demo", "--trials", "6", "--json")
    again = run(cache, elsewhere, "demo", "--trials", "6", "--json") if ran.returncode == 0 \
        else ran
    return Demo(cache, first, elsewhere, ran, again)


def test_demo_finds_a_front_reports_it_and_a_trial_exports(demo: Demo, tmp_path: Path) -> None:
    home, first, elsewhere = demo.home, demo.first, demo.elsewhere
    assert demo.run.returncode == 0, demo.run.stderr
    summary = json.loads(demo.run.stdout)
    assert summary["complete"] == 6 and summary["front"]
    assert summary["home"] == str(home) and summary["calibrated"]
    assert summary["bank_distilled"] == summary["bank_entries"] > 0
    # On a pipe, a line per phase as it starts and ends (a live display would show nothing).
    for phase in ("calibrate: measuring training models: started", "distilling the block "
                  "bank: done", "trials: done, 6/6", "measuring the front on the device: done"):
        assert phase in demo.run.stderr, demo.run.stderr
    # Every front member is measured (or the summary says how many are predicted); a measured
    # latency can also push a member off the front.
    assert summary["verified"] + summary["unmeasured"] >= len(summary["front"])
    for member in summary["front"]:
        latency = member["values"]["latency_ms"]
        assert latency["provenance"] in ("measured", "predicted")
        assert member["values"]["fidelity"]["provenance"] == "measured"
    assert summary["unmeasured"] == sum(m["values"]["latency_ms"]["provenance"] == "predicted"
                                        for m in summary["front"])
    assert Path(summary["report"]) == Path("nanosd-nas-demo") / "report.html"  # in the cwd
    html = (first / summary["report"]).read_text()
    assert "Pareto front" in html and "Plotly.newPlot" in html
    assert not re.search(r"<script[^>]*\bsrc=", html)  # plotly.js inlined: no CDN, no server
    # The embedded default database lies in the project home, not in the working folder.
    database = home / "nanosd-nas.db"
    assert database.is_file() and not list(first.glob("*.db"))
    # Plain Optuna (optuna-dashboard) sees the metric names, each trial's member and the
    # latencies measured on the device after the trials were told.
    loaded = optuna.load_study(study_name="demo", storage=f"sqlite:///{database}")
    assert sorted(loaded.metric_names) == ["fidelity", "latency_ms", "params_m"]
    spec_of = {t.number: t.user_attrs["nas_spec_id"] for t in loaded.trials
               if t.state == optuna.trial.TrialState.COMPLETE}
    measured = loaded.user_attrs["nas_measured_latency_ms"]
    assert len(measured) == summary["verified"]
    for member in summary["front"]:
        latency = member["values"]["latency_ms"]
        if latency["provenance"] == "measured":
            assert any(spec_of[int(n)] == member["spec_id"] and ms == pytest.approx(
                latency["value"]) for n, ms in measured.items())

    # From another folder: the same home, so calibration, bank and study are reused.
    assert demo.again.returncode == 0, demo.again.stderr
    reused = json.loads(demo.again.stdout)
    assert reused["complete"] == 6  # continues the study: nothing repeated
    assert (reused["calibrated"], reused["bank_distilled"]) == (False, 0)
    assert (elsewhere / reused["report"]).is_file()

    trials = demo.cli(elsewhere, "study", "trials", "demo", "--json")
    assert trials.returncode == 0, trials.stderr
    complete = [r for r in json.loads(trials.stdout)["trials"] if r["state"] == "complete"]
    assert len(complete) == 6
    for row in complete:
        # Every trial of the block-bank evaluator keeps its interval and breakdown, untrained 0.
        lo, hi = row["fidelity_ci95"]
        assert lo <= row["fidelity"] <= hi
        assert set(row["fidelity_by_t"]) == {"0-250", "250-500", "500-750", "750-1000"}
        assert row["untrained_parameters"] == 0

    trial = str(summary["front"][0]["number"])
    out = tmp_path / "exported"
    spec_export = demo.cli(tmp_path, "export", "demo", trial, "--format", "spec", "--out",
                           str(out / "spec"))
    assert spec_export.returncode == 0, spec_export.stderr
    spec = spaces.ArchSpec.from_file(next((out / "spec").glob("*.json")))
    assert spec.spec_id == summary["front"][0]["spec_id"]
    onnx_export = demo.cli(tmp_path, "export", "demo", trial, "--format", "onnx", "--out",
                           str(out / "onnx"), "--exporter", "torchscript")
    assert onnx_export.returncode == 0, onnx_export.stderr
    for path in (out / "onnx").glob("*.onnx"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    card = (out / "onnx" / "README.md").read_text()  # where it comes from, what it scored
    assert f"trial {trial} of study `demo`" in card and "Teacher:" in card
    assert any(f"| {kind} |" in card for kind in ("measured", "computed", "predicted"))
    weights = demo.cli(tmp_path, "export", "demo", trial, "--format", "safetensors", "--out",
                       str(out / "weights"))
    assert weights.returncode == 0, weights.stderr
    state = load_file(str(out / "weights" / "unet.safetensors"))  # diffusers' own names
    assert any(name.startswith("down_blocks.") for name in state)
    missing = demo.cli(tmp_path, "export", "demo", "999", "--format", "spec", "--out", str(out))
    assert missing.returncode == 2 and "999" in missing.stderr


def test_a_study_of_only_name_and_space_runs_to_completion_after_the_demo(demo: Demo) -> None:
    """The failure this guards against: defaults that conflict (a full-size scale with the mini
    teacher) were accepted at ``study create`` and every trial failed hours later. Nothing of the
    study is shrunk: its default block bank, trial budget and front verification all run; only
    the device's calibration is the demo's, as it would be for a user who ran the demo first."""
    assert demo.run.returncode == 0, demo.run.stderr
    folder = demo.cache.parent / "mine"
    folder.mkdir()
    (folder / "minimal.yaml").write_text("name: minimal\nspace: nanosd\n")

    created = demo.cli(folder, "study", "create", "minimal.yaml", "--json")
    assert created.returncode == 0, created.stderr
    config: dict[str, Any] = json.loads(created.stdout)["config"]
    assert (config["space"], config["scale"]) == ("nanosd", "mini")  # the teacher's scale
    assert config["accuracy"]["distill"] == {}  # the default bank, not the demo's smaller one

    ran = demo.cli(folder, "study", "run", "minimal")  # on a pipe: a line per phase
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "calibrate:" not in ran.stderr  # the demo's calibration of this CPU is reused
    trials = config["n_trials"]
    for phase in ("distilling the block bank: done", f"trials: done, {trials}/{trials}",
                  "measuring the front on the device: done"):
        assert phase in ran.stderr, ran.stderr[-3000:]
    shown = demo.cli(folder, "study", "show", "minimal", "--json")
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["status"] == "completed", summary
    counts = summary["trials"]
    assert counts == {"complete": trials, "failed": 0, "running": 0}, counts
    # The default verifies the front on the device: every member of the final front measured.
    front = demo.cli(folder, "study", "front", "minimal", "--json")
    assert front.returncode == 0, front.stderr
    members = json.loads(front.stdout)["front"]
    assert members
    assert all(m["objectives"]["latency_ms"]["provenance"] == "measured" for m in members), \
        members
