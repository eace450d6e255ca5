"""``bench predictor``: calibrate a device, then score the predictor on unseen architectures."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from nanosd_nas.latency_models._calibrate import CalibrationPlan, ProgressCallback, calibrate
from nanosd_nas.latency_models._features import FEATURES, sample_members
from nanosd_nas.latency_models._measure import ComponentMeasurer
from nanosd_nas.latency_models._predictor import LatencyPredictor, RidgeEnsemble, accuracy
from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models._records import LatencyInputError
from nanosd_nas.latency_models._store import LatencyStore
from nanosd_nas.spaces import COMPONENTS, Choices, Space

#: Single-feature baselines: each fitted as latency = a * feature + b on the training set.
BASELINES: dict[str, str] = {"params": "params_m", "macs": "macs_g", "block_sum": "block_sum"}


def bench_predictor(
    space: Space, scale: str, profiler: Profiler, *, plan: CalibrationPlan | None = None,
    test: int = 60, repeats: int = 10, component: str = "unet",
    store: LatencyStore | None = None, on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Calibrate ``profiler``'s device on ``space``, measure ``test`` members it never trained
    on, and compare the predictor with the params, MACs and block-sum baselines on
    ``component``'s latency. Also re-measures ``repeats`` members to report how well the
    learned statistic repeats.

    Calibration starts from scratch (its time is a figure of the benchmark); every
    measurement is kept in ``store`` when given. The benchmark's predictor is not saved: it
    would replace the device's own, calibrated with held-out members.
    """
    if component not in COMPONENTS:
        raise LatencyInputError(f"component {component!r} is not one of {', '.join(COMPONENTS)}")
    plan = replace(plan or CalibrationPlan(), held_out=0)
    calibration = calibrate(space, scale, profiler, plan=plan, store=store,
                            on_progress=on_progress, reuse_blocks=False)
    predictor = calibration.predictor
    statistic = predictor.identity.statistic
    features = predictor.space_features(space)

    held_out = sample_members(space, test, seed=plan.seed + 99, exclude=calibration.training)
    measurer = ComponentMeasurer(profiler=profiler, statistic=statistic, scale=scale,
                                 store=store, check_output=True)
    measured, snr = [], []
    for i, member in enumerate(held_out):
        converted = len(profiler.output_snr)
        measured.append(measurer.measure(space.spec(member, scale))[component])
        snr += [db for part, db in profiler.output_snr[converted:] if part == component]
        if on_progress:
            on_progress("test", i + 1, test)
    truth = np.array(measured)
    predicted = predictor.predict_choices(space, np.array(held_out)).mean[component]

    train_x = features.features(np.array(calibration.training))[component]
    train_y = np.array(predictor.metadata["training_set"]["measured_ms"][component])
    test_x = features.features(np.array(held_out))[component]
    baselines = {}
    for name, feature in BASELINES.items():
        column = FEATURES.index(feature)
        model = RidgeEnsemble.fit(train_x[:, [column]], train_y, members=1)
        baselines[name] = accuracy(model.predict_members(test_x[:, [column]])[:, 0], truth)

    return {
        "space": space.name,
        "scale": scale,
        "device": profiler.device,
        "fingerprint": profiler.fingerprint(),
        "component": component,
        "statistic": statistic,
        "precision": profiler.precision,
        **accuracy(predicted, truth),
        "n_train": len(calibration.training),
        "n_test": len(held_out),
        "calibration_s": round(calibration.seconds, 1),
        "predict_per_s": _prediction_rate(predictor, space),
        "baselines": baselines,
        "measured_range_ms": [float(truth.min()), float(truth.max())],
        # The held-out models' outputs against FP32 (a converting precision only).
        "output_snr_db": {"median": round(float(np.median(snr)), 2),
                          "min": round(float(np.min(snr)), 2), "n": len(snr)} if snr else None,
        "repeatability": _repeatability(profiler, space, scale, held_out[:repeats],
                                        statistic, component, store),
    }


def _prediction_rate(predictor: LatencyPredictor, space: Space) -> float:
    """Members predicted per second, over the whole space (or 100,000 members of it)."""
    if space.size <= 100_000:
        choices = np.array(list(space.enumerate()))
    else:
        choices = np.array(sample_members(space, 100_000, seed=5))
    predictor.predict_choices(space, choices[:10])  # tabulate the slots outside the timing
    start = time.perf_counter()
    predictor.predict_choices(space, choices)
    return round(len(choices) / (time.perf_counter() - start))


def _repeatability(profiler: Profiler, space: Space, scale: str, members: list[Choices],
                   statistic: str, component: str,
                   store: LatencyStore | None) -> dict[str, Any]:
    """Each member measured twice from scratch (export, session, runs): relative difference."""
    differences = []
    for member in members:
        first, second = (ComponentMeasurer(profiler=profiler, statistic=statistic, scale=scale,
                                           store=store).measure(
            space.spec(member, scale))[component] for _ in range(2))
        differences.append(abs(second / first - 1.0))
    if not differences:
        return {"n": 0}
    return {"n": len(differences), "median_pct": round(100 * float(np.median(differences)), 2),
            "max_pct": round(100 * float(np.max(differences)), 2)}
