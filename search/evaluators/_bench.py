"""``bench fidelity``: the accuracy evaluator's sanity on a sample of a space's candidates.

What it shows: a student identical to the teacher scores highest; removing more attention
lowers fidelity on average; distillation raises fidelity for most candidates; and how long the
block bank takes to build.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from scipy.stats import spearmanr

from nanosd_nas.search.distill import BlockBank, DistillSettings, load_teacher, space_variants
from nanosd_nas.search.evaluators._bank_evaluator import BankEvaluator
from nanosd_nas.search.evaluators._base import Progress
from nanosd_nas.spaces import ArchSpec, Space


def _transformers(spec: ArchSpec) -> int:
    return sum(layer.has_transformer for level in spec.unet.levels
               for layer in (*level.down, *level.up))


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return round(float(spearmanr(a, b).statistic), 3)


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean_db": round(statistics.fmean(values), 2),
            "median_db": round(statistics.median(values), 2),
            "min_db": round(min(values), 2), "max_db": round(max(values), 2)}


def bench_fidelity(
    space: Space, scale: str = "mini", *, teacher: str = "demo", candidates: int = 24,
    settings: DistillSettings | None = None, seed: int = 0, bank_folder: Path | None = None,
    device: str = "cpu", progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the bank for ``space`` (in a fresh folder unless ``bank_folder`` is given), then
    score ``candidates`` sampled members, plus the smallest and largest, surgery-only and
    distilled."""
    settings = settings or DistillSettings()
    with tempfile.TemporaryDirectory(prefix="nanosd-nas-bank-") as scratch:
        folder = bank_folder or Path(scratch)
        loaded = load_teacher(teacher, device=device)
        bank = BlockBank(loaded, settings=settings, folder=folder, device=device)
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
            spec = space.spec(choices, loaded.scale)
            rows.append({
                "choices": list(choices), "transformers": _transformers(spec),
                "surgery_db": surgery.evaluate(spec).objectives["fidelity"],
                "distilled_db": distilled.evaluate(spec).objectives["fidelity"],
            })
            if progress is not None:
                progress("candidates", i + 1, len(members))
        scoring_s = time.perf_counter() - scoring_started
        identical = distilled.evaluate(loaded.spec).objectives["fidelity"]
    return _report(space, loaded, settings, rows, identical, build, data_s, scoring_s)


def _report(
    space: Space, teacher: Any, settings: DistillSettings, rows: list[dict[str, Any]],
    identical: float, build: Any, data_s: float, scoring_s: float,
) -> dict[str, Any]:
    surgery = [r["surgery_db"] for r in rows]
    distilled = [r["distilled_db"] for r in rows]
    kept = [r["transformers"] for r in rows]
    most = max(kept)
    by_removed: dict[int, list[float]] = {}
    for row in rows:
        by_removed.setdefault(most - row["transformers"], []).append(row["distilled_db"])
    largest = next(r for r in rows if r["transformers"] == most)
    entries = [e for e in build.entries if not e.reused]
    return {
        "teacher": teacher.label, "teacher_id": teacher.teacher_id, "space": space.name,
        "scale": teacher.scale, "candidates": len(rows),
        "settings": settings.model_dump(),
        "teacher_identical_db": round(identical, 2),
        "largest_member_db": round(largest["distilled_db"], 2),
        "surgery": _summary(surgery), "distilled": _summary(distilled),
        "improved_share": round(sum(d > s for s, d in zip(surgery, distilled, strict=True))
                                / len(rows), 3),
        "spearman_surgery_vs_distilled": _spearman(surgery, distilled),
        "spearman_transformers_vs_fidelity": {"surgery": _spearman(kept, surgery),
                                              "distilled": _spearman(kept, distilled)},
        "distilled_db_by_transformers_removed": {
            str(k): round(statistics.fmean(v), 2) for k, v in sorted(by_removed.items())},
        "bank": {"entries": len(build.entries), "built": build.built,
                 "build_s": round(build.seconds, 1),
                 "median_entry_s": round(statistics.median(e.seconds for e in entries), 2)
                 if entries else None,
                 "median_heldout_loss": {
                     "before": round(statistics.median(e.heldout_initial for e in entries), 4)
                     if entries else None,
                     "after": round(statistics.median(e.heldout_final for e in entries), 4)
                     if entries else None}},
        "data_s": round(data_s, 1),
        "score_per_candidate_s": round(scoring_s / len(rows) / 2, 3),
        "rows": rows,
    }
