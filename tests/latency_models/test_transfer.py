"""Few-shot transfer: another device's predictor adapted with the new device's block table and K
measured members; ``bench transfer`` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from latency_support import NANOSD, QUICK, SMALL_YAML

from nanosd_nas import latency_models, spaces
from nanosd_nas.latency_models import (
    BlockLatencyTable,
    FileLatencyStore,
    LatencyInputError,
    LatencyPredictor,
    LatencyStats,
    LocalProfiler,
    calibrate,
    transfer_calibrate,
)
from nanosd_nas.latency_models._calibrate import CalibrationPlan
from nanosd_nas.latency_models._features import (
    FEATURES,
    PREDICTOR_COLUMNS,
    SpaceFeatures,
    sample_members,
)
from nanosd_nas.latency_models._predictor import RidgeEnsemble
from nanosd_nas.latency_models._transfer import adapt, fit_affine

#: 32 members: E1 (4) x D1 (8).
SMALL = spaces.Space(name="nanosd-e1-d1", description="", base=NANOSD.base,
                     dimensions=[d for d in NANOSD.dimensions if d.name in ("E1", "D1")])


def test_the_affine_fit_recovers_a_line_and_is_a_ratio_on_one_member():
    source = np.array([2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0, 11.0])
    a, b = fit_affine(source, 1.8 * source + 0.5)
    assert a == pytest.approx(1.8, rel=0.02) and b == pytest.approx(0.5, abs=0.1)
    assert fit_affine(source[:0], source[:0]) == (1.0, 0.0)
    # One member twice as slow: the whole device is taken as twice as slow, no offset.
    a, b = fit_affine(source[:1], 2 * source[:1])
    assert a == pytest.approx(2.0) and b == pytest.approx(0.0, abs=1e-9)


def _table(device: str, factor: float, space: spaces.Space = SMALL) -> BlockLatencyTable:
    """A block table whose every block costs ``factor`` x its MACs (as a device would)."""
    blocks = SpaceFeatures(space, "mini", lambda _: 0.0).all_blocks()
    table = BlockLatencyTable(device=device, scale="mini", statistic="p10_ms")
    for key, (_, block) in blocks.items():
        ms = factor * (0.01 + block.macs / 1e6)
        table.entries[key] = LatencyStats(ms, ms, ms, ms, 3)
    return table


_TRANSFORMERS = FEATURES.index("count_transformer")


def _source(cost: object, space: spaces.Space = SMALL, n: int = 24
            ) -> tuple[LatencyPredictor, list[tuple[int, ...]]]:
    """A source predictor fitted on ``n`` members whose components cost ``cost(features)``."""
    source_table = _table("source", 1.0, space)
    source_features = SpaceFeatures(space, "mini", source_table.latency)
    members = sample_members(space, n, seed=0)
    x = source_features.features(np.array(members))
    models = {c: RidgeEnsemble.fit(x[c], cost(x[c]), members=2,  # type: ignore[operator]
                                   subsets=PREDICTOR_COLUMNS) for c in spaces.COMPONENTS}
    return LatencyPredictor(table=source_table, models=models, metadata={
        "device": "source", "space": space.name, "space_digest": space.digest, "scale": "mini",
        "statistic": "p10_ms", "created": "2026-12-01T10:00:00.000+00:00",
        "fingerprint": {"cpu": "test", "scale": "mini"}}), members


def test_a_transfer_keeps_what_the_source_learned_where_it_holds_on_the_target():
    # Every transformer costs 20 ms beyond its blocks, on the source and on the target (in
    # nanosd the count of transformers is not a multiple of the block sum).
    def cost(x: np.ndarray) -> np.ndarray:
        return x[:, 0] + 20.0 * x[:, _TRANSFORMERS]

    source, members = _source(cost, NANOSD, 60)
    target = SpaceFeatures(NANOSD, "mini", _table("target", 3.0, NANOSD).latency)
    train = sample_members(NANOSD, 8, seed=5, exclude=members)
    test = sample_members(NANOSD, 40, seed=6, exclude=members + train)
    train_x, test_x = (target.features(np.array(m)) for m in (train, test))
    adapted = adapt(source, target, train, {c: cost(train_x[c]) for c in spaces.COMPONENTS})
    assert adapted.basis["unet"] == "source"
    assert adapted.loo["unet"]["source"] < adapted.loo["unet"]["block_sum"]
    got = adapted.models["unet"].predict_members(test_x["unet"]).mean(axis=1)
    assert np.max(np.abs(got / cost(test_x["unet"]) - 1)) < 0.02


def test_a_transfer_fits_a_device_whose_whole_components_cost_more_than_their_blocks():
    # On the source a component costs its block sum plus 1 ms.
    source, members = _source(lambda x: x[:, 0] + 1.0)
    # The target's blocks are 3x slower, and whole components cost 1.2 x their block sum.
    target = SpaceFeatures(SMALL, "mini", _table("target", 3.0).latency)
    train, test = members[:5], members[5:]
    train_x, test_x = (target.features(np.array(m)) for m in (train, test))
    given = {c: 1.2 * train_x[c][:, 0] for c in spaces.COMPONENTS}
    truth = 1.2 * test_x["unet"][:, 0]
    adaptation = adapt(source, target, train, given)
    # What the source learned (a fixed 1 ms) does not hold here: the target's block sum does.
    assert adaptation.basis["unet"] == "block_sum"
    got = adaptation.models["unet"].predict_members(test_x["unet"]).mean(axis=1)
    assert np.max(np.abs(got / truth - 1)) < 0.05
    untouched = adapt(source, target, [], {}).models["unet"]
    plain = untouched.predict_members(test_x["unet"]).mean(axis=1)
    assert np.max(np.abs(plain / truth - 1)) > 0.1  # the correction did the work


@pytest.mark.slow  # a tiny calibration and an int8 block table: ~70 s
def test_a_transfer_to_an_int8_device_measures_blocks_and_few_members(tmp_path):
    store = FileLatencyStore(home=tmp_path)
    source = calibrate(SMALL, "mini", LocalProfiler(protocol=QUICK, references=store),
                       plan=CalibrationPlan(initial=6, rounds=0, per_round=0, held_out=0),
                       store=store).predictor
    target = LocalProfiler(device="cpu-int8", protocol=QUICK, references=store,
                           precision="int8")
    done = transfer_calibrate(SMALL, "mini", target, source, members=3, held_out=3,
                              store=store)
    identity = done.predictor.identity
    assert identity.device == "cpu-int8" and identity.fingerprint["precision"] == "int8"
    transfer = done.predictor.metadata["transfer"]
    assert transfer["from"] == "local-cpu" and transfer["members"] == 3
    assert set(transfer["affine"]) == set(spaces.COMPONENTS)
    assert len(done.training) == 3 and identity.held_out["pipeline"]["n"] == 3
    # Three members measured for training and three held out: six U-Nets, no more.
    unets = {r.key for r in store.measurements("cpu-int8", kind="model")
             if r.component == "unet"}
    assert len(unets) == 6
    with pytest.raises(LatencyInputError, match="not nanosd "):
        transfer_calibrate(NANOSD, "mini", target, source, members=3)


def test_bench_transfer_refuses_bad_input_in_one_line(tmp_path):
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path)}
    for args, words in ((["--k", "1,5"], "at least 2"), (["--k", "five"], "whole numbers"),
                        (["--targets", "gpu"], "'gpu' does not exist")):
        result = subprocess.run([sys.executable, "-m", "nanosd_nas", "bench", "transfer", *args],
                                capture_output=True, text=True, timeout=120, env=env,
                                check=False)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "measurements").exists()


@pytest.mark.slow  # a tiny calibration, then two targets' blocks and members: ~60 s
def test_bench_transfer_reports_a_curve_per_pair(tmp_path):
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "nanosd_nas", "bench", "transfer", "--initial", "4", "--rounds",
         "0", "--k", "2,4", "--test", "3", "--targets", "threads,no-graph-optimization",
         "--db", f"sqlite:///{tmp_path / 'bench.db'}", "--json"],
        capture_output=True, text=True, timeout=900, env=env, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [p["target"] for p in report["pairs"]] == ["threads", "no-graph-optimization"]
    for pair in report["pairs"]:
        assert [point["k"] for point in pair["curve"]] == [2, 4]
        for point in pair["curve"]:
            assert set(point) == {"k", "transfer", "scratch"}
            assert 0.0 <= point["transfer"]["within_10pct"] <= 1.0
            assert point["transfer"]["basis"] in ("source", "block_sum")
    threads, graph = (p["target_fingerprint"] for p in report["pairs"])
    assert threads["threads"] == 2 and graph["graph_optimization"] is False
    assert report["pairs"][0]["source"] == latency_models.LOCAL_CPU


@pytest.mark.slow  # two tiny calibrations, one of them a transfer at int8: ~60 s
def test_device_calibrate_from_another_device_transfers_and_says_so(tmp_path):
    env = {**os.environ, "NANOSD_NAS_HOME": str(tmp_path),
           "NANOSD_NAS_DATABASE_URL": f"sqlite:///{tmp_path / 'nas.db'}"}
    space = tmp_path / "small.yaml"
    space.write_text(SMALL_YAML)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                              text=True, timeout=900, env=env, check=False)

    assert cli("device", "add", "npu", "--kind", "local", "--precision", "int8", "--warmup",
               "0", "--runs", "3").returncode == 0
    missing = cli("device", "calibrate", "npu", "--space", str(space), "--from", "local-cpu")
    assert missing.returncode == 2 and "calibrate it first" in missing.stderr
    source = cli("device", "calibrate", "local-cpu", "--space", str(space), "--initial", "6",
                 "--rounds", "0", "--held-out", "2", "--json")
    assert source.returncode == 0, source.stderr
    moved = cli("device", "calibrate", "npu", "--space", str(space), "--from", "local-cpu",
                "--members", "3", "--held-out", "3", "--json")
    assert moved.returncode == 0, moved.stderr
    summary = json.loads(moved.stdout)
    assert summary["transferred_from"] == "local-cpu" and summary["n_train"] == 3
    # Three members are too few to weigh the source's model: the device's own block sum.
    assert summary["transfer_basis"] == dict.fromkeys(spaces.COMPONENTS, "block_sum")
    assert summary["fingerprint"]["precision"] == "int8"
    assert summary["headline"] is not None
    text = cli("device", "calibrate", "npu", "--space", str(space), "--from", "local-cpu",
               "--members", "2", "--held-out", "2")
    assert text.returncode == 0 and "by transfer from local-cpu" in text.stdout
