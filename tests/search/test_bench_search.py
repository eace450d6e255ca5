"""``bench search``: the exhaustive reference front and the samplers' hypervolume ratios, on a
tiny bank and a tiny calibration in a scratch project home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nanosd_nas.latency_models import CalibrationPlan, DeviceRegistry
from nanosd_nas.search._bench_samplers import compare_samplers
from nanosd_nas.search._bench_search import (
    SAMPLERS,
    SearchTables,
    check_samplers,
    prepare_tables,
)
from nanosd_nas.search._front import pareto_mask
from nanosd_nas.search._search_tables import LOSS_FLOOR, OBJECTIVES, all_members, member_rows
from nanosd_nas.search._space_front import (
    SpaceTooLarge,
    check_sweepable,
    find_backdrop,
    sweep_front,
)
from nanosd_nas.search.distill import BlockBank, DistillSettings, load_teacher, stage_variants
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import count, load_space

TINY_PLAN = CalibrationPlan(initial=4, rounds=1, per_round=2, held_out=0)
TINY_BANK = DistillSettings(steps=2, samples=24)
TINY_CLI = ["--initial", "4", "--rounds", "1", "--per-round", "2", "--distill-steps", "2",
            "--samples", "24"]
DIRECTIONS = tuple(d for _, d in OBJECTIVES)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def database(home: Path) -> str:
    """The database the bench keeps the device's predictor in (as the CLI's ``--db``)."""
    return f"sqlite:///{home / 'bench.db'}"


@pytest.fixture(scope="module")
def tables(home: Path, database: str) -> SearchTables:
    """Every member scored; calibrates the device into ``database`` and builds the bank in
    ``home``."""
    with pytest.MonkeyPatch.context() as patch, Store.open(database, upgrade=True) as store:
        patch.setenv("NANOSD_NAS_HOME", str(home))
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        return prepare_tables(load_space("nanosd"), "mini", plan=TINY_PLAN, settings=TINY_BANK,
                              store=store)


@pytest.fixture(scope="module")
def values(tables: SearchTables) -> np.ndarray:
    """Every member's values, listed (``nanosd`` is small enough)."""
    return tables.objectives.values(all_members(tables.space))


@pytest.fixture(scope="module")
def benched(tables: SearchTables) -> dict:
    return compare_samplers(tables, trials=[12, 30], seeds=1, samplers=["tpe", "random"],
                            compare_encodings=True, parallelism=4)


@pytest.mark.slow
def test_every_sampler_reaches_a_share_of_the_reference(benched):
    assert benched["space_size"] == 32768 and benched["trials"] == 30
    assert benched["budgets"] == [12, 30] and benched["default_sampler"] == "tpe"
    assert set(benched["samplers"]) == {"tpe", "random"}
    # As a study runs them: TPE from the space's corners, random search plain.
    assert benched["samplers"]["tpe"]["initial_design"] == "corners"
    assert benched["samplers"]["random"]["initial_design"] == "none"
    for result in benched["samplers"].values():
        assert 0 < result["hv_ratio_min"] <= result["hv_ratio"] <= result["hv_ratio_max"] <= 1
        assert result["distinct_members"] <= 30
        assert result["by_trials"]["30"]["hv_ratio"] == result["hv_ratio"]
        assert result["by_trials"]["12"]["distinct_members"] <= 12
    # The model-based samplers in every encoding; random search draws alike in all of them.
    assert set(benched["encodings"]) == {"ordinal", "categorical", "binary"}
    for by_sampler in benched["encodings"].values():
        assert set(by_sampler) == {"tpe"} and set(by_sampler["tpe"]["by_trials"]) == {"12", "30"}
    assert (benched["encodings"][benched["encoding"]]["tpe"]["by_trials"]["30"]
            == benched["samplers"]["tpe"]["hv_ratio"])
    parallel = benched["parallel"]
    assert parallel["parallelism"] == 4 and parallel["trials"] == 30
    assert set(parallel["samplers"]["tpe"]) == {"sequential", "batched", "constant_liar"}
    assert all(0 < r <= 1 for r in parallel["samplers"]["tpe"].values())
    target = benched["target"]
    assert target["trials"] == 30 and target["default_sampler"] == "tpe"
    assert target["met"] == (benched["samplers"]["tpe"]["hv_ratio"] >= 0.95)
    assert benched["predictor"]["calibrated_now"] and benched["predictor"]["n_train"] == 6
    assert benched["bank"]["built"] == benched["bank"]["entries"] > 0
    stages = benched["bank"]["stages"]
    assert {s: v["dimensions"] for s, v in stages.items()} == {s: [s] for s in stages}


