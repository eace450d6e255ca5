"""``study create | list | show | front | trials`` as a user runs them, on a SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from nanosd_nas import spaces
from nanosd_nas.search.store import ObjectiveValue, Store

STUDY = """\
name: phone-sr-1step
space: nanosd
scale: mini
device: local-cpu
pipeline: {steps: 1}
objectives:
  - {name: fidelity, direction: maximize}
  - {name: latency_ms, direction: minimize}
  - {name: params_m, direction: minimize}
constraints: {latency_ms: {max: 40}, params_m: {max: 315}}
n_trials: 200
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "NANOSD_NAS_HOME": str(tmp_path / "home"),
            "NANOSD_NAS_DATABASE_URL": f"sqlite:///{tmp_path / 'nas.db'}",
            "COLUMNS": "300"}  # tables unwrapped, so that a cell reads as one string


def run(env: dict[str, str], *args: str, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanosd_nas", "study", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
                          check=False)


def ok_json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def study_file(tmp_path: Path, text: str = STUDY, name: str = "study.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_create_then_list_and_show(env, tmp_path):
    created = ok_json(run(env, "create", study_file(tmp_path), "--json"))
    assert created["name"] == "phone-sr-1step" and created["status"] == "created"
    assert created["config"]["constraints"] == {"latency_ms": {"max": 40.0},
                                                "params_m": {"max": 315.0}}
    assert created["config"]["sampler"] == "tpe"  # defaults written out
    assert created["config"]["encoding"] == "binary"

    listed = ok_json(run(env, "list", "--json"))["studies"]
    assert [(s["name"], s["status"], s["trials"], s["front_size"], s["best_hypervolume"])
            for s in listed] == [("phone-sr-1step", "created",
                                  {"complete": 0, "failed": 0, "running": 0}, 0, None)]
    shown = ok_json(run(env, "show", "phone-sr-1step", "--json"))
    assert (shown["device"], shown["space"], shown["scale"], shown["n_trials"]) == (
        "local-cpu", "nanosd", "mini", 200)
    assert (shown["sampler"], shown["encoding"]) == ("tpe", "binary")
    assert shown["config"]["objectives"][1] == {"name": "latency_ms", "direction": "minimize"}
    table = run(env, "show", "phone-sr-1step")
    assert table.returncode == 0 and "latency_ms ≤ 40" in table.stdout

    # the same name again: refused, nothing changed
    one_line_error(run(env, "create", study_file(tmp_path)),
                   "study 'phone-sr-1step' already exists")
    assert len(ok_json(run(env, "list", "--json"))["studies"]) == 1


def test_bad_files_and_devices_are_one_line_and_store_nothing(env, tmp_path):
    one_line_error(run(env, "create", study_file(tmp_path, STUDY.replace(
        "direction: minimize}\n  - {name: params_m", "direction: fastest}\n  - {name: params_m"))),
        "study.yaml: objectives.1.direction: 'fastest' is not one of maximize, minimize")
    one_line_error(run(env, "create", study_file(tmp_path, "name: a\nspace: [nanosd\n")),
                   "study.yaml: malformed YAML at line 3")
    one_line_error(run(env, "create", study_file(tmp_path, STUDY.replace(
        "device: local-cpu", "device: pixel-99"))), "device: device 'pixel-99' is not registered")
    one_line_error(run(env, "create", str(tmp_path / "missing.yaml")), "missing.yaml")
    assert not (tmp_path / "nas.db").exists()  # refused before the database is touched


def test_bad_image_size_and_accuracy_fields_are_one_line_and_store_nothing(env, tmp_path):
    one_line_error(run(env, "create", study_file(tmp_path, STUDY.replace(
        "pipeline: {steps: 1}", "pipeline: {steps: 1, image_size: 200}"))),
        "study.yaml: pipeline.image_size: input should be a multiple of 64 (got 200)")
    one_line_error(run(env, "create", study_file(tmp_path, STUDY + "accuracy: {distill: "
                                                  "{steps: 10, lr_schedule: step}}\n")),
                   "study.yaml: accuracy.distill.lr_schedule: 'step' is not one of constant, "
                   "cosine")
    one_line_error(run(env, "create", study_file(tmp_path, STUDY + "accuracy: {distill: "
                                                  "{stepz: 10}}\n")),
                   "study.yaml: accuracy.distill.stepz: is not a field; fields: steps")
    one_line_error(run(env, "create", study_file(tmp_path, STUDY + "accuracy: {device: tpu}\n")),
                   "study.yaml: accuracy.device: 'tpu' is not one of auto, cpu, cuda")
    one_line_error(run(env, "create", study_file(tmp_path, STUDY + "accuracy: {images: shots}\n")),
                   "study.yaml: accuracy.images: no folder of images 'shots'")
    one_line_error(run(env, "create", study_file(
        tmp_path, STUDY + "accuracy: {context: prompts.safetensors}\n")),
        "study.yaml: accuracy.context: no safetensors file 'prompts.safetensors'")
    # the default teacher is at mini scale: every trial would fail at another
    one_line_error(run(env, "create", study_file(tmp_path, STUDY.replace("scale: mini",
                                                                         "scale: full"))),
                   "study.yaml: scale: full conflicts with accuracy.teacher: trained")
    assert not (tmp_path / "nas.db").exists()


def test_a_photo_latency_needs_a_photo_and_a_photo_study_shows_it(env, tmp_path):
    photo_objective = STUDY.replace("{name: latency_ms,", "{name: photo_latency_ms,")
    one_line_error(run(env, "create", study_file(tmp_path, photo_objective)),
                   "study.yaml: objectives.1.name: photo_latency_ms needs pipeline.photo, the "
                   "photo's [width, height] in px")
    one_line_error(run(env, "create", study_file(tmp_path, photo_objective.replace(
        "pipeline: {steps: 1}", "pipeline: {steps: 1, photo: [4000, -3000]}"))),
        "study.yaml: pipeline.photo.1: input should be greater than or equal to 1 (got -3000)")
    assert not (tmp_path / "nas.db").exists()
    created = ok_json(run(env, "create", study_file(tmp_path, photo_objective.replace(
        "pipeline: {steps: 1}", "pipeline: {steps: 1, photo: [4000, 3000]}")), "--json"))
    assert created["config"]["pipeline"] == {"steps": 1, "photo": [4000, 3000]}
    table = run(env, "show", "phone-sr-1step")
    assert table.returncode == 0, table.stderr
    assert "photo 4000x3000 px in tiles overlapping by a quarter tile" in table.stdout
    assert "photo_latency_ms ↓" in table.stdout


def test_the_accuracy_paths_are_stored_absolute_and_shown(env, tmp_path):
    (tmp_path / "shots").mkdir()
    (tmp_path / "prompts.safetensors").write_bytes(b"x")
    text = STUDY + ("accuracy: {evaluator: distill, images: shots, context: prompts.safetensors,"
                    " device: cpu, distill: {steps: 20}}\n")
    created = ok_json(run(env, "create", study_file(tmp_path, text), "--json", cwd=Path("/")))
    accuracy = created["config"]["accuracy"]
    assert accuracy["images"] == str((tmp_path / "shots").resolve())
    assert accuracy["context"] == str((tmp_path / "prompts.safetensors").resolve())
    assert (accuracy["device"], accuracy["distill"]) == ("cpu", {"steps": 20})
    assert "pipeline" in created["config"] and "image_size" not in created["config"]["pipeline"]
    table = run(env, "show", "phone-sr-1step")
    assert table.returncode == 0, table.stderr
    assert "distill (teacher trained) on cpu" in table.stdout and "steps=20" in table.stdout


def test_reading_without_a_database_or_an_unknown_study_is_one_line(env, tmp_path):
    one_line_error(run(env, "list"), "no database", "db upgrade")
    ok_json(run(env, "create", study_file(tmp_path), "--json"))
    for command in ("show", "front", "trials"):
        one_line_error(run(env, command, "nope"), "study 'nope' does not exist")


#: What the distilling evaluator reports beside a trial's values.
DETAILS = {"untrained_parameters": 4096, "fidelity_ci95": [23.75, 24.75],
           "fidelity_by_t": {"0-250": 26.5, "250-500": 24.0, "500-750": 22.5, "750-1000": None},
           "unet_fidelity_db_ci95": [23.75, 24.75], "vae_psnr_db_ci95": [30.0, 31.0],
           "stage_errors": {"E1": 0.02}, "teacher": "demo", "mode": "distill"}


@pytest.fixture
def study_with_trials(env, tmp_path) -> str:
    """The study with trials stored as a runner would: two complete (on the front, one with
    its latency verified by a measurement), one failed."""
    ok_json(run(env, "create", study_file(tmp_path), "--json"))
    space = spaces.load_space("nanosd")
    with Store.open(env["NANOSD_NAS_DATABASE_URL"]) as store:
        ids = [store.upsert_architecture(space.spec(vector, "mini"))
               for vector in ((0, 0, 0, 0, 0, 0), (3, 3, 3, 7, 7, 7), (1, 1, 1, 1, 1, 1))]
        trials = [store.add_trial("phone-sr-1step", params={"v": i}, spec_id=spec_id)
                  for i, spec_id in enumerate(ids)]
        for trial, (fidelity, latency) in zip(trials, ((18.5, 12.34), (24.25, 31.0)),
                                              strict=False):
            store.complete_trial(trial.id, {
                "fidelity": ObjectiveValue(fidelity, "measured"),
                "latency_ms": ObjectiveValue(latency, "predicted"),
                "params_m": ObjectiveValue(fidelity * 10, "computed")},
                constraints={"latency_ms.max": latency - 40},
                details=DETAILS if trial.number == 1 else None)
        store.add_values(trials[1].id, {"latency_ms": ObjectiveValue(33.0, "measured")})
        store.fail_trial(trials[2].id, "RuntimeError: out of memory")
        store.replace_front("phone-sr-1step", [trials[0].id, trials[1].id], hypervolume=1.5)
    return "phone-sr-1step"


def test_front_shows_values_with_their_provenance(env, study_with_trials):
    front = ok_json(run(env, "front", study_with_trials, "--json"))
    assert front["hypervolume"] == 1.5
    assert [m["number"] for m in front["front"]] == [0, 1]
    first, second = (m["objectives"] for m in front["front"])
    assert (first["latency_ms"]["value"], first["latency_ms"]["provenance"]) == (12.34,
                                                                                "predicted")
    assert (second["latency_ms"]["value"], second["latency_ms"]["provenance"]) == (33.0,
                                                                                  "measured")
    assert first["params_m"]["provenance"] == "computed"

    table = run(env, "front", study_with_trials)
    assert table.returncode == 0, table.stderr
    assert "12.3 ms (predicted)" in table.stdout
    assert "33.0 ms (measured; predicted 31.0 ms)" in table.stdout
    listed = ok_json(run(env, "list", "--json"))["studies"][0]
    assert listed["trials"] == {"complete": 2, "failed": 1, "running": 0}
    assert (listed["front_size"], listed["best_hypervolume"]) == (2, 1.5)


def test_trials_as_json_table_and_csv(env, study_with_trials, tmp_path):
    csv = tmp_path / "out" / "trials.csv"
    records = ok_json(run(env, "trials", study_with_trials, "--csv", str(csv), "--json"))
    rows = records["trials"]
    assert [(r["number"], r["state"]) for r in rows] == [(0, "complete"), (1, "complete"),
                                                         (2, "failed")]
    assert rows[1]["latency_ms"] == 33.0 and rows[1]["latency_ms_provenance"] == "measured"
    assert rows[0]["feasible"] is True and rows[0]["fail_reason"] is None
    assert rows[2]["fidelity"] is None and rows[2]["fail_reason"] == "RuntimeError: out of memory"
    # the evaluator's details where it gave them, null elsewhere
    assert (rows[1]["fidelity_ci95"], rows[1]["fidelity_by_t"], rows[1]["untrained_parameters"]
            ) == (DETAILS["fidelity_ci95"], DETAILS["fidelity_by_t"], 4096)
    for row in (rows[0], rows[2]):
        assert (row["fidelity_ci95"], row["fidelity_by_t"], row["untrained_parameters"]) == (
            None, None, None)

    # Each trial's architecture: the attention layout of its stages and its widths.
    spec = spaces.load_space("nanosd").spec((3, 3, 3, 7, 7, 7), "mini")
    assert rows[1]["spec_id"] == spec.spec_id
    assert rows[1]["layout"] == " ".join(
        f"{stage}:{layout}" for stage, layout in spaces.stage_layouts(spec).items())
    assert rows[1]["widths"].startswith("unet:32/64/128 vae_encoder:")
    assert rows[0]["layout"] != rows[1]["layout"]

    read = pd.read_csv(csv)
    assert list(read.columns) == [
        "number", "state", "spec_id", "layout", "widths", "fidelity", "fidelity_provenance",
        "latency_ms",
        "latency_ms_provenance", "params_m", "params_m_provenance", "feasible", "fail_reason",
        "started_at", "finished_at", "duration_s", "worker"]
    # When each trial ran: UTC timestamps, and a duration that is their difference.
    for row in rows:
        started, finished = (datetime.fromisoformat(row[k]) for k in ("started_at",
                                                                       "finished_at"))
        assert started.utcoffset() == timedelta(0) and finished >= started
        assert row["duration_s"] == pytest.approx((finished - started).total_seconds(), abs=1)
    assert set(read.columns) == set(rows[0]) - {"fidelity_ci95", "fidelity_by_t",
                                                "untrained_parameters"}
    assert read["number"].tolist() == [0, 1, 2]
    assert read["spec_id"].tolist() == [r["spec_id"] for r in rows]
    assert read["fidelity"].tolist()[:2] == [18.5, 24.25] and pd.isna(read["fidelity"][2])
    assert read["latency_ms_provenance"].tolist()[:2] == ["predicted", "measured"]
    assert not list(csv.parent.glob(".*"))  # no temporary file left behind

    table = run(env, "trials", study_with_trials)
    assert table.returncode == 0, table.stderr
    assert "out of memory" in table.stdout and "12.3 ms (predicted)" in table.stdout
    assert rows[1]["layout"] in table.stdout and rows[1]["widths"] in table.stdout


def test_requeue_a_stopped_study_and_delete_a_finished_one(env, study_with_trials):
    """Only a failed or stopped study is queued again; a running one is not deleted; delete
    asks first (unless --yes) and then forgets the study with its trials."""
    name = study_with_trials
    one_line_error(run(env, "requeue", name), "is created", "only a failed or stopped")
    with Store.open(env["NANOSD_NAS_DATABASE_URL"]) as store:
        store.set_study_status(name, "running")
    one_line_error(run(env, "delete", name, "--yes"), "is running", "stop it first")
    with Store.open(env["NANOSD_NAS_DATABASE_URL"]) as store:
        store.set_study_status(name, "stopped", reason="stopped on request")
    queued = ok_json(run(env, "requeue", name, "--json"))
    assert (queued["status"], queued["status_reason"]) == ("queued", None)
    assert queued["trials"] == {"complete": 2, "failed": 1, "running": 0}

    declined = subprocess.run([sys.executable, "-m", "nanosd_nas", "study", "delete", name],
                              input="n\n", capture_output=True, text=True, timeout=120,
                              env=env, check=False)
    assert declined.returncode == 1 and "delete study" in declined.stderr
    assert ok_json(run(env, "show", name, "--json"))["status"] == "queued"
    assert ok_json(run(env, "delete", name, "--yes", "--json")) == {"study": name,
                                                                    "deleted": True}
    one_line_error(run(env, "show", name), f"study '{name}' does not exist")
    one_line_error(run(env, "delete", name, "--yes"), f"study '{name}' does not exist")


def test_the_study_commands_do_not_load_pytorch():
    code = ("import sys; from nanosd_nas.cli import study; import search._study_config; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "False"
