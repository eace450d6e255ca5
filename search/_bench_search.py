"""``bench search``: how close each Optuna sampler gets to the exhaustive Pareto front.

Every member of the space is scored once on predictor-backed objectives (see
:mod:`search._search_tables`): that gives the exhaustive reference front. The reference point is
the one a study of the same space, device and objectives uses
(:func:`search._front.study_reference`), so the benchmark's hypervolumes and a study's compare.
Each sampler then runs ``trials`` trials per seed in an in-memory study whose objective is a
table lookup, so a trial costs the sampler's own time only; the hypervolume of its trials
against the reference point, over the reference front's, is its ``hv_ratio``.
"""

from __future__ import annotations

import logging
import statistics
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
from nanosd_nas.search._front import hypervolume, pareto_mask, study_reference
from nanosd_nas.search._samplers import SAMPLERS, distributions, initial_design
from nanosd_nas.search._search_tables import (
    OBJECTIVES,
    FidelityTables,
    all_members,
    latency_column,
    params_column,
)
from nanosd_nas.search._study_config import default_initial_design
from nanosd_nas.search.run import space_ranges
from nanosd_nas.spaces import Space

logger = logging.getLogger(__name__)

#: gp is left out by default: 20 minutes of sampler time per 200-trial study here (README).
DEFAULT_SAMPLERS = ("tpe", "nsga2", "random")
#: The issue's target: the best sampler's share of the reference hypervolume.
TARGET_HV_RATIO = 0.95


class BenchSearchError(ValueError):
    """A benchmark asked for what does not exist (a sampler, an initial design) or does not
    fit (a teacher at another scale, no trials)."""


@dataclass(frozen=True)
class SearchTables:
    """Every member's objective values (rows in :func:`all_members` order) and where they
    came from."""

    space: Space
    scale: str
    values: np.ndarray  # (size, len(OBJECTIVES))
    reference: np.ndarray  # the hypervolume reference point, as a study of the space has it
    device: str
    seconds: float  # to fill the table, once predictor and bank were there
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
              reference: np.ndarray, design: str | None = None) -> StudyOutcome:
    """``trials`` trials of ``sampler`` as a study runs them (the same encoding of choices and,
    with ``design`` or the sampler's default, the same initial design, which counts towards
    ``trials``), each scored from ``tables``; the hypervolume of all of them under
    ``reference``."""
    space = tables.space
    names = [d.name for d in space.dimensions]
    encoding = distributions(names, space.cardinalities)

    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        vector = [trial.suggest_int(n, encoding[n].low, encoding[n].high) for n in names]
        row = int(np.ravel_multi_index(vector, space.cardinalities))
        return tuple(float(v) for v in tables.values[row])

    started = time.perf_counter()
    with quiet_optuna():
        directions = [optuna.study.StudyDirection[d.upper()] for d in tables.directions]
        study = optuna.create_study(directions=directions,
                                    sampler=SAMPLERS[sampler](seed))
        if (design or default_initial_design(sampler)) == "corners":
            for member in initial_design(space.cardinalities, trials, seed):
                study.enqueue_trial(dict(zip(names, member, strict=True)))
        study.optimize(objective, n_trials=trials)
    seconds = time.perf_counter() - started
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    values = np.array([t.values for t in done])
    members = {tuple(t.params[n] for n in names) for t in done}
    return StudyOutcome(sampler=sampler, seed=seed,
                        hypervolume=hypervolume(values, tables.directions, reference),
                        front_size=int(pareto_mask(values, tables.directions).sum()),
                        distinct_members=len(members), seconds=seconds)


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
    predictor, calibration_s = ensure_predictor(device, space, scale,
                                                plan=plan or CalibrationPlan(), store=store,
                                                on_progress=on_progress)
    fidelity, bank = _bank_tables(space, scale, teacher=teacher, settings=settings,
                                  folder=bank_folder, on_progress=on_progress)
    started = time.perf_counter()
    members = all_members(space)
    values = np.column_stack([latency_column(predictor, space, members, steps),
                              params_column(space, scale, members),
                              fidelity.fidelity(members)])
    names, directions = [n for n, _ in OBJECTIVES], [d for _, d in OBJECTIVES]
    # A study's ranges (sizes, predicted latency), and fidelity's, which only the bench knows:
    # it moves the reference below 0 dB only if some member scores that low.
    fidelity_column = values[:, names.index("fidelity")]
    ranges = {**space_ranges(space, scale, steps=steps, names=names, predictor=predictor),
              "fidelity": (float(fidelity_column.min()), float(fidelity_column.max()))}
    reference = study_reference(names, directions, ranges=ranges)
    return SearchTables(space=space, scale=scale, values=values, reference=reference,
                        device=device,
                        seconds=time.perf_counter() - started,
                        predictor=_predictor_summary(predictor, calibration_s, steps), bank=bank)


