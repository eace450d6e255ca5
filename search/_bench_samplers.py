"""``bench search``'s studies and report: each sampler at each budget over seeds, optionally in
each encoding and with parallel asks, against the exhaustive front of
:func:`search._bench_search.prepare_tables`."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nanosd_nas.latency_models import CalibrationPlan, LatencyStore, ProgressCallback
from nanosd_nas.search._bench_search import (
    BenchSearchError,
    SearchTables,
    StudyOutcome,
    check_samplers,
    prepare_tables,
    run_study,
)
from nanosd_nas.search._encoding import DEFAULT_ENCODING, ENCODINGS
from nanosd_nas.search._search_tables import OBJECTIVES
from nanosd_nas.search._study_config import StudyConfig, default_initial_design
from nanosd_nas.spaces import Space

logger = logging.getLogger(__name__)

#: gp is left out by default: 20 minutes of sampler time per 200-trial study here (README).
DEFAULT_SAMPLERS = ("tpe", "nsga2", "random")
#: The sampler a study gets when it names none.
DEFAULT_SAMPLER: str = StudyConfig.model_fields["sampler"].default
#: The issue's target: the default sampler's share of the reference hypervolume at
#: :data:`TARGET_TRIALS` trials (or the largest budget measured, if that is not one).
TARGET_HV_RATIO = 0.95
TARGET_TRIALS = 500
#: What the fidelity objective is: the bank's stage-additive surrogate, or the ``distill``
#: evaluator's score of each assembled member (on a sub-space).
OBJECTIVE_KINDS = ("surrogate", "real")


def _check(samplers: Sequence[str], budgets: Sequence[int], seeds: int, design: str | None,
           encoding: str, parallelism: int) -> list[str]:
    names = check_samplers(samplers)
    if design not in (None, "corners", "none"):
        raise BenchSearchError(f"initial design {design!r} does not exist; choose corners or "
                               "none")
    if encoding not in ENCODINGS:
        raise BenchSearchError(f"encoding {encoding!r} does not exist; choose from "
                               f"{', '.join(ENCODINGS)}")
    if not budgets or min(budgets) < 1 or seeds < 1:
        raise BenchSearchError(f"trials={list(budgets)} and seeds={seeds} must all be at "
                               "least 1")
    if parallelism < 1:
        raise BenchSearchError(f"parallelism={parallelism} must be at least 1")
    return names


def compare_samplers(
    tables: SearchTables, *, trials: int | Sequence[int] = 200, seeds: int = 3,
    samplers: Sequence[str] = DEFAULT_SAMPLERS, design: str | None = None,
    encoding: str = DEFAULT_ENCODING, compare_encodings: bool = False, parallelism: int = 1,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Each sampler for each budget in ``trials`` at seeds ``0..seeds-1`` in ``encoding``
    (``design``: the initial design of every sampler; None: each sampler's default, as a
    study's); with ``compare_encodings``, the model-based samplers again in every other
    encoding; with ``parallelism`` > 1, at the target budget, asking that many trials before
    telling any, with and without TPE's constant liar. The report ``bench search --json``
    prints."""
    budgets = sorted(set([trials] if isinstance(trials, int) else trials))
    names = _check(samplers, budgets, seeds, design, encoding, parallelism)
    reference = tables.reference
    reference_hv = tables.front.hypervolume(reference, tables.directions)
    target_trials = TARGET_TRIALS if TARGET_TRIALS in budgets else budgets[-1]
    searchers = [n for n in names if n != "random"]  # random draws alike in every encoding
    runs: list[tuple[str, str, int, int, bool | None]] = [
        (name, encoding, 1, budget, None) for name in names for budget in budgets]
    if compare_encodings:
        runs += [(name, other, 1, budget, None) for other in ENCODINGS if other != encoding
                 for name in searchers for budget in budgets]
    if parallelism > 1:
        runs += [(name, encoding, parallelism, target_trials, liar) for name in searchers
                 for liar in ((False, True) if name.startswith("tpe") else (False,))]
    ratios: dict[tuple[str, str, int, int, bool | None], list[StudyOutcome]] = {}
    total, done = len(runs) * seeds, 0
    for run in runs:
        name, coding, batch, budget, liar = run
        for seed in range(seeds):
            outcome = run_study(tables, name, trials=budget, seed=seed, reference=reference,
                                design=design, encoding=coding, parallelism=batch, liar=liar)
            ratios.setdefault(run, []).append(outcome)
            done += 1
            logger.info("%s (%s, %d at a time) %d trials, seed %d: hv ratio %.4f in %.1f s",
                        name, coding, batch, budget, seed, outcome.hypervolume / reference_hv,
                        outcome.seconds)
            if on_progress is not None:
                on_progress("studies", done, total)
    return _report(tables, reference_hv, ratios, names=names, budgets=budgets, seeds=seeds,
                   design=design, encoding=encoding, parallelism=parallelism,
                   target_trials=target_trials)


