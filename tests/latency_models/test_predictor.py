"""Block-table features, the learned predictor, its artifact, and calibration on the real CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nanosd_nas import spaces
from nanosd_nas.latency_models import FileLatencyStore, LocalProfiler, Protocol
from nanosd_nas.latency_models._calibrate import CalibrationPlan, calibrate
from nanosd_nas.latency_models._features import (
    FEATURES,
    PREDICTOR_COLUMNS,
    SpaceFeatures,
    spec_features,
)
from nanosd_nas.latency_models._measure import component_key
from nanosd_nas.latency_models._predictor import (
    LatencyPredictor,
    RidgeEnsemble,
    accuracy,
    spearman,
)


def _fake_latency(block: spaces.Block) -> float:
    return block.macs / 1e6 + 0.01 * block.in_channels


@pytest.mark.parametrize("name", ["nanosd", "nanosd-scaled", "vae"])
@pytest.mark.parametrize("scale", ["mini", "full"])
def test_gathered_space_features_equal_each_specs_own(name, scale):
    space = spaces.load_space(name)
    features = SpaceFeatures(space, scale, _fake_latency)
    sample = space.sample(40, seed=3)
    gathered = features.features(np.array(sample))
    for i, choices in enumerate(sample):
        direct = spec_features(spaces.decompose(space.spec(choices, scale)), _fake_latency)
        for component in spaces.COMPONENTS:
            np.testing.assert_allclose(gathered[component][i], direct[component], rtol=1e-12)


def test_whole_nanosd_space_is_featurised_in_one_batch():
    space = spaces.load_space("nanosd")
    features = SpaceFeatures(space, "mini", _fake_latency)
    everything = features.features(np.array(list(space.enumerate())))
    assert everything["unet"].shape == (32_768, len(FEATURES))
    # 2^15 layouts: the transformer count runs from 0 to 15
    counts = everything["unet"][:, FEATURES.index("count_transformer")]
    assert counts.min() == 0 and counts.max() == 15
    assert len(np.unique(everything["unet"][:, FEATURES.index("block_sum")])) > 100


def test_a_latency_that_bends_away_from_the_block_sum_is_learned():
    # INT8 whole models grow slower than their blocks' sum across a family of widths: the
    # derived column (the block sum squared) lets the predictor follow such a curve.
    space = spaces.load_space("nanosd-scaled")
    features = SpaceFeatures(space, "mini", _fake_latency)
    x = features.features(np.array(space.sample(120, seed=4)))["unet"]
    block_sum = x[:, FEATURES.index("block_sum")]
    np.testing.assert_allclose(x[:, FEATURES.index("block_sum_squared")], block_sum**2)
    block_ms = block_sum / 20.0  # a mini U-Net's few milliseconds
    measured = 0.5 + block_ms - 0.4 * block_ms**2 / block_ms.max()
    train, test = slice(0, 60), slice(60, None)
    learned = RidgeEnsemble.fit(x[train], measured[train], members=1,
                                subsets=PREDICTOR_COLUMNS)
    assert np.flatnonzero(learned.coef[0]).tolist() == list(PREDICTOR_COLUMNS[1])
    straight = RidgeEnsemble.fit(x[train][:, [0]], measured[train], members=1)
    bent = accuracy(learned.predict_members(x[test])[:, 0], measured[test])
    line = accuracy(straight.predict_members(x[test][:, [0]])[:, 0], measured[test])
    assert bent["rmspe"] < 0.01 < line["rmspe"]


def test_every_distinct_block_of_the_space_is_found():
    space = spaces.load_space("nanosd")
    found = SpaceFeatures(space, "mini", _fake_latency).all_blocks()
    for choices in space.sample(30, seed=5):
        for block in spaces.decompose(space.spec(choices, "mini")):
            assert block.key in found


def test_ridge_ensemble_recovers_a_linear_law_and_is_unsure_off_the_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 2, size=(60, 3))
    y = 2.0 * x[:, 0] + 0.5 * x[:, 1] + 1.0
    model = RidgeEnsemble.fit(x, y, seed=1)
    inside = model.predict_members(x[:5])
    np.testing.assert_allclose(inside.mean(axis=1), y[:5], rtol=1e-2)
    far = model.predict_members(np.array([[10.0, 10.0, 10.0]]))
    assert far.std() > inside.std(axis=1).max()


def test_accuracy_and_spearman():
    measured = np.array([10.0, 20.0, 30.0, 40.0])
    metrics = accuracy(measured * np.array([1.04, 0.92, 1.2, 1.0]), measured)
    assert metrics["within_5pct"] == 0.5
    assert metrics["within_10pct"] == 0.75
    assert metrics["spearman"] == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 25])) == pytest.approx(0.8)


def test_component_key_separates_components_and_layouts():
    space = spaces.load_space("nanosd")
    a = spaces.decompose(space.spec((0, 0, 0, 0, 0, 0), "mini"))
    b = spaces.decompose(space.spec((1, 0, 0, 0, 0, 0), "mini"))
    assert component_key(a, "unet") != component_key(b, "unet")
    assert component_key(a, "vae_decoder") == component_key(b, "vae_decoder")


@pytest.mark.slow
def test_calibration_on_this_cpu_saves_a_portable_predictor(tmp_path):
    space = spaces.load_space("nanosd")
    store = FileLatencyStore(home=tmp_path)
    profiler = LocalProfiler(protocol=Protocol(threads=1, warmup=2, runs=10))
    plan = CalibrationPlan(initial=5, rounds=1, per_round=2, held_out=3, pool=200)
    result = calibrate(space, "mini", profiler, plan=plan, store=store)
    predictor = result.predictor
    assert len(result.training) == plan.training_size
    assert not set(result.held_out) & set(result.training)
    held = predictor.metadata["held_out"]
    assert set(held) == {"unet", "vae_encoder", "vae_decoder", "pipeline", "varying"}
    assert held["unet"]["n"] == 3
    assert held["varying"] == ["unet"]  # nanosd's VAE is fixed: its figures are not the headline
    assert held["vae_decoder"]["spearman"] is None  # measured once: one latency for every member

    # every distinct block measured once; the fixed VAE measured once, each U-Net once
    blocks = store.measurements("local-cpu", kind="block")
    assert len(blocks) == len({r.key for r in blocks}) == len(predictor.table.entries)
    models = store.measurements("local-cpu", kind="model")
    assert sum(r.component == "vae_decoder" for r in models) == 1
    assert sum(r.component == "unet" for r in models) == plan.training_size + plan.held_out

    # the block table is per device: a second calibration measures no block again
    from nanosd_nas.latency_models._calibrate import build_block_table

    again = build_block_table(space, "mini", profiler, statistic=profiler.statistic, store=store)
    assert again.entries == predictor.table.entries
    assert len(store.measurements("local-cpu", kind="block")) == len(blocks)
    assert all(r.stats.fingerprint["scale"] == "mini" for r in blocks)

    folder = tmp_path / "predictor"
    predictor.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "block_table.json", "model.safetensors", "predictor.json"]
    metadata = json.loads((folder / "predictor.json").read_text())
    assert metadata["fingerprint"]["threads"] == 1 and metadata["scale"] == "mini"
    loaded = LatencyPredictor.load(folder)
    everything = np.array(list(space.enumerate()))
    before = predictor.predict_choices(space, everything)
    after = loaded.predict_choices(space, everything)
    np.testing.assert_allclose(after.mean["unet"], before.mean["unet"])
    # more transformers cost more: the all-transformer U-Net is predicted slowest of the two
    ends = loaded.predict_choices(space, np.array(space.extremes())).mean["unet"]
    assert ends[1] > ends[0] > 0
    # a spec given without its space is predicted from its blocks, the same way
    spec = space.spec(space.extremes()[1], "mini")
    assert loaded.predict_specs([spec]).mean["unet"][0] == pytest.approx(ends[1])
