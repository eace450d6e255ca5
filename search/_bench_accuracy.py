"""``bench accuracy``: does the fidelity proxy order students as the quality of their samples does?

Candidates come from ``nanosd`` and ``nanosd-scaled`` at the teacher's scale. From ``nanosd`` a
pool of random members is scored by the proxy and candidates are taken across its range: both
extremes of the proxy, the proxy's front against parameters, then members at evenly spaced
quantiles of the proxy. ``nanosd-scaled``'s members each need their own bank entries (about two
minutes each on a 2-core CPU), so its candidates (10% by default) are its smallest member and
random ones, no pool; its largest is the teacher, already among ``nanosd``'s. For every
candidate: the proxy (``fidelity``, the distill evaluator's score), every ground-truth metric
(see the teacher package's truth module: paired PSNR and SSIM against the teacher's samples, FID
and KID against held-out real images, class accuracy; at 25 and 4 sampling steps), and the
baselines (parameters, MACs, transformers kept, the surgery-only score where surgery can score
it).

Spearman's and Kendall's coefficients are oriented so that higher is better (FID and KID are
negated), each with a paired bootstrap 95% interval. The top-10 overlap counts the candidates
among the proxy's ten best that are among the ten best by paired PSNR at 25 steps. The proxy's
spread: the ``nanosd`` candidates scored again on a bank distilled from another data seed.
``by_space`` gives the target's agreement within each space alone.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import bootstrap, kendalltau, spearmanr

from nanosd_nas.search.distill import BlockBank, DistillSettings, load_teacher, stage_variants
from nanosd_nas.search.evaluators import BankEvaluator, EvaluatorError, resolve_device
from nanosd_nas.search.teacher import (
    FEATURES_FILE,
    TruthReference,
    TruthSettings,
    heldout_set,
    load_features,
)
from nanosd_nas.spaces import Space, count, load_space

Progress = Callable[[str, int, int], None]
#: The truth metric the target is stated against.
TARGET_METRIC = "psnr_25"
_LOWER_IS_BETTER = ("fid", "kid")
_RESAMPLES = 999
#: Samples per U-Net call of ground truth (larger batches run faster on a CPU; 50 holds the
#: default 10 classes x 5 in one call).
_SAMPLE_BATCH = 50


def _quiet(phase: str, done: int, total: int) -> None:
    return None


def _front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pool's members that no other beats on both higher fidelity and fewer parameters."""
    return [r for r in rows if not any(
        o["proxy"] >= r["proxy"] and o["params"] <= r["params"]
        and (o["proxy"], o["params"]) != (r["proxy"], r["params"]) for o in rows)]


