"""Calibrate a device for a space: block table, whole-model measurements, predictor.

1. Profile every distinct block of the space once (the device's block latency table).
2. Measure whole components of ``initial`` random members; fit the predictor.
3. ``rounds`` times: among a pool of unmeasured members, measure the ``per_round`` whose
   predicted U-Net latency the ensemble is least sure of (largest relative spread); refit.
4. Measure ``held_out`` fresh random members never used for training and report the accuracy.

Components are measured once per distinct component (a space whose VAE is fixed measures its
VAE once). The device measures one model at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from nanosd_nas.latency_models._features import PREDICTOR_COLUMNS, SpaceFeatures, sample_members
from nanosd_nas.latency_models._measure import ComponentMeasurer, component_key, with_scale
from nanosd_nas.latency_models._predictor import (
    LatencyPredictor,
    RidgeEnsemble,
    accuracy,
    pipeline_latency,
)
from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models._records import LatencyInputError, MeasurementRecord, now_iso
from nanosd_nas.latency_models._store import LatencyStore
from nanosd_nas.latency_models._table import STATISTICS, BlockLatencyTable, measure_blocks
from nanosd_nas.latency_models.agent import LatencyStats
from nanosd_nas.spaces import COMPONENTS, Block, Choices, Space, decompose

#: ``on_progress(phase, done, total)``: phases are ``blocks``, ``train``, ``held-out``.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CalibrationPlan:
    """How much to measure. Defaults fit ``nanosd`` at ``mini`` in minutes on 2 cores."""

    initial: int = 40
    rounds: int = 3
    per_round: int = 20
    pool: int = 2000
    held_out: int = 30
    statistic: str | None = None  # None: the profiler's own (``Profiler.statistic``)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.statistic is not None and self.statistic not in STATISTICS:
            raise LatencyInputError(f"statistic {self.statistic!r} is not one of {STATISTICS}")
        if self.initial < 2:
            raise LatencyInputError(f"initial={self.initial}: need at least 2 training members")
        for name in ("rounds", "per_round", "held_out"):
            if getattr(self, name) < 0:
                raise LatencyInputError(f"{name}={getattr(self, name)} must not be negative")

    @property
    def training_size(self) -> int:
        return self.initial + self.rounds * self.per_round


@dataclass
class Calibration:
    """What calibration produced: the predictor and what it measured."""

    predictor: LatencyPredictor
    training: list[Choices]
    held_out: list[Choices]
    held_out_measured: dict[str, np.ndarray]
    seconds: float


def _known_blocks(store: LatencyStore | None, profiler: Profiler, scale: str,
                  statistic: str) -> dict[str, LatencyStats]:
    """Block measurements this device already holds under the same fingerprint (this host's,
    with the same reference timing) and scale; any other is measured again, never reused."""
    if store is None:
        return {}
    wanted = {**profiler.fingerprint(), "scale": scale}
    return {record.key: record.stats
            for record in store.measurements(profiler.device, kind="block")
            if record.scale == scale and record.stats.fingerprint == wanted
            and getattr(record.stats, statistic) is not None}


def build_block_table(
    space: Space, scale: str, profiler: Profiler, *, statistic: str = "p10_ms",
    store: LatencyStore | None = None, on_progress: ProgressCallback | None = None,
    reuse: bool = True,
) -> BlockLatencyTable:
    """Profile every distinct block of ``space`` at ``scale`` once per device: with ``reuse``,
    blocks the ``store`` already holds for this device (same fingerprint and scale) are not
    measured again."""
    blocks = SpaceFeatures(space, scale, lambda _: 0.0).all_blocks()
    table = BlockLatencyTable(device=profiler.device, scale=scale, statistic=statistic)
    known = _known_blocks(store, profiler, scale, statistic) if reuse else {}
    table.entries.update({key: known[key] for key in blocks.keys() & known.keys()})
    by_member: dict[Choices, list[Block]] = {}
    for key, (choices, block) in blocks.items():
        if key not in table.entries:
            by_member.setdefault(choices, []).append(block)
    done = len(table.entries)

    def measured(block: Block, stats: LatencyStats) -> None:
        nonlocal done
        done += 1
        stats = with_scale(stats, scale)
        table.entries[block.key] = stats
        if store is not None:
            store.add_measurements([MeasurementRecord(
                device=profiler.device, kind="block", key=block.key, component=block.component,
                scale=scale, stats=stats)])
        if on_progress:
            on_progress("blocks", done, len(blocks))

    for choices, member_blocks in by_member.items():
        measure_blocks(space.spec(choices, scale), member_blocks, profiler, on_measured=measured)
    return table


def _fit(features: SpaceFeatures, members: list[Choices], targets: dict[str, list[float]],
         seed: int) -> dict[str, RidgeEnsemble]:
    x = features.features(np.array(members))
    return {c: RidgeEnsemble.fit(x[c], np.array(targets[c]), seed=seed, subsets=PREDICTOR_COLUMNS)
            for c in COMPONENTS}


def _checked_plan(plan: CalibrationPlan, space: Space, profiler: Profiler) -> CalibrationPlan:
    """``plan`` with its statistic set (the profiler's by default), if it fits the device and
    the space."""
    if plan.statistic is None:
        plan = replace(plan, statistic=profiler.statistic)
    if plan.statistic == "normalised_ms" and profiler.statistic != "normalised_ms":
        raise LatencyInputError(f"device {profiler.device!r} does not report normalised_ms "
                                "(only local devices time against the reference model); "
                                "choose p10_ms")
    if plan.training_size + plan.held_out > space.size:
        raise LatencyInputError(f"space {space.name!r} has {space.size} members, fewer than the "
                                f"{plan.training_size + plan.held_out} this plan measures")
    return plan


def _least_sure(pool: list[Choices], features: SpaceFeatures, models: dict[str, RidgeEnsemble],
                n: int) -> list[Choices]:
    """The ``n`` members of ``pool`` whose predicted pipeline latency the ensemble agrees on
    least (relative spread): measuring them teaches the predictor most."""
    pool_features = features.features(np.array(pool))
    members = pipeline_latency(
        {c: models[c].predict_members(pool_features[c]) for c in COMPONENTS}, steps=1)
    doubt = members.std(axis=1) / np.abs(members.mean(axis=1))
    return [pool[i] for i in np.argsort(-doubt)[:n]]


def measure_members(members: list[Choices], space: Space, scale: str,
                    measurer: ComponentMeasurer, on_progress: ProgressCallback | None,
                    phase: str = "held-out") -> dict[str, np.ndarray]:
    """Each member's latency per component on the measurer's device, reported as ``phase``."""
    measured: dict[str, list[float]] = {c: [] for c in COMPONENTS}
    for i, member in enumerate(members):
        for component, ms in measurer.measure(space.spec(member, scale)).items():
            measured[component].append(ms)
        if on_progress:
            on_progress(phase, i + 1, len(members))
    return {c: np.array(v) for c, v in measured.items()}


def calibrate(
    space: Space, scale: str, profiler: Profiler, *, plan: CalibrationPlan | None = None,
    store: LatencyStore | None = None, on_progress: ProgressCallback | None = None,
    reuse_blocks: bool = True,
) -> Calibration:
    """Build the block table and the predictor of ``profiler``'s device for ``space``.

    Every measurement is kept in ``store`` as it is made; with ``reuse_blocks``, blocks it
    already holds for this device (same fingerprint and scale) are not measured again. The
    predictor is returned, not saved: :func:`load_or_calibrate` saves it.
    """
    plan = _checked_plan(plan or CalibrationPlan(), space, profiler)
    statistic = str(plan.statistic)
    started = time.perf_counter()
    table = build_block_table(space, scale, profiler, statistic=statistic, store=store,
                              on_progress=on_progress, reuse=reuse_blocks)
    features = SpaceFeatures(space, scale, table.latency)
    features.verify()
    measurer = ComponentMeasurer(profiler=profiler, statistic=statistic, scale=scale,
                                 store=store)
    targets: dict[str, list[float]] = {c: [] for c in COMPONENTS}
    training: list[Choices] = []

    def measure_into(members: list[Choices]) -> None:
        for member in members:
            for component, ms in measurer.measure(space.spec(member, scale)).items():
                targets[component].append(ms)
            training.append(member)
            if on_progress:
                on_progress("train", len(training), plan.training_size)

    measure_into(sample_members(space, plan.initial, seed=plan.seed))
    models = _fit(features, training, targets, plan.seed)
    for round_ in range(plan.rounds):
        pool = sample_members(space, min(plan.pool, space.size - len(training)),
                              seed=plan.seed + 1000 + round_, exclude=training)
        measure_into(_least_sure(pool, features, models, plan.per_round))
        models = _fit(features, training, targets, plan.seed)

    held_out = sample_members(space, plan.held_out, seed=plan.seed + 7, exclude=training)
    held = measure_members(held_out, space, scale, measurer, on_progress)
    seconds = time.perf_counter() - started
    metadata: dict[str, Any] = {
        "device": profiler.device,
        "fingerprint": {**profiler.fingerprint(), "scale": scale},
        "space": space.name,
        "space_digest": space.digest,
        "scale": scale,
        "statistic": statistic,
        "created": now_iso(),
        "calibration_s": round(seconds, 1),
        "plan": asdict(plan),
        "training_set": {
            "choices": [list(m) for m in training],
            "measured_ms": {c: targets[c] for c in COMPONENTS},
        },
        "blocks": len(table.entries),
    }
    predictor = LatencyPredictor(table=table, models=models, metadata=metadata)
    if held_out:
        metadata["held_out"] = held_out_metrics(predictor, space, held_out, held)
    return Calibration(predictor=predictor, training=training, held_out=held_out,
                       held_out_measured=held, seconds=seconds)


def held_out_metrics(predictor: LatencyPredictor, space: Space, members: list[Choices],
                     measured: dict[str, np.ndarray], steps: int = 1) -> dict[str, Any]:
    """Accuracy on members measured but never trained on: per component and for the pipeline
    of ``steps`` U-Net evaluations; and ``varying``, the components whose latency varies across
    ``space`` (:func:`varying_components`), whose figures are the ones to quote first: a
    component the space fixes adds the same latency to every member, which flatters the
    pipeline's figure."""
    prediction = predictor.predict_choices(space, np.array(members))
    metrics: dict[str, Any] = {
        c: accuracy(prediction.mean[c], measured[c]) for c in COMPONENTS
    }
    pipeline = pipeline_latency(measured, steps)
    predicted = prediction.pipeline(steps)
    # The points themselves too, for the predicted-vs-measured plots of the dashboard.
    points = {"predicted_ms": [round(float(v), 4) for v in predicted],
              "measured_ms": [round(float(v), 4) for v in pipeline]}
    metrics["pipeline"] = {**accuracy(predicted, pipeline), "steps": steps, "points": points}
    metrics["varying"] = varying_components(space, predictor.identity.scale)
    return metrics


def varying_components(space: Space, scale: str) -> list[str]:
    """The components (in ``COMPONENTS`` order) whose blocks some dimension of ``space`` changes
    at ``scale``; the others are the same in every member (``nanosd``'s VAE: only its U-Net
    varies).

    Each dimension is moved through its choices from either extreme of the space, one at a
    time, as the slot probing of :class:`SpaceFeatures` does.
    """
    def keys(choices: Choices) -> dict[str, str]:
        blocks = decompose(space.spec(choices, scale))
        return {c: component_key(blocks, c) for c in COMPONENTS}

    varying: set[str] = set()
    for reference in space.extremes():
        base = keys(reference)
        for d, cardinality in enumerate(space.cardinalities):
            for choice in range(cardinality):
                if choice != reference[d]:
                    moved = keys((*reference[:d], choice, *reference[d + 1:]))
                    varying.update(c for c in COMPONENTS if moved[c] != base[c])
    return [c for c in COMPONENTS if c in varying]
