"""``bench transfer``: how well a predictor moves to a new device with K measured members,
beside a predictor fitted from scratch on the same K members (and the same new block table)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from nanosd_nas.latency_models._calibrate import (
    CalibrationPlan,
    ProgressCallback,
    build_block_table,
    calibrate,
    measure_members,
)
from nanosd_nas.latency_models._devices import Device
from nanosd_nas.latency_models._features import PREDICTOR_COLUMNS, SpaceFeatures, sample_members
from nanosd_nas.latency_models._measure import ComponentMeasurer
from nanosd_nas.latency_models._predictor import RidgeEnsemble, accuracy
from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models._records import LatencyInputError
from nanosd_nas.latency_models._store import LatencyStore
from nanosd_nas.latency_models._transfer import adapt
from nanosd_nas.spaces import COMPONENTS, Space

#: The numbers of measured members the curve is drawn at.
TRANSFER_KS = (5, 10, 20, 40)
_FIGURES = ("within_10pct", "within_5pct", "spearman", "rmspe")
#: Targets with another performance profile that this host can be: label -> how the target
#: differs from the source device.
TRANSFER_TARGETS = ("threads", "int8", "no-graph-optimization")


def transfer_targets(source: Device, labels: tuple[str, ...] = TRANSFER_TARGETS,
                     ) -> dict[str, Device]:
    """The local devices ``bench transfer`` moves ``source``'s predictor to, by label: two
    intra-op threads instead of one (one instead of more), INT8 instead of its precision (FP32
    instead of INT8), or ONNX Runtime's graph optimisations the other way (each a device of
    its own, ``SOURCE-LABEL``, so that its reference timing and measurements stay apart)."""
    if source.kind != "local":
        raise LatencyInputError(f"bench transfer varies a local device; {source.name!r} is "
                                f"{source.kind}")
    unknown = [label for label in labels if label not in TRANSFER_TARGETS]
    if unknown:
        raise LatencyInputError(f"transfer target {unknown[0]!r} does not exist; targets: "
                                f"{', '.join(TRANSFER_TARGETS)}")
    protocol = source.protocol
    changes: dict[str, dict[str, Any]] = {
        "threads": {"protocol": replace(protocol, threads=3 - min(protocol.threads, 2))},
        "int8": {"precision": "int8" if source.precision != "int8" else "fp32"},
        "no-graph-optimization": {"protocol": replace(
            protocol, graph_optimization=not protocol.graph_optimization)},
    }
    return {label: replace(source, name=f"{source.name}-{label}"[:64], added_at="",
                           **changes[label]) for label in labels}


def bench_transfer(
    space: Space, scale: str, source: Profiler, targets: dict[str, Profiler], *,
    plan: CalibrationPlan | None = None, ks: tuple[int, ...] = TRANSFER_KS, test: int = 40,
    component: str = "unet", store: LatencyStore | None = None,
    on_progress: ProgressCallback | None = None, seed: int = 0,
) -> dict[str, Any]:
    """Calibrate ``source`` from scratch, then for each target: measure its block table and
    ``max(ks) + test`` members never trained on by the source; for each K, transfer the
    source's predictor with the first K of them and fit one from scratch on the same K; score
    both on the last ``test`` members (``component``'s latency).

    Args:
        targets: label -> the profiler of a device with another performance profile.
    """
    if component not in COMPONENTS:
        raise LatencyInputError(f"component {component!r} is not one of {', '.join(COMPONENTS)}")
    if not ks or min(ks) < 2:
        raise LatencyInputError(f"K={list(ks)}: every K must be at least 2 (a fit from scratch "
                                "needs two members)")
    started = time.perf_counter()
    plan = replace(plan or CalibrationPlan(), held_out=0)
    calibration = calibrate(space, scale, source, plan=plan, store=store,
                            on_progress=on_progress)
    predictor = calibration.predictor
    pairs = []
    for label, target in targets.items():
        pair_started = time.perf_counter()
        table = build_block_table(space, scale, target, statistic=target.statistic,
                                  store=store, on_progress=on_progress)
        features = SpaceFeatures(space, scale, table.latency)
        members = sample_members(space, max(ks) + test, seed=seed + 300,
                                 exclude=calibration.training)
        measurer = ComponentMeasurer(profiler=target, statistic=target.statistic, scale=scale,
                                     store=store)
        measured = measure_members(members, space, scale, measurer, on_progress,
                                   f"{label}")
        test_x = features.features(np.array(members[max(ks):]))
        truth = measured[component][max(ks):]

        def scored(model: RidgeEnsemble, x: np.ndarray = test_x[component],
                   truth: np.ndarray = truth) -> dict[str, Any]:
            figures = accuracy(model.predict_members(x).mean(axis=1), truth)
            return {k: None if figures[k] is None else round(float(figures[k] or 0.0), 4)
                    for k in _FIGURES}

        curve = []
        for k in ks:
            train = members[:k]
            given = {c: v[:k] for c, v in measured.items()}
            adapted = adapt(predictor, features, train, given)
            scratch = RidgeEnsemble.fit(features.features(np.array(train))[component],
                                        given[component], seed=seed, subsets=PREDICTOR_COLUMNS)
            curve.append({"k": k, "transfer": {**scored(adapted.models[component]),
                                               "basis": adapted.basis[component]},
                          "scratch": scored(scratch)})
        untouched = adapt(predictor, features, [], {}).models[component]
        pairs.append({
            "source": source.device, "target": label, "target_device": target.device,
            "source_fingerprint": predictor.identity.fingerprint,
            "target_fingerprint": target.fingerprint(),
            "measured_range_ms": [round(float(truth.min()), 4), round(float(truth.max()), 4)],
            "source_only": scored(untouched), "curve": curve,
            "seconds": round(time.perf_counter() - pair_started, 1),
        })
    return {"space": space.name, "scale": scale, "component": component,
            "statistic": predictor.identity.statistic, "ks": list(ks), "n_test": test,
            "source_calibration_s": round(calibration.seconds, 1), "pairs": pairs,
            "seconds": round(time.perf_counter() - started, 1)}