def compare_samplers(
    tables: SearchTables, *, trials: int = 200, seeds: int = 3,
    samplers: Sequence[str] = DEFAULT_SAMPLERS, design: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """The exhaustive front of ``tables`` as reference, then each sampler for ``trials`` trials
    at seeds ``0..seeds-1`` (``design``: the initial design of every sampler; None: each
    sampler's default, as a study's): the report ``bench search --json`` prints."""
    names = check_samplers(samplers)
    if design not in (None, "corners", "none"):
        raise BenchSearchError(f"initial design {design!r} does not exist; choose corners or "
                               "none")
    if trials < 1 or seeds < 1:
        raise BenchSearchError(f"trials={trials} and seeds={seeds} must both be at least 1")
    values, reference = tables.values, tables.reference
    on_front = pareto_mask(values, tables.directions)
    reference_hv = hypervolume(values[on_front], tables.directions, reference)
    outcomes: dict[str, list[StudyOutcome]] = {name: [] for name in names}
    total, done = len(names) * seeds, 0
    for name in names:
        for seed in range(seeds):
            outcome = run_study(tables, name, trials=trials, seed=seed, reference=reference,
                                design=design)
            outcomes[name].append(outcome)
            done += 1
            logger.info("%s seed %d: hv ratio %.4f in %.1f s", name, seed,
                        outcome.hypervolume / reference_hv, outcome.seconds)
            if on_progress is not None:
                on_progress("studies", done, total)
    return _report(tables, reference, on_front, reference_hv, outcomes, trials=trials,
                   seeds=seeds, design=design)


def bench_search(
    space: Space, scale: str = "mini", *, device: str = "local-cpu", trials: int = 200,
    seeds: int = 3, samplers: Sequence[str] = DEFAULT_SAMPLERS, design: str | None = None,
    steps: int = 1,
    plan: CalibrationPlan | None = None, teacher: str = "demo", settings: Any = None,
    bank_folder: Path | None = None, store: LatencyStore | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """:func:`prepare_tables`, then :func:`compare_samplers` (see both for the arguments)."""
    check_samplers(samplers)  # a typo fails before minutes of calibration
    tables = prepare_tables(space, scale, device=device, steps=steps, plan=plan,
                            teacher=teacher, settings=settings, bank_folder=bank_folder,
                            store=store, on_progress=on_progress)
    return compare_samplers(tables, trials=trials, seeds=seeds, samplers=samplers,
                            design=design, on_progress=on_progress)


def _report(tables: SearchTables, reference: np.ndarray, on_front: np.ndarray,
            reference_hv: float, outcomes: dict[str, list[StudyOutcome]], *, trials: int,
            seeds: int, design: str | None) -> dict[str, Any]:
    samplers: dict[str, dict[str, Any]] = {}
    for name, runs in outcomes.items():
        ratios = [r.hypervolume / reference_hv for r in runs]
        samplers[name] = {
            "hv_ratio": round(statistics.fmean(ratios), 4),
            "hv_ratio_min": round(min(ratios), 4), "hv_ratio_max": round(max(ratios), 4),
            "hv_ratios": [round(r, 4) for r in ratios],
            "initial_design": design or default_initial_design(name),
            "seconds": round(statistics.fmean(r.seconds for r in runs), 2),
            "front_size": round(statistics.fmean(r.front_size for r in runs), 1),
            "distinct_members": round(statistics.fmean(r.distinct_members for r in runs), 1),
        }
    best = max(samplers, key=lambda n: samplers[n]["hv_ratio"])
    searchers = [n for n in samplers if n != "random"]
    best_searcher = max(searchers, key=lambda n: samplers[n]["hv_ratio"], default=None)
    values = tables.values
    return {
        "space": tables.space.name, "scale": tables.scale, "device": tables.device,
        "space_size": tables.space.size, "trials": trials, "seeds": seeds,
        "objectives": [
            {"name": name, "direction": direction, "range": [float(values[:, i].min()),
                                                              float(values[:, i].max())]}
            for i, (name, direction) in enumerate(OBJECTIVES)],
        "reference_hv": reference_hv, "reference_front_size": int(on_front.sum()),
        "reference_point": [float(v) for v in reference], "tables_s": round(tables.seconds, 2),
        "samplers": samplers,
        "target": {"hv_ratio": TARGET_HV_RATIO, "best_sampler": best,
                   "met": samplers[best]["hv_ratio"] >= TARGET_HV_RATIO,
                   "beats_random": None if "random" not in samplers or best_searcher is None
                   else samplers[best_searcher]["hv_ratio"] > samplers["random"]["hv_ratio"]},
        "predictor": tables.predictor, "bank": tables.bank,
    }