def stratified(pool: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` rows of ``pool`` across the proxy's range: its extremes, its front against
    parameters (up to a third of ``n``), then evenly spaced quantiles of the rest."""
    ranked = sorted(pool, key=lambda r: r["proxy"])
    chosen = {id(ranked[0]): ranked[0], id(ranked[-1]): ranked[-1]}
    for row in sorted(_front(pool), key=lambda r: r["params"])[: max(1, n // 3)]:
        chosen.setdefault(id(row), row)
    rest = [r for r in ranked if id(r) not in chosen]
    need = max(0, n - len(chosen))
    for k in range(need):
        if not rest:
            break
        chosen.setdefault(id(row := rest[round(k * (len(rest) - 1) / max(1, need - 1))]), row)
    return list(chosen.values())[:n]


def _oriented(metric: str, values: list[float]) -> list[float]:
    return [-v for v in values] if metric.startswith(_LOWER_IS_BETTER) else values


def rank_agreement(proxy: list[float], truth: list[float], seed: int = 0) -> dict[str, Any]:
    """Spearman's and Kendall's coefficients of ``proxy`` against ``truth`` with paired
    bootstrap 95% intervals (``None`` where either side is constant)."""
    if len(proxy) < 3 or len(set(proxy)) < 2 or len(set(truth)) < 2:
        return {"spearman": None, "spearman_ci95": None, "kendall": None, "kendall_ci95": None,
                "n": len(proxy)}
    out: dict[str, Any] = {"n": len(proxy)}
    for name, function in (("spearman", spearmanr), ("kendall", kendalltau)):
        def statistic(a: np.ndarray, b: np.ndarray, f: Any = function) -> float:
            value = float(f(a, b).statistic)
            return 0.0 if math.isnan(value) else value  # a constant resample: no order

        with warnings.catch_warnings():  # resamples that repeat one pair are constant
            warnings.simplefilter("ignore")
            interval = bootstrap((np.asarray(proxy), np.asarray(truth)), statistic, paired=True,
                                 vectorized=False, n_resamples=_RESAMPLES, method="percentile",
                                 random_state=np.random.default_rng(seed)).confidence_interval
        out[name] = round(statistic(np.asarray(proxy), np.asarray(truth)), 3)
        out[f"{name}_ci95"] = [_finite(interval.low), _finite(interval.high)]
    return out


def _finite(value: float) -> float | None:
    return None if math.isnan(float(value)) else round(float(value), 3)


def _truth_row(report: dict[str, Any]) -> dict[str, float | None]:
    row: dict[str, float | None] = {}
    for steps, figures in report["student"].items():
        for metric in ("psnr_db", "ssim", "fid", "kid", "class_accuracy"):
            row[f"{metric.removesuffix('_db')}_{steps}"] = figures[metric]
    return row


class _Scorer:
    """The proxy, the surgery score and the ground truth of members of one space."""

    def __init__(self, space: Space, bank: BlockBank, reference: TruthReference) -> None:
        self.space, self.bank, self.reference = space, bank, reference
        self.distilled = BankEvaluator.on(bank)
        self.surgery = BankEvaluator.on(bank, distilled=False)

    def proxy(self, choices: tuple[int, ...]) -> dict[str, Any]:
        """The member's proxy and baselines; ``proxy_s`` counts the bank entries it needed."""
        started = time.perf_counter()
        spec = self.space.spec(choices, self.bank.teacher.scale)
        self.bank.build(stage_variants(spec).values())
        counts = count(spec)
        return {"space": self.space.name, "choices": list(choices), "spec_id": spec.spec_id,
                "proxy": self.distilled.evaluate(spec).objectives["fidelity"],
                "params": counts.total_params, "macs": counts.total_macs,
                "transformers": spec.unet.transformers_kept,
                "proxy_s": round(time.perf_counter() - started, 1)}

    def truth(self, row: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        spec = self.space.spec(tuple(row["choices"]), self.bank.teacher.scale)
        try:
            surgery: float | None = self.surgery.evaluate(spec).objectives["fidelity"]
        except EvaluatorError:
            surgery = None
        report = self.reference.score(self.distilled.candidate(spec)).to_dict()
        return {**row, "surgery": surgery, **_truth_row(report),
                "truth_s": round(time.perf_counter() - started, 1)}


def _bank(teacher: Any, settings: DistillSettings, folder: Path | None, device: str
          ) -> BlockBank:
    return BlockBank(teacher, settings=settings, folder=folder, device=device)


def bench_accuracy(
    *, teacher: str = "trained", candidates: int = 40, scaled_share: float = 0.1,
    pool: int = 80, per_class: int = 5, settings: DistillSettings | None = None, seed: int = 0,
    device: str = "auto", bank_folder: Path | None = None, progress: Progress = _quiet,
) -> dict[str, Any]:
    """Run the benchmark (see the module's docstring); the JSON document of its figures.

    The block bank is the project home's (``banks/``, as studies and ``bench search`` use it)
    unless ``bank_folder`` is given: a second run distils nothing it already holds.
    """
    started = time.perf_counter()
    settings = settings or DistillSettings()
    loaded = load_teacher(teacher)
    if loaded.path is None or not (loaded.path / FEATURES_FILE).is_file():
        raise EvaluatorError(f"teacher {loaded.label} ships no feature network "
                             f"({FEATURES_FILE} in its folder): ground truth needs a trained "
                             "teacher such as 'trained' or one made by teacher train")
    features = load_features(loaded.path / FEATURES_FILE)
    timing: dict[str, float] = {}
    real, _ = heldout_set(per_class * 2, loaded.spec.image_size, seed)
    reference = TruthReference.of(loaded, features=features, real=real,
                                  settings=TruthSettings(per_class=per_class, seed=seed,
                                                        batch=_SAMPLE_BATCH),
                                  on_progress=progress)
    timing["teacher_samples"] = time.perf_counter() - started
    where = resolve_device(device)
    bank = _bank(loaded, settings, bank_folder, where)
    n_scaled = round(candidates * scaled_share)
    rows = _candidates(load_space("nanosd"), bank, reference, candidates - n_scaled, pool,
                       seed, progress, timing)
    rows += _candidates(load_space("nanosd-scaled"), bank, reference, n_scaled, 0, seed,
                        progress, timing, frozenset(r["spec_id"] for r in rows))
    other = _bank(loaded, settings.model_copy(update={"data_seed": settings.data_seed + 1}),
                  bank_folder, where)
    before_spread = time.perf_counter()
    spread = _spread(rows, _Scorer(load_space("nanosd"), other, reference), progress)
    timing["spread"] = time.perf_counter() - before_spread
    report = _report(loaded, settings, rows, spread, reference, time.perf_counter() - started)
    return {**report, "timing_s": {k: round(v, 1) for k, v in timing.items()}}


def _candidates(space: Space, bank: BlockBank, reference: TruthReference, n: int, pool: int,
                seed: int, progress: Progress, timing: dict[str, float],
                taken: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """``n`` candidates of ``space`` with their proxy and ground truth, none of them a member
    in ``taken`` (spec ids: the teacher-sized member of both spaces is scored once);
    ``timing`` gets the seconds of its proxies (with the bank entries they needed) and of its
    ground truth."""
    if n <= 0:
        return []
    started = time.perf_counter()
    scorer = _Scorer(space, bank, reference)
    drawn = dict.fromkeys([*space.extremes(), *space.sample(max(pool, n) + len(taken), seed=seed)])
    scale = bank.teacher.scale
    members = [c for c in drawn if space.spec(c, scale).spec_id not in taken]
    if not pool:
        members = members[:n]
    scored = []
    for i, choices in enumerate(members):
        scored.append(scorer.proxy(choices))
        progress(f"proxy {space.name}", i + 1, len(members))
    chosen = stratified(scored, n) if pool else scored
    timing[f"{space.name}_proxies"] = time.perf_counter() - started
    rows = []
    for i, row in enumerate(chosen):
        rows.append(scorer.truth(row))
        progress(f"ground truth {space.name}", i + 1, len(chosen))
    timing[f"{space.name}_truth"] = sum(r["truth_s"] for r in rows)
    return rows


def _spread(rows: list[dict[str, Any]], scorer: _Scorer, progress: Progress) -> dict[str, Any]:
    mine = [r for r in rows if r["space"] == scorer.space.name]
    again = []
    for i, row in enumerate(mine):
        again.append(scorer.proxy(tuple(row["choices"]))["proxy"])
        progress("proxy on a second bank", i + 1, len(mine))
    first = [r["proxy"] for r in mine]
    for row, value in zip(mine, again, strict=True):
        row["proxy_seed1"] = value
    return {"space": scorer.space.name, "n": len(mine),
            "median_abs_difference_db": round(statistics.median(
                abs(a - b) for a, b in zip(first, again, strict=True)), 3) if mine else None,
            **{f"between_seeds_{k}": v for k, v in rank_agreement(first, again).items()
               if k.startswith("spearman")}}


def _report(teacher: Any, settings: DistillSettings, rows: list[dict[str, Any]],
            spread: dict[str, Any], reference: TruthReference, seconds: float) -> dict[str, Any]:
    metrics = [k for k in rows[0] if k.split("_")[0] in
               ("psnr", "ssim", "fid", "kid", "class") and rows[0][k] is not None]
    baselines = {"params": "params", "macs": "macs", "transformers": "transformers",
                 "surgery_only": "surgery"}
    agreement: dict[str, Any] = {}
    for metric in metrics:
        kept = [r for r in rows if r[metric] is not None]
        agreement[metric] = rank_agreement([r["proxy"] for r in kept],
                                           _oriented(metric, [r[metric] for r in kept]))
    base: dict[str, dict[str, Any]] = {}
    for name, key in baselines.items():
        base[name] = {}
        for metric in metrics:
            kept = [r for r in rows if r[metric] is not None and r[key] is not None]
            base[name][metric] = rank_agreement([float(r[key]) for r in kept],
                                                _oriented(metric, [r[metric] for r in kept]))
    by_space = {space: rank_agreement([r["proxy"] for r in rows if r["space"] == space],
                                      [r[TARGET_METRIC] for r in rows if r["space"] == space])
                for space in dict.fromkeys(r["space"] for r in rows)}
    top = sorted(rows, key=lambda r: -r["proxy"])[:10]
    best = sorted(rows, key=lambda r: -r[TARGET_METRIC])[:10]
    target = agreement[TARGET_METRIC]["spearman"]
    best_baseline = max((b[TARGET_METRIC]["spearman"] or -1.0) for b in base.values())
    return {
        "teacher": teacher.label, "teacher_id": teacher.teacher_id, "scale": teacher.scale,
        "proxy": "fidelity (distill evaluator: pipeline one-step denoising PSNR vs the teacher)",
        "settings": settings.model_dump(), "truth": reference.describe(),
        "teacher_truth": {str(steps): {"fid": f.fid, "kid": f.kid,
                                       "class_accuracy": f.class_accuracy}
                          for steps, f in reference.figures.items()},
        "n_candidates": len(rows),
        "spearman_vs_truth": {m: a["spearman"] for m, a in agreement.items()},
        "agreement": agreement,
        "baselines": {n: {m: a["spearman"] for m, a in b.items()} for n, b in base.items()},
        "baselines_agreement": base,
        "best_baseline_spearman": round(best_baseline, 3),
        "margin_over_best_baseline": None if target is None else round(target - best_baseline, 3),
        "by_space": by_space,
        "top10_overlap": len({r["spec_id"] for r in top} & {r["spec_id"] for r in best}),
        "proxy_spread": spread,
        "seconds": round(seconds, 1),
        "rows": rows,
    }
