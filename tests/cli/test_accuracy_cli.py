"""``accuracy bank``, ``accuracy score`` and ``bench fidelity`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["--distill-steps", "4", "--samples", "24", "--teacher", "demo"]


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NANOSD_NAS_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, timeout=1200, env=env, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_score_distils_what_it_needs_and_a_second_score_reuses_the_bank(tmp_path):
    first = run(tmp_path, "accuracy", "score", "nanosd:0,0,0,0,0,0", *TINY, "--json")
    assert first.returncode == 0, first.stderr
    scored = json.loads(first.stdout)
    assert scored["teacher"].startswith("demo teacher")
    assert scored["untrained_parameters"] == 0
    lo, hi = scored["details"]["fidelity_ci95"]
    assert lo <= scored["objectives"]["fidelity"] <= hi
    assert set(scored["details"]["stage_errors"]) == {"E1", "E2", "E3", "D3", "D2", "D1"}
    entries = sorted((tmp_path / "banks" / "demo-mini-seed0").glob("*.safetensors"))
    assert len(entries) == 6
    stamps = [p.stat().st_mtime_ns for p in entries]
    again = run(tmp_path, "accuracy", "score", "nanosd:0,0,0,0,0,0", *TINY, "--json")
    assert json.loads(again.stdout)["objectives"] == scored["objectives"]
    assert [p.stat().st_mtime_ns for p in entries] == stamps
    surgery = run(tmp_path, "accuracy", "score", "nanosd:0,0,0,0,0,0", "--mode", "surgery",
                  *TINY, "--json")
    assert json.loads(surgery.stdout)["objectives"]["fidelity"] < (
        scored["objectives"]["fidelity"])


def test_bank_reports_every_entry_and_reuses_them(tmp_path):
    bank = tmp_path / "bank"
    first = run(tmp_path, "accuracy", "bank", "--space", "nanosd", "--bank", str(bank), *TINY,
                "--json")
    assert first.returncode == 0, first.stderr
    built = json.loads(first.stdout)
    # 36 stage variants less the 4 identical to the teacher's (D3 is fed by E3 after surgery,
    # so even the all-attention D3 is distilled); the stem, time and head are the teacher's.
    assert built["built"] == built["entries"] == 32
    second = json.loads(run(tmp_path, "accuracy", "bank", "--bank", str(bank), *TINY,
                            "--json").stdout)
    assert second["reused"] == 32 and second["built"] == 0


def test_bad_teachers_and_damaged_entries_are_one_line_errors(tmp_path):
    one_line_error(run(tmp_path, "accuracy", "score", "sd15", "--teacher",
                       str(tmp_path / "nowhere")), "nowhere")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    one_line_error(run(tmp_path, "accuracy", "score", "sd15", "--teacher", str(broken)),
                   "broken.safetensors")
    assert run(tmp_path, "accuracy", "score", "nanosd:0,0,0,0,0,0", *TINY).returncode == 0
    entry = next((tmp_path / "banks" / "demo-mini-seed0").glob("E3-*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:100])
    one_line_error(run(tmp_path, "accuracy", "score", "nanosd:0,0,0,0,0,0", *TINY),
                   "damaged", entry.name)
    one_line_error(run(tmp_path, "accuracy", "score", "nanosd:0,0,0,0,0,0", "--mode", "best"),
                   "--mode")


def test_bad_images_and_contexts_are_one_line_errors_and_write_no_entry(tmp_path):
    import torch
    from safetensors.torch import save_file

    empty = tmp_path / "shots"
    empty.mkdir()
    (empty / "notes.png").write_text("not a picture")
    one_line_error(run(tmp_path, "accuracy", "score", "nanosd:0,0,0,0,0,0", *TINY, "--images",
                       str(empty)), "shots")
    wrong = tmp_path / "prompts.safetensors"
    save_file({"context": torch.zeros(2, 7, 48)}, wrong)
    one_line_error(run(tmp_path, "accuracy", "bank", *TINY, "--context", str(wrong)),
                   "prompts.safetensors", "[n, tokens, 64]")
    assert not list(tmp_path.glob("banks/*/*.safetensors"))


@pytest.mark.slow
def test_bench_fidelity_shows_what_the_evaluator_must_show(tmp_path):
    result = run(tmp_path, "bench", "fidelity", "--candidates", "6", "--distill-steps", "40",
                 "--samples", "64", "--teacher", "demo", "--json")
    assert result.returncode == 0, result.stderr
    bench = json.loads(result.stdout)
    assert bench["teacher"].startswith("demo teacher")
    assert bench["teacher_identical_db"] > bench["distilled"]["max_db"]
    assert bench["improved_share"] >= 0.75
    assert bench["spearman_transformers_vs_fidelity"]["distilled"] > 0
    assert bench["bank"]["built"] == 32 and bench["bank"]["build_s"] > 0
    assert bench["max_untrained_parameters"] == 0 and bench["median_ci95_width_db"] > 0
    assert bench["unet"]["distilled"]["median_db"] > bench["unet"]["surgery"]["median_db"]
    assert not (tmp_path / "banks").exists()  # the benchmark's bank is a fresh scratch folder
