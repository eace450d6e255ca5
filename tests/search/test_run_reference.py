"""A study's hypervolume reference point follows the service's one rule, is fixed at its first
complete trial, and the study report says which point its hypervolumes are under."""

from __future__ import annotations

import optuna
import pytest

from nanosd_nas.latency_models import DeviceRegistry
from nanosd_nas.search import StudyRunner, study_reference, write_report
from nanosd_nas.search._objectives import macs_g, params_m
from nanosd_nas.search.run import space_ranges
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import load_space

SIZES = [{"name": "params_m", "direction": "minimize"},
         {"name": "macs_g", "direction": "minimize"}]


@pytest.fixture
def store(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOSD_NAS_HOME", str(tmp_path / "home"))
    with Store.open(database_url, upgrade=True) as opened:
        opened.upsert_device(DeviceRegistry().get("local-cpu"))
        yield opened


def test_a_study_measures_its_hypervolume_from_the_rules_point(store, tmp_path):
    document = {"name": "sized", "space": "nanosd", "scale": "mini", "objectives": SIZES,
                "sampler": "random", "n_trials": 6, "seed": 1, "pipeline": {"steps": 4}}
    store.create_study("sized", document, device="local-cpu")
    summary = StudyRunner(store, "sized").run()
    names, directions = ["params_m", "macs_g"], ["minimize", "minimize"]
    expected = study_reference(names, directions, ranges=space_ranges(
        load_space("nanosd"), "mini", steps=4, names=names))
    study = optuna.load_study(study_name="sized", storage=store.url)
    assert study.user_attrs["reference_point"] == pytest.approx(expected.tolist())
    space = load_space("nanosd")
    largest = space.spec(space.extremes()[1], "mini")
    # 10% beyond the largest member, with the study's own pipeline (4 U-Net steps).
    assert expected.tolist() == pytest.approx([1.1 * params_m(largest, 4),
                                               1.1 * macs_g(largest, 4)])
    history = store.hypervolume_history("sized")
    assert history[-1].hypervolume == pytest.approx(summary.hypervolume)

    report = write_report(store, "sized", tmp_path / "report.html", x="params_m", y="macs_g")
    text = report.read_text(encoding="utf-8")
    assert f"reference point params_m {expected[0]:.4g}, macs_g {expected[1]:.4g}" in text
