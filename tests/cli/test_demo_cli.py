"""The main job as a user runs it: ``demo`` on embedded defaults, then ``export`` of a trial."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import optuna
import pytest
from safetensors.torch import load_file

from nanosd_nas import spaces


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("NANOSD_NAS_HOME", "NANOSD_NAS_DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, timeout=1500, env=env, cwd=cwd, check=False)


@pytest.mark.slow
def test_demo_finds_a_front_reports_it_and_a_trial_exports(tmp_path):
    # The user's cache is empty (conftest): the demo calibrates and distils into it.
    home = Path(os.environ["XDG_CACHE_HOME"]) / "nanosd-nas"
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    first.mkdir()
    elsewhere.mkdir()
    demo = run(first, "demo", "--trials", "6", "--json")
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout)
    assert summary["complete"] == 6 and summary["front"]
    assert summary["home"] == str(home) and summary["calibrated"]
    assert summary["bank_distilled"] == summary["bank_entries"] > 0
    # On a pipe, a line per phase as it starts and ends (a live display would show nothing).
    for phase in ("calibrate: measuring training models: started", "distilling the block "
                  "bank: done", "trials: done, 6/6", "measuring the front on the device: done"):
        assert phase in demo.stderr, demo.stderr
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
    again = run(elsewhere, "demo", "--trials", "6", "--json")
    assert again.returncode == 0, again.stderr
    reused = json.loads(again.stdout)
    assert reused["complete"] == 6  # continues the study: nothing repeated
    assert (reused["calibrated"], reused["bank_distilled"]) == (False, 0)
    assert (elsewhere / reused["report"]).is_file()

    trials = run(elsewhere, "study", "trials", "demo", "--json")
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
    spec_export = run(tmp_path, "export", "demo", trial, "--format", "spec", "--out",
                      str(out / "spec"))
    assert spec_export.returncode == 0, spec_export.stderr
    spec = spaces.ArchSpec.from_file(next((out / "spec").glob("*.json")))
    assert spec.spec_id == summary["front"][0]["spec_id"]
    onnx_export = run(tmp_path, "export", "demo", trial, "--format", "onnx", "--out",
                      str(out / "onnx"), "--exporter", "torchscript")
    assert onnx_export.returncode == 0, onnx_export.stderr
    for path in (out / "onnx").glob("*.onnx"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    card = (out / "onnx" / "README.md").read_text()  # where it comes from, what it scored
    assert f"trial {trial} of study `demo`" in card and "Teacher:" in card
    assert any(f"| {kind} |" in card for kind in ("measured", "computed", "predicted"))
    weights = run(tmp_path, "export", "demo", trial, "--format", "safetensors", "--out",
                  str(out / "weights"))
    assert weights.returncode == 0, weights.stderr
    state = load_file(str(out / "weights" / "unet.safetensors"))  # diffusers' own names
    assert any(name.startswith("down_blocks.") for name in state)
    missing = run(tmp_path, "export", "demo", "999", "--format", "spec", "--out", str(out))
    assert missing.returncode == 2 and "999" in missing.stderr
