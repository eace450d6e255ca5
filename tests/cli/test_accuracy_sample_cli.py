"""``accuracy sample``: the paired sample grid and its figures, as a user runs it on the demo
teacher (with a feature network of seeded random weights, and without one) and on the shipped
trained teacher (its own feature network and held-out real images)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from nanosd_nas.search.teacher import GRID_GAP, FeatureNet, save_features

DEMO_CLASSES = [f"prompt {i}" for i in range(1, 8)]
TINY = ["--distill-steps", "4", "--samples", "24"]


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``nanosd-nas ARGS --teacher demo`` (these tests are of the seeded demo teacher)."""
    env = {**os.environ, "NANOSD_NAS_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args, "--teacher", "demo"],
                          capture_output=True,
                          text=True, timeout=600, env=env, check=False)


def test_sample_writes_the_grid_and_the_per_class_figures(tmp_path):
    features = tmp_path / "features.safetensors"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_features(FeatureNet(DEMO_CLASSES), features)
    out = tmp_path / "out"
    result = run(tmp_path, "accuracy", "sample", "sd15", "--out", str(out), "--features",
                 str(features), "--class", "prompt 2", "--class", "prompt 5", "--per-class",
                 "2", "--steps", "4", *TINY, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert json.loads((out / "samples.json").read_text()) == document
    with Image.open(out / "grid.png") as grid:
        assert grid.size == (2 * 2 * 128 + GRID_GAP, 2 * 128) and grid.mode == "RGB"
    assert list(document["classes"]) == ["prompt 2", "prompt 5"]
    for figures in (*document["classes"].values(), document["overall"]):
        # sd15 at the teacher's scale is the teacher: every sample is its pair
        assert figures["psnr_db"] == 120.0 and figures["ssim"] > 0.999999
        assert figures["student_accuracy"] == figures["teacher_accuracy"] is not None
    assert document["overall"]["fid"] is None
    assert document["notes"] == ["no real images: FID and KID omitted"]
    assert document["settings"]["steps"] == [4] and document["settings"]["sampler"] == "ddim"
    assert document["features"] == str(features)


def test_sample_without_a_feature_network_goes_to_the_project_home(tmp_path):
    result = run(tmp_path, "accuracy", "sample", "nanosd:3,3,3,7,7,7", "--mode", "surgery",
                 "--class", "prompt 3", "--per-class", "1", "--steps", "4", *TINY)
    assert result.returncode == 0, result.stderr
    assert "prompt 3" in result.stdout and "no feature network" in result.stdout
    (folder,) = (tmp_path / "samples").iterdir()
    document = json.loads((folder / "samples.json").read_text())
    assert folder.name == document["spec_id"] and Path(document["grid"]) == folder / "grid.png"
    with Image.open(folder / "grid.png") as grid:
        assert grid.size == (2 * 128 + GRID_GAP, 128)
    figures = document["classes"]["prompt 3"]
    assert 0 < figures["psnr_db"] < 120 and figures["student_accuracy"] is None
    assert document["notes"] == ["no feature network: FID, KID and class accuracy omitted"]


def test_an_unknown_class_is_one_line_and_nothing_is_written(tmp_path):
    out = tmp_path / "out"
    result = run(tmp_path, "accuracy", "sample", "sd15", "--out", str(out), "--class", "cat")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "'cat'" in lines[0] and "prompt 1, prompt 2" in lines[0] and "prompt 7" in lines[0]
    assert not out.exists()
    missing = run(tmp_path, "accuracy", "sample", "sd15", "--features",
                  str(tmp_path / "none.safetensors"))
    assert missing.returncode == 2 and "no feature network" in missing.stderr


def test_the_shipped_teacher_gets_fid_and_kid_against_its_held_out_images(tmp_path):
    # sd15 at the teacher's scale is the trained teacher itself: its FID is the teacher's
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "accuracy", "sample", "sd15", "--teacher", "trained",
         "--out", str(tmp_path / "out"), "--class", "circle", "--class", "face", "--per-class",
         "2", "--steps", "2", *TINY, "--json"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "NANOSD_NAS_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    overall = json.loads(result.stdout)["overall"]
    assert overall["fid"] is not None and overall["fid"] == overall["teacher_fid"]
    assert overall["kid"] is not None and overall["kid"] == overall["teacher_kid"]
    assert json.loads(result.stdout)["notes"] == []