def bench_search(
    space: Space, scale: str = "mini", *, device: str = "local-cpu",
    trials: int | Sequence[int] = 200, seeds: int = 3,
    samplers: Sequence[str] = DEFAULT_SAMPLERS, design: str | None = None,
    encoding: str = DEFAULT_ENCODING, compare_encodings: bool = False, parallelism: int = 1,
    objective: str = "surrogate", fixed: Mapping[str, int] | None = None,
    steps: int = 1, plan: CalibrationPlan | None = None, teacher: str = "demo",
    settings: Any = None, bank_folder: Path | None = None, store: LatencyStore | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """:func:`search._bench_search.prepare_tables`, then :func:`compare_samplers` (see both
    for the arguments). With ``objective="real"``, the sub-space with ``fixed`` held (see
    :mod:`search._real_objective`) is scored with the ``distill`` evaluator and the samplers
    run on it and on the surrogate's view of the same sub-space, side by side."""
    from nanosd_nas.search._real_objective import check_fixed, real_tables, restrict

    budgets = [trials] if isinstance(trials, int) else list(trials)
    _check(samplers, budgets, seeds, design, encoding, parallelism)  # before minutes of work
    if objective not in OBJECTIVE_KINDS:
        raise BenchSearchError(f"objective {objective!r} does not exist; choose "
                               f"{' or '.join(OBJECTIVE_KINDS)}")
    if objective == "real":  # a bad --fix: before minutes of work
        if fixed is None:
            fixed = check_fixed(space, None)
        else:
            restrict(space, fixed)
    tables = prepare_tables(space, scale, device=device, steps=steps, plan=plan,
                            teacher=teacher, settings=settings, bank_folder=bank_folder,
                            store=store, on_progress=on_progress)
    options: dict[str, Any] = {"trials": budgets, "seeds": seeds, "samplers": samplers,
               "design": design,
               "encoding": encoding, "compare_encodings": compare_encodings,
               "parallelism": parallelism, "on_progress": on_progress}
    if objective == "surrogate":
        return {"objective": "surrogate", **compare_samplers(tables, **options)}
    assert fixed is not None
    surrogate, real, scoring = real_tables(tables, fixed, on_progress=on_progress)
    on_surrogate = compare_samplers(surrogate, **options)
    on_real = compare_samplers(real, **options)
    side_by_side = {name: {budget: {"surrogate": on_surrogate["samplers"][name]["by_trials"][
        budget]["hv_ratio"], "real": row["by_trials"][budget]["hv_ratio"]}
        for budget in row["by_trials"]} for name, row in on_real["samplers"].items()}
    return {"objective": "real", **on_real, "subspace": scoring,
            "surrogate": {key: on_surrogate[key] for key in (
                "samplers", "reference_hv", "reference_front_size", "reference_point",
                "target", "objectives")},
            "side_by_side": side_by_side, "whole_space": {"space": space.name,
                                                          "space_size": space.size}}


def _summary(reference_hv: float, runs: list[StudyOutcome]) -> dict[str, Any]:
    ratios = [r.hypervolume / reference_hv for r in runs]
    return {"hv_ratio": round(statistics.fmean(ratios), 4),
            "hv_ratio_min": round(min(ratios), 4), "hv_ratio_max": round(max(ratios), 4),
            "hv_ratios": [round(r, 4) for r in ratios],
            "seconds": round(statistics.fmean(r.seconds for r in runs), 2),
            "front_size": round(statistics.fmean(r.front_size for r in runs), 1),
            "distinct_members": round(statistics.fmean(r.distinct_members for r in runs), 1)}


def _report(tables: SearchTables, reference_hv: float,
            ratios: dict[tuple[str, str, int, int, bool | None], list[StudyOutcome]], *,
            names: list[str], budgets: list[int], seeds: int, design: str | None,
            encoding: str, parallelism: int, target_trials: int) -> dict[str, Any]:
    largest = budgets[-1]
    samplers: dict[str, dict[str, Any]] = {}
    for name in names:
        by_trials = {str(b): _summary(reference_hv, ratios[(name, encoding, 1, b, None)])
                     for b in budgets}
        samplers[name] = {**by_trials[str(largest)],
                          "initial_design": design or default_initial_design(name),
                          "by_trials": by_trials}
    encodings: dict[str, dict[str, Any]] = {}
    for (name, coding, batch, budget, _), runs in ratios.items():
        if batch == 1 and name != "random":
            encodings.setdefault(coding, {}).setdefault(name, {"by_trials": {}})[
                "by_trials"][str(budget)] = _summary(reference_hv, runs)["hv_ratio"]
    parallel: dict[str, dict[str, float]] = {}
    for (name, _, batch, _, liar), runs in ratios.items():
        if batch > 1:
            parallel.setdefault(name, {"sequential": samplers[name]["by_trials"][
                str(target_trials)]["hv_ratio"]})["constant_liar" if liar else "batched"] = (
                _summary(reference_hv, runs)["hv_ratio"])
    best = max(samplers, key=lambda n: samplers[n]["hv_ratio"])
    at_target = {n: s["by_trials"][str(target_trials)]["hv_ratio"] for n, s in samplers.items()}
    default = DEFAULT_SAMPLER if DEFAULT_SAMPLER in samplers else best
    beats_random = None if "random" not in samplers or default == "random" else all(
        samplers[default]["by_trials"][str(b)]["hv_ratio"]
        > samplers["random"]["by_trials"][str(b)]["hv_ratio"] for b in budgets)
    front = tables.front
    return {
        "space": tables.space.name, "scale": tables.scale, "device": tables.device,
        "space_size": tables.space.size, "trials": largest, "budgets": budgets, "seeds": seeds,
        "encoding": encoding, "default_sampler": default,
        "objectives": [{"name": name, "direction": direction,
                        "range": [float(front.low[i]), float(front.high[i])]}
                       for i, (name, direction) in enumerate(OBJECTIVES)],
        "reference_hv": reference_hv, "reference_front_size": len(front.rows),
        "reference_point": [float(v) for v in tables.reference],
        "tables_s": round(front.seconds, 2),
        "sweep": {"seconds": round(front.seconds, 2), "peak_mb": round(front.peak_mb, 1),
                  "chunk": front.chunk,
                  "members_per_s": round(front.size / max(front.seconds, 1e-9))},
        "samplers": samplers,
        **({"encodings": encodings} if len(encodings) > 1 else {}),
        **({"parallel": {"parallelism": parallelism, "trials": target_trials,
                         "samplers": parallel}} if parallel else {}),
        "target": {"hv_ratio": TARGET_HV_RATIO, "trials": target_trials,
                   "default_sampler": default, "default_hv_ratio": at_target[default],
                   "best_sampler": best, "met": at_target[default] >= TARGET_HV_RATIO,
                   "beats_random": beats_random},
        "predictor": tables.predictor, "bank": tables.bank,
    }
