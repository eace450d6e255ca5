"""``bench search``: how close each Optuna sampler gets to the exhaustive Pareto front.

Every member of the space is scored on predictor-backed objectives (see
:mod:`search._search_tables`), swept in chunks (:mod:`search._space_front`): that gives the
exhaustive reference front. The reference point is the one a study of the same space, device and
objectives uses (:func:`search._front.study_reference`), so the benchmark's hypervolumes and a
study's compare. Each sampler then runs studies of each budget per seed, in memory, asking and
telling as the runner does (in batches of ``parallelism`` where parallel asks are measured) with
the encoding a study would use; a trial's values are computed from the objectives at once, so a
trial costs the sampler's own time only. The hypervolume of a study's trials against the
reference point, over the reference front's, is its ``hv_ratio``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from nanosd_nas import latency_models
from nanosd_nas.latency_models import (
    CalibrationPlan,
    LatencyPredictor,
    LatencyStore,
    ProgressCallback,
)
from nanosd_nas.search._encoding import DEFAULT_ENCODING, Encoding
from nanosd_nas.search._front import hypervolume, pareto_mask, study_reference
from nanosd_nas.search._samplers import SAMPLERS, initial_design, make_sampler
from nanosd_nas.search._search_tables import (
    OBJECTIVES,
    FidelityTables,
    Objectives,
    SpaceObjectives,
)
from nanosd_nas.search._space_front import (
    SpaceFront,
    check_sweepable,
    sweep_front,
    write_backdrop,
)
from nanosd_nas.search._study_config import default_initial_design
from nanosd_nas.search.run import space_ranges
from nanosd_nas.spaces import Space

logger = logging.getLogger(__name__)


class BenchSearchError(ValueError):
    """A benchmark asked for what does not exist (a sampler, an initial design) or does not
    fit (a teacher at another scale, no trials)."""


@dataclass(frozen=True)
class SearchTables:
    """The space's objectives, their exhaustive front and where they came from."""

    space: Space
    scale: str
    objectives: Objectives
    front: SpaceFront
    reference: np.ndarray  # the hypervolume reference point, as a study of the space has it
    device: str
    predictor: dict[str, Any]  # which predictor gave latency_ms
    bank: dict[str, Any]  # which bank gave fidelity

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(direction for _, direction in OBJECTIVES)


@dataclass(frozen=True)
class StudyOutcome:
    """One sampler's study at one seed."""

    sampler: str
    seed: int
    hypervolume: float
    front_size: int
    distinct_members: int
    seconds: float


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial log lines and experimental-feature warnings, then restore."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def check_samplers(names: Sequence[str]) -> list[str]:
    """``names`` as a list, or :class:`BenchSearchError` naming an unknown one."""
    if not names:
        raise BenchSearchError("name at least one sampler")
    for name in names:
        if name not in SAMPLERS:
            raise BenchSearchError(f"sampler {name!r} does not exist; choose from "
                             f"{', '.join(SAMPLERS)}")
    return list(dict.fromkeys(names))


def run_study(tables: SearchTables, sampler: str, *, trials: int, seed: int,
              reference: np.ndarray, design: str | None = None,
              encoding: str = DEFAULT_ENCODING, parallelism: int = 1,
              liar: bool | None = None) -> StudyOutcome:
    """``trials`` trials of ``sampler`` as a study runs them: the same encoding of choices,
    the same initial design (``design``, or the sampler's default; it counts towards
    ``trials``) and ``parallelism`` trials asked before any is told (``liar``: whether TPE
    imagines the pending ones; None: as a study of that parallelism does); each trial's values
    from ``tables``; the hypervolume of all of them under ``reference``."""
    space = tables.space
    coding = Encoding(space, encoding)
    distributions = coding.distributions
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def evaluate(member: tuple[int, ...]) -> list[float]:
        if member not in cache:
            cache[member] = tables.objectives.values(np.array([member]))[0]
        return [float(v) for v in cache[member]]

    started = time.perf_counter()
    with quiet_optuna():
        directions = [optuna.study.StudyDirection[d.upper()] for d in tables.directions]
        study = optuna.create_study(directions=directions, sampler=make_sampler(
            sampler, seed, parallel=parallelism > 1 if liar is None else liar))
        if (design or default_initial_design(sampler)) == "corners":
            for member in initial_design(space.cardinalities, trials, seed):
                study.enqueue_trial(coding.params(member))
        for start in range(0, trials, parallelism):
            asked = [study.ask(distributions)
                     for _ in range(min(parallelism, trials - start))]
            for trial in asked:
                study.tell(trial, evaluate(coding.member(trial.params)))
    seconds = time.perf_counter() - started
    values = np.array([evaluate(coding.member(t.params)) for t in study.trials])
    return StudyOutcome(sampler=sampler, seed=seed,
                        hypervolume=hypervolume(values, tables.directions, reference),
                        front_size=int(pareto_mask(values, tables.directions).sum()),
                        distinct_members=len(cache), seconds=seconds)