@pytest.mark.slow
def test_reference_front_is_the_exhaustive_pareto_front(tables, values, benched, home):
    on_front = pareto_mask(values, DIRECTIONS)
    assert on_front.sum() == benched["reference_front_size"] > 1
    assert sorted(tables.front.rows.tolist()) == np.flatnonzero(on_front).tolist()
    # Swept in small chunks, merged chunk by chunk: the same front, the same ranges.
    chunked = sweep_front(tables.objectives, DIRECTIONS, chunk=1000)
    assert sorted(chunked.rows.tolist()) == np.flatnonzero(on_front).tolist()
    assert chunked.low.tolist() == values.min(axis=0).tolist()
    assert chunked.high.tolist() == values.max(axis=0).tolist()
    assert 0 < chunked.peak_mb < tables.front.peak_mb
    assert benched["sweep"]["peak_mb"] == pytest.approx(tables.front.peak_mb, abs=0.1)
    # Kept for the study page of a study of this space, scale and device.
    kept = find_backdrop("nanosd", "mini", "local-cpu", home=home)
    assert kept is not None and kept["size"] == 32768
    assert sorted(map(tuple, kept["front"])) == sorted(map(tuple, values[on_front].tolist()))
    from nanosd_nas.search._front import hypervolume

    assert benched["reference_hv"] == pytest.approx(
        hypervolume(values[on_front], DIRECTIONS, tables.reference), rel=1e-9)
    losses = values * [1 if d == "minimize" else -1 for d in DIRECTIONS]
    front_losses = losses[on_front]
    # No front member dominates another ...
    for i, point in enumerate(front_losses):
        others = np.delete(front_losses, i, axis=0)
        assert not np.any(np.all(others <= point, axis=1) & np.any(others < point, axis=1))
    # ... and every member is on the front or dominated by a front member.
    for point in losses[~on_front]:
        assert np.any(np.all(front_losses <= point, axis=1) & np.any(front_losses < point,
                                                                        axis=1))
    reference = np.array(benched["reference_point"])
    assert np.all(losses < reference * [1 if d == "minimize" else -1 for d in DIRECTIONS])
    # The largest member: only E3 (it lost its downsampler) and D3 (fed by E3 after surgery)
    # are not the teacher's; its surrogate is the mean of its stages' held-out losses.
    largest = load_space("nanosd").spec(load_space("nanosd").extremes()[1], "mini")
    bank = BlockBank(load_teacher("demo"), settings=TINY_BANK, folder=home / "banks")
    assert sorted(v.stage for v in bank.units(largest)) == ["D3", "E3"]
    stage_losses = [bank.info(variant).heldout_final + LOSS_FLOOR
                    for name, variant in stage_variants(largest).items() if name[0] in "ED"]
    assert values[-1, 2] == pytest.approx(-10 * np.log10(np.mean(stage_losses)))
    assert np.all(values[:, 2] <= -10 * np.log10(LOSS_FLOOR) + 1e-9)  # the most any scores


