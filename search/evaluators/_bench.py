"""``bench fidelity``: the accuracy evaluator's sanity on a sample of a space's candidates.

What it shows: a student identical to the teacher scores highest; removing more attention
lowers fidelity on average; distillation raises fidelity for most candidates; no scored
candidate carries an untrained parameter; how wide the 95% intervals are; and how long the
block bank takes to build. Figures are given for the headline (pipeline) fidelity and for the
U-Net's noise fidelity, the figure earlier versions called fidelity.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

from nanosd_nas.search.distill import BlockBank, DistillSettings, load_teacher, space_variants
from nanosd_nas.search.evaluators._bank_evaluator import BankEvaluator, resolve_device
from nanosd_nas.search.evaluators._base import EvaluatorError, Progress
from nanosd_nas.spaces import ArchSpec, Space


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return round(float(spearmanr(a, b).statistic), 3)


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean_db": round(statistics.fmean(values), 2),
            "median_db": round(statistics.median(values), 2),
            "min_db": round(min(values), 2), "max_db": round(max(values), 2)}


def _scores(evaluator: BankEvaluator, spec: ArchSpec) -> dict[str, Any] | None:
    """The candidate's figures, or None when the evaluator refuses it (surgery leaves
    parameters untrained where widths differ from the teacher's)."""
    try:
        result = evaluator.evaluate(spec)
    except EvaluatorError:
        return None
    return {**result.objectives, "ci95": result.details["fidelity_ci95"],
            "untrained": result.details["untrained_parameters"]}


def _row(spec: ArchSpec, choices: tuple[int, ...], surgery: BankEvaluator,
         distilled: BankEvaluator) -> dict[str, Any]:
    before, after = _scores(surgery, spec), _scores(distilled, spec)
    if after is None:
        raise EvaluatorError(f"the distilled candidate {spec.spec_id} was refused")
    return {
        "choices": list(choices), "transformers": spec.unet.transformers_kept,
        "surgery_db": None if before is None else before["fidelity"],
        "distilled_db": after["fidelity"], "distilled_ci95": after["ci95"],
        "surgery_unet_db": None if before is None else before["unet_fidelity_db"],
        "distilled_unet_db": after["unet_fidelity_db"], "vae_psnr_db": after["vae_psnr_db"],
        "untrained_parameters": after["untrained"],
    }


def bench_fidelity(
    space: Space, scale: str = "mini", *, teacher: str = "demo", candidates: int = 24,
    settings: DistillSettings | None = None, seed: int = 0, bank_folder: Path | None = None,
    device: str = "auto", progress: Progress | None = None, images: Path | None = None,
    context: Path | None = None,
) -> dict[str, Any]:
    """Build the bank for ``space`` (in a fresh folder unless ``bank_folder`` is given), then
    score ``candidates`` sampled members, plus the smallest and largest, surgery-only and
    distilled."""
    settings = settings or DistillSettings()
    with tempfile.TemporaryDirectory(prefix="nanosd-nas-bank-") as scratch:
        folder = bank_folder or Path(scratch)
        loaded = load_teacher(teacher)
        bank = BlockBank(loaded, settings=settings, folder=folder,
                         device=resolve_device(device), images=images, context=context)
        distilled = BankEvaluator.on(bank)
        surgery = BankEvaluator.on(bank, distilled=False)
        started = time.perf_counter()
        _ = bank.data, bank.teacher_trace("distill"), bank.teacher_trace("heldout")
        data_s = time.perf_counter() - started
        build = bank.build(space_variants(space, loaded.scale), on_progress=progress)
        members = [*space.extremes(), *space.sample(candidates, seed=seed)]
        members = list(dict.fromkeys(members))
        rows = []
        scoring_started = time.perf_counter()
        for i, choices in enumerate(members):
            rows.append(_row(space.spec(choices, loaded.scale), choices, surgery, distilled))
            if progress is not None:
                progress("candidates", i + 1, len(members))
        scoring_s = time.perf_counter() - scoring_started
        identical = distilled.evaluate(loaded.spec).objectives["fidelity"]
    return _report(space, loaded, settings, rows, identical, build, data_s, scoring_s)


def _pairs(rows: list[dict[str, Any]], before: str, after: str) -> tuple[list[float],
                                                                           list[float]]:
    kept = [r for r in rows if r[before] is not None]
    return [r[before] for r in kept], [r[after] for r in kept]


def _comparison(rows: list[dict[str, Any]], before: str, after: str) -> dict[str, Any]:
    """Surgery-only against distilled on one figure (over the candidates surgery scores)."""
    surgery, distilled = _pairs(rows, before, after)
    kept = [r["transformers"] for r in rows if r[before] is not None]
    return {
        "surgery": _summary(surgery) if surgery else None,
        "distilled": _summary([r[after] for r in rows]),
        "improved_share": round(sum(d > s for s, d in zip(surgery, distilled, strict=True))
                                / len(surgery), 3) if surgery else None,
        "spearman_surgery_vs_distilled": _spearman(surgery, distilled),
        "spearman_transformers_vs_fidelity": {
            "surgery": _spearman(kept, surgery),
            "distilled": _spearman([r["transformers"] for r in rows], [r[after] for r in rows])},
    }


def _bank_summary(build: Any) -> dict[str, Any]:
    entries = [e for e in build.entries if not e.reused]

    def median(values: list[float], digits: int) -> float | None:
        return round(statistics.median(values), digits) if values else None

    return {"entries": len(build.entries), "built": build.built,
            "build_s": round(build.seconds, 1),
            "median_entry_s": median([e.seconds for e in entries], 2),
            "median_heldout_loss": {"before": median([e.heldout_initial for e in entries], 4),
                                    "after": median([e.heldout_final for e in entries], 4)}}


def _report(
    space: Space, teacher: Any, settings: DistillSettings, rows: list[dict[str, Any]],
    identical: float, build: Any, data_s: float, scoring_s: float,
) -> dict[str, Any]:
    most = max(r["transformers"] for r in rows)
    by_removed: dict[int, list[float]] = {}
    for row in rows:
        by_removed.setdefault(most - row["transformers"], []).append(row["distilled_db"])
    largest = next(r for r in rows if r["choices"] == list(space.extremes()[1]))
    widths = [r["distilled_ci95"][1] - r["distilled_ci95"][0] for r in rows]
    return {
        "teacher": teacher.label, "teacher_id": teacher.teacher_id, "space": space.name,
        "scale": teacher.scale, "candidates": len(rows),
        "settings": settings.model_dump(),
        "teacher_identical_db": round(identical, 2),
        "largest_member_db": round(largest["distilled_db"], 2),
        "largest_member_unet_db": round(largest["distilled_unet_db"], 2),
        "max_untrained_parameters": max(r["untrained_parameters"] for r in rows),
        "median_ci95_width_db": round(statistics.median(widths), 2),
        **_comparison(rows, "surgery_db", "distilled_db"),
        "unet": _comparison(rows, "surgery_unet_db", "distilled_unet_db"),
        "distilled_db_by_transformers_removed": {
            str(k): round(statistics.fmean(v), 2) for k, v in sorted(by_removed.items())},
        "bank": _bank_summary(build),
        "data_s": round(data_s, 1),
        "score_per_candidate_s": round(scoring_s / len(rows) / 2, 3),
        "rows": rows,
    }