def ensure_predictor(device: str, space: Space, scale: str, *, plan: CalibrationPlan,
                     store: LatencyStore | None = None,
                     on_progress: ProgressCallback | None = None,
                     ) -> tuple[LatencyPredictor, float | None]:
    """The device's predictor for ``space`` at ``scale`` from ``store`` (the service's
    database, or the project home's files if None), calibrated (and saved there) first if it
    has none made on this host; the calibration's seconds, or None if it was loaded."""
    store = store or latency_models.FileLatencyStore()
    outcome = latency_models.load_or_calibrate(
        space, scale, latency_models.profiler_for(device, store=store), store=store, plan=plan,
        on_progress=on_progress)
    if outcome.action != "loaded":
        logger.info("%s", outcome.message)
    return outcome.predictor, (outcome.calibration.seconds if outcome.calibration else None)


def _bank_tables(space: Space, scale: str, *, teacher: str, settings: Any,
                 folder: Path | None, on_progress: ProgressCallback | None,
                 ) -> tuple[FidelityTables, dict[str, Any]]:
    from nanosd_nas.search.distill import BlockBank, load_teacher, space_variants

    loaded = load_teacher(teacher)
    if loaded.scale != scale:
        raise BenchSearchError(f"teacher {teacher!r} is at scale {loaded.scale!r}, the bench "
                               f"asks for {scale!r}; the block bank distils against the "
                               "teacher's own scale")
    bank = BlockBank(loaded, settings=settings, folder=folder)
    report = bank.build(space_variants(space, scale), on_progress=on_progress)
    tables = FidelityTables(space, scale, bank)
    return tables, {
        "teacher": loaded.teacher_id, "teacher_label": loaded.label,
        "folder": str(bank.folder), "entries": len(report.entries), "built": report.built,
        "reused": report.reused, "build_s": round(report.seconds, 1),
        "settings": bank.settings.model_dump(), "stages": tables.describe(),
    }


def _predictor_summary(predictor: LatencyPredictor, calibration_s: float | None,
                       steps: int) -> dict[str, Any]:
    identity = predictor.identity
    training_set = predictor.metadata.get("training_set", {})  # absent from older artifacts
    return {"device": identity.device, "statistic": identity.statistic,
            "created": identity.created_at, "calibrated_now": calibration_s is not None,
            "calibration_s": None if calibration_s is None else round(calibration_s, 1),
            "n_train": len(training_set.get("choices", [])),
            "steps": steps, "held_out_pipeline": identity.held_out.get("pipeline")}


def prepare_tables(
    space: Space, scale: str = "mini", *, device: str = "local-cpu", steps: int = 1,
    plan: CalibrationPlan | None = None, teacher: str = "demo", settings: Any = None,
    bank_folder: Path | None = None, store: LatencyStore | None = None,
    on_progress: ProgressCallback | None = None,
) -> SearchTables:
    """Score every member of ``space`` on the objectives of :data:`OBJECTIVES`, calibrating the
    device and building the block bank first where they are missing.

    Args:
        space: the search space (every member is scored: mind its size).
        scale: ``mini`` or ``full``; the teacher must be at this scale.
        device: a registered device; calibrated with ``plan`` if it has no predictor.
        steps: U-Net evaluations in the pipeline latency.
        plan: calibration plan, used only when the device needs calibrating.
        teacher: ``demo`` or an SD-1.5 checkpoint path, for the block bank.
        settings: the bank's :class:`search.distill.DistillSettings` (default settings if None).
        bank_folder: the bank's folder; the project home's ``banks/`` if None.
        store: where the device's predictor is (see :func:`ensure_predictor`).
        on_progress: ``(phase, done, total)``.
    """
    check_sweepable(space)  # before minutes of calibration and bank
    predictor, calibration_s = ensure_predictor(device, space, scale,
                                                plan=plan or CalibrationPlan(), store=store,
                                                on_progress=on_progress)
    fidelity, bank = _bank_tables(space, scale, teacher=teacher, settings=settings,
                                  folder=bank_folder, on_progress=on_progress)
    objectives = SpaceObjectives(space, scale, predictor, fidelity, steps=steps)
    names, directions = [n for n, _ in OBJECTIVES], [d for _, d in OBJECTIVES]
    front = sweep_front(objectives, directions, on_progress=on_progress)
    # A study's ranges (sizes, predicted latency), and fidelity's, which only the bench knows:
    # it moves the reference below 0 dB only if some member scores that low.
    fidelity_at = names.index("fidelity")
    ranges = {**space_ranges(space, scale, steps=steps, names=names, predictor=predictor),
              "fidelity": (float(front.low[fidelity_at]), float(front.high[fidelity_at]))}
    reference = study_reference(names, directions, ranges=ranges)
    summary = _predictor_summary(predictor, calibration_s, steps)
    # Kept for the study page, which draws it behind a study of this space (README, Dashboard).
    write_backdrop(front, space=space, scale=scale, device=device, objectives=OBJECTIVES,
                   about={"steps": steps, "predictor_created": summary["created"],
                          "bank": {k: bank[k] for k in ("teacher", "teacher_label",
                                                        "settings")}})
    return SearchTables(space=space, scale=scale, objectives=objectives, front=front,
                        reference=reference, device=device, predictor=summary, bank=bank)