@pytest.mark.slow
def test_a_study_of_the_same_space_has_the_benchs_reference_point(database, tables, benched):
    """One rule for both: a study's hypervolume and the benchmark's compare."""
    import optuna

    from nanosd_nas.search import StudyConfig
    from nanosd_nas.search.run import FrontKeeper, LatencyModel, OptunaStudy, SpaceValues

    config = StudyConfig.from_document({  # the bench's objectives, in another order
        "name": "same", "space": "nanosd", "scale": "mini",
        "objectives": [{"name": "fidelity"}, {"name": "params_m"}, {"name": "latency_ms"}]})
    with Store.open(database) as store:
        predictor = store.load_predictor(store.find_predictor("local-cpu", tables.space, "mini"))
    space_values = SpaceValues(config=config, space=tables.space,
                               latency=LatencyModel(predictor=predictor, predictor_id=1))
    keeper = FrontKeeper(store=None, name="same", config=config,  # the point needs no database
                         values=space_values)
    study = OptunaStudy(study=optuna.create_study(directions=list(config.directions)),
                        config=config, space=tables.space)
    latency, params, fidelity = benched["reference_point"]
    point = keeper.reference(study, {})
    assert point[1:] == pytest.approx([params, latency])
    assert study.study.user_attrs["reference_point"] == point
    # Fidelity at 0 dB in both, unless some member of the space scores below it (a bank of a
    # few distillation steps): the bench, which knows every member, then reaches below them.
    assert point[0] == 0.0 and (fidelity == 0.0) == bool(tables.front.low[2] > 0)


@pytest.mark.slow
def test_cli_reuses_the_home_and_prints_json(home, database, benched):
    env = {**os.environ, "NANOSD_NAS_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "bench", "search", "--teacher", "demo", "--trials",
         "12", "--seeds", "2", "--samplers", "nsga2,random", *TINY_CLI, "--db", database, "--json"],
        capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert not report["predictor"]["calibrated_now"] and report["bank"]["built"] == 0
    assert report["reference_hv"] == pytest.approx(benched["reference_hv"])
    assert report["seeds"] == 2 and len(report["samplers"]["nsga2"]["hv_ratios"]) == 2
    assert [o["name"] for o in report["objectives"]] == ["latency_ms", "params_m", "fidelity"]


def test_unknown_sampler_is_one_line_and_no_work(tmp_path):
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "bench", "search", "--samplers", "tpe,cmaes"],
        capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'cmaes' does not exist" in lines[0], result.stderr
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="at least one sampler"):
        check_samplers([])
    assert {"tpe", "nsga2", "gp", "random"} <= SAMPLERS.keys()


@pytest.mark.slow
def test_params_are_gathered_exactly_for_every_member(tables, values):
    space = tables.space
    members = all_members(space)
    assert len(values) == space.size
    probes = np.array([[0] * 6, [3, 3, 3, 7, 7, 7], [1, 2, 0, 5, 4, 6]])
    rows = member_rows(space, probes)
    assert rows[0] == 0 and rows[-2] == space.size - 1
    assert members[rows].tolist() == probes.tolist()
    for row in rows:
        spec = space.spec(tuple(members[row]), "mini")
        assert values[row, 1] == pytest.approx(count(spec).total_params / 1e6, abs=1e-9)


def test_a_space_beyond_the_sweeps_bound_is_one_line_and_no_work(tmp_path):
    scaled = load_space("nanosd-scaled")
    check_sweepable(scaled)  # 31.85 M members: within the bound
    with pytest.raises(SpaceTooLarge, match=r"'nanosd-scaled' has 31,850,496 members; the "
                                            r"exhaustive reference sweeps at most 1,000,000"):
        check_sweepable(scaled, limit=1_000_000)
    # nanosd-scaled with 48 widths per level, 128 channels apart: 1.3e11 members.
    preset = Path(__file__).parents[2] / "spaces" / "presets" / "nanosd-scaled.yaml"
    wide = "\n".join(
        line.replace(line[line.index("choices"):line.index("]") + 1],
                     "choices: " + str(list(range(128, 128 * 49, 128))))
        if "kind: width" in line else line for line in preset.read_text().splitlines())
    huge = tmp_path.parent / f"{tmp_path.name}-huge.yaml"
    huge.write_text(wide.replace("name: nanosd-scaled", "name: huge"))
    assert load_space(str(huge)).size > 2**27
    refuses_in_one_line(tmp_path, (["--trials", "200,0"], "--trials '200,0'"),
                        (["--encoding", "gray"], "--encoding 'gray'"),
                        (["--space", str(huge)], "'huge' has 130,459,631,616 members"))


