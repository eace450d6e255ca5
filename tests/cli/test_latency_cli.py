"""``latency``, ``device calibrate`` and ``bench predictor`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanosd_nas import spaces
from nanosd_nas.search.store import Store

TINY_PLAN = ["--initial", "4", "--rounds", "1", "--per-round", "2"]


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line with its project home and its database (a SQLite file) in ``home``."""
    env = {**os.environ, "NANOSD_NAS_HOME": str(home),
           "NANOSD_NAS_DATABASE_URL": f"sqlite:///{home / 'nanosd-nas.db'}"}
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, timeout=900, env=env, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_predict_without_a_predictor_says_how_to_make_one(tmp_path):
    one_line_error(run(tmp_path, "latency", "predict", "nanosd:0,0,0,0,0,0", "--scale", "mini"),
                   "no predictor", "device calibrate local-cpu --space nanosd --scale mini")


def test_unknown_device_is_a_user_error(tmp_path):
    one_line_error(run(tmp_path, "latency", "predict", "sd15", "--device", "pixel-99"),
                   "pixel-99")
    one_line_error(run(tmp_path, "device", "calibrate", "pixel-99", "--space", "nanosd"),
                   "pixel-99")
    assert not (tmp_path / "predictors").exists()


def test_measure_reports_and_stores_every_component(tmp_path):
    result = run(tmp_path, "latency", "measure", "bk-sdm-tiny", "--scale", "mini", "--steps",
                 "4", "--json")
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    components = measured["components"]
    assert set(components) == {"unet", "vae_encoder", "vae_decoder"}
    for stats in components.values():
        assert 0 < stats["min_ms"] <= stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"]
        assert stats["normalised_ms"] > 0  # local-cpu times against the reference model
    assert measured["statistic"] == "normalised_ms"
    per = {c: s["normalised_ms"] for c, s in components.items()}
    assert measured["pipeline_ms"] == pytest.approx(
        per["vae_encoder"] + 4 * per["unet"] + per["vae_decoder"])
    with Store.open(f"sqlite:///{tmp_path / 'nanosd-nas.db'}") as store:  # one home: the database
        stored = store.measurements("local-cpu", kind="model", key=measured["spec_id"])
    assert {r.component: r.stats.to_dict() for r in stored} == components
    assert not (tmp_path / "measurements").exists()


@pytest.mark.slow
def test_calibrate_then_predict_members_and_spec_files(tmp_path):
    calibrated = run(tmp_path, "device", "calibrate", "local-cpu", "--space", "nanosd",
                     "--scale", "mini", *TINY_PLAN, "--held-out", "3", "--json")
    assert calibrated.returncode == 0, calibrated.stderr
    summary = json.loads(calibrated.stdout)
    assert summary["n_train"] == 6 and summary["blocks"] == 48
    assert summary["held_out"]["unet"]["n"] == 3
    assert summary["action"] == "calibrated" and summary["predictor_id"] is not None

    largest = json.loads(run(tmp_path, "latency", "predict", "nanosd:3,3,3,7,7,7", "--scale",
                             "mini", "--steps", "2", "--json").stdout)
    smallest = json.loads(run(tmp_path, "latency", "predict", "nanosd:0,0,0,0,0,0", "--scale",
                              "mini", "--json").stdout)
    assert largest["statistic"] == "normalised_ms"
    assert largest["components_ms"]["unet"] > smallest["components_ms"]["unet"] > 0
    per = largest["components_ms"]
    assert largest["pipeline_ms"] == pytest.approx(
        per["vae_encoder"] + 2 * per["unet"] + per["vae_decoder"])

    # the same member as a spec file: found through the block table, same prediction
    spec_file = tmp_path / "member.json"
    space = spaces.load_space("nanosd")
    spec_file.write_text(space.spec((3, 3, 3, 7, 7, 7), "mini").to_json())
    from_file = json.loads(run(tmp_path, "latency", "predict", str(spec_file), "--json").stdout)
    assert from_file["components_ms"]["unet"] == pytest.approx(per["unet"])
    # a full-size spec has blocks no mini table holds
    one_line_error(run(tmp_path, "latency", "predict", "sd15"), "no predictor")


@pytest.mark.slow
def test_bench_predictor_prints_every_figure(tmp_path):
    result = run(tmp_path, "bench", "predictor", *TINY_PLAN, "--test", "4", "--repeats", "1",
                 "--json")
    assert result.returncode == 0, result.stderr
    bench = json.loads(result.stdout)
    for key in ("within_5pct", "within_10pct", "spearman", "rmspe", "n_train", "n_test",
                "calibration_s", "predict_per_s", "repeatability"):
        assert key in bench
    assert (bench["n_train"], bench["n_test"]) == (6, 4)
    assert set(bench["baselines"]) == {"params", "macs", "block_sum"}
    assert bench["predict_per_s"] > 32_768  # the whole nanosd space in under a second
