"""``bench accuracy``: candidates across the proxy's range, rank agreement with intervals, and the
whole benchmark on a teacher trained for a few steps."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from nanosd_nas.search._bench_accuracy import rank_agreement, stratified
from nanosd_nas.search.teacher import Recipe, train_teacher


def _pool(n: int) -> list[dict]:
    # proxy rises with i; parameters fall with i for the first half (a front), then rise
    return [{"spec_id": str(i), "proxy": float(i), "params": (n - i) if i < n // 2 else 10 * i}
            for i in range(n)]


def test_candidates_span_the_proxy_from_its_worst_to_its_best():
    pool = _pool(30)
    chosen = stratified(pool, 10)
    proxies = sorted(r["proxy"] for r in chosen)
    assert len(chosen) == 10 and len({r["spec_id"] for r in chosen}) == 10
    assert proxies[0] == 0 and proxies[-1] == 29
    # spread across the range, not bunched at one end
    assert any(p < 10 for p in proxies[1:-1]) and any(p > 19 for p in proxies[1:-1])


def test_rank_agreement_is_one_for_the_same_order_and_minus_one_for_the_reverse():
    up = [1.0, 2.0, 3.5, 4.0, 7.0, 9.0, 11.0, 12.0]
    same = rank_agreement(up, [2 * v + 1 for v in up])
    reverse = rank_agreement(up, [-v for v in up])
    assert same["spearman"] == 1.0 and same["kendall"] == 1.0
    assert reverse["spearman"] == -1.0 and reverse["kendall"] == -1.0
    noisy = rank_agreement(up, [1.0, 3.0, 2.0, 5.0, 4.0, 8.0, 6.0, 9.0])
    low, high = noisy["spearman_ci95"]
    assert low <= noisy["spearman"] <= high and 0 < noisy["spearman"] < 1
    assert rank_agreement(up, [1.0] * len(up))["spearman"] is None


@pytest.mark.slow
def test_the_benchmark_reports_every_figure_the_issue_names(tmp_path):
    teacher = tmp_path / "teacher"
    train_teacher(teacher, Recipe(vae_steps=20, vae_batch=4, feature_steps=20,
                                  feature_batch=16, encoded=128, unet_steps=30, unet_batch=8,
                                  warmup=5, checkpoint_every=10))
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "bench", "accuracy", "--teacher", str(teacher),
         "--candidates", "6", "--scaled-share", "0.34", "--pool", "6", "--per-class", "1",
         "--distill-steps", "2",
         "--samples", "24", "--json"],
        capture_output=True, text=True, timeout=1500, check=False,
        env={**os.environ, "NANOSD_NAS_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["n_candidates"] == 6
    spaces = {row["space"] for row in report["rows"]}
    assert spaces == {"nanosd", "nanosd-scaled"}
    metrics = {f"{m}_{s}" for m in ("psnr", "ssim", "fid", "kid", "class_accuracy")
               for s in (25, 4)}
    assert set(report["spearman_vs_truth"]) == metrics
    assert set(report["baselines"]) == {"params", "macs", "transformers", "surgery_only"}
    for rho in report["spearman_vs_truth"].values():
        assert rho is None or -1 <= rho <= 1
    assert 0 <= report["top10_overlap"] <= 6
    assert report["proxy_spread"]["n"] == sum(r["space"] == "nanosd" for r in report["rows"])
    assert all(math.isfinite(r["proxy"]) and r["psnr_25"] > 0 for r in report["rows"])
    assert report["seconds"] > 0
    assert set(report["by_space"]) == spaces
    # two from nanosd-scaled: its smallest, then not its largest (the teacher-sized member,
    # which nanosd's proxy extremes hold) but another
    assert sum(row["space"] == "nanosd-scaled" for row in report["rows"]) == 2
    assert len({row["spec_id"] for row in report["rows"]}) == 6
    assert set(report["timing_s"]) == {"teacher_samples", "nanosd_proxies", "nanosd_truth",
                                       "nanosd-scaled_proxies", "nanosd-scaled_truth", "spread"}


def test_a_teacher_without_a_feature_network_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "bench", "accuracy", "--teacher", "demo"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NANOSD_NAS_HOME": str(tmp_path)})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "feature network" in lines[0], result.stderr