def refuses_in_one_line(folder: Path, *cases: tuple[list[str], str]) -> None:
    """``bench search ARGS`` exits 2 with one line holding the message, writing nothing."""
    env = {**os.environ, "NANOSD_NAS_HOME": str(folder)}
    for args, message in cases:
        result = subprocess.run(
            [sys.executable, "-m", "nanosd_nas", "bench", "search", *args],
            capture_output=True, text=True, timeout=120, env=env, check=False, cwd=folder)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not any(folder.iterdir())


@pytest.mark.slow
def test_the_real_objective_scores_a_subspace_beside_the_surrogate(tables, home, monkeypatch):
    from nanosd_nas.search._bench_samplers import bench_search
    from nanosd_nas.search._real_objective import real_tables, restrict
    from nanosd_nas.search.evaluators import BankEvaluator

    monkeypatch.setenv("NANOSD_NAS_HOME", str(home))
    fixed = {"E1": 3, "E2": 3, "E3": 3, "D3": 7, "D2": 7}  # D1 free: 8 members
    restriction = restrict(tables.space, fixed)
    sub = restriction.sub
    assert sub.size == 8 and [d.name for d in sub.dimensions] == ["D1"]
    members = all_members(sub)
    for member, lifted in zip(members, restriction.lift(members), strict=True):
        assert sub.spec(tuple(member), "mini") == tables.space.spec(tuple(lifted), "mini")
    surrogate, real, scoring = real_tables(tables, fixed)
    assert scoring["members"] == 8 and scoring["fixed"] == "E1=3,E2=3,E3=3,D3=7,D2=7"
    real_values = real.objectives.values(members)
    surrogate_values = surrogate.objectives.values(members)
    assert real_values[:, :2].tolist() == surrogate_values[:, :2].tolist()  # latency, params
    assert surrogate_values.tolist() == tables.objectives.values(restriction.lift(members)).tolist()
    # The real fidelity is the distill evaluator's score of the assembled member.
    evaluator = BankEvaluator.on(tables.objectives.fidelity.bank)
    assert real_values[2, 2] == pytest.approx(
        evaluator.evaluate(sub.spec(tuple(members[2]), "mini")).objectives["fidelity"])
    assert not np.allclose(real_values[:, 2], surrogate_values[:, 2])
    # Scores are kept: a second run scores nothing and reads the same table.
    _, again, rescored = real_tables(tables, fixed)
    assert rescored["scoring_s"] == 0 and again.objectives.values(members).tolist() == (
        real_values.tolist())
    report = bench_search(tables.space, "mini", trials=[3, 6], seeds=1,
                          samplers=["tpe", "random"], objective="real", fixed=fixed,
                          teacher="demo", settings=TINY_BANK, plan=TINY_PLAN)
    assert report["objective"] == "real" and report["space_size"] == 8
    assert report["whole_space"] == {"space": "nanosd", "space_size": 32768}
    for name in ("tpe", "random"):
        for budget in ("3", "6"):
            pair = report["side_by_side"][name][budget]
            assert 0 < pair["real"] <= 1 and 0 < pair["surrogate"] <= 1
    assert -1 <= report["subspace"]["fidelity_spearman_surrogate_vs_real"] <= 1


def test_bad_objective_and_fix_are_one_line_and_no_work(tmp_path):
    refuses_in_one_line(tmp_path, (["--objective", "fancy"], "--objective 'fancy'"),
                        (["--fix", "E1=1"], "add --objective real"),
                        (["--objective", "real", "--fix", "E9=1"], "no dimension 'E9'"),
                        (["--objective", "real", "--fix", "E1=4"], "E1 has choices 0..3"),
                        (["--objective", "real", "--fix", "E1"], "NAME=INDEX"))
