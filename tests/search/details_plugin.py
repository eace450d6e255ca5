"""An accuracy evaluator that reports details as the distilling one does, in the kinds of
numbers an evaluator has at hand (NumPy scalars, a NaN for an empty timestep bucket)."""

from __future__ import annotations

import numpy as np

from nanosd_nas.search.evaluators import AccuracyEvaluator, AccuracyResult
from nanosd_nas.spaces import ArchSpec


class WithDetails(AccuracyEvaluator):
    """Fidelity from the first level's width; the details of the distilling evaluator."""

    def evaluate(self, spec: ArchSpec) -> AccuracyResult:
        fidelity = 20.0 + spec.unet.levels[0].channels / 100
        return AccuracyResult(objectives={"fidelity": fidelity}, details={
            "untrained_parameters": np.int64(spec.unet.levels[0].channels * 10),
            "fidelity_ci95": [np.float32(fidelity - 0.5), np.float64(fidelity + 0.5)],
            "fidelity_by_t": {"0-250": np.float32(fidelity + 2), "250-500": fidelity,
                              "500-750": fidelity - 1.0, "750-1000": float("nan")},
            "unet_fidelity_db_ci95": [fidelity - 0.5, fidelity + 0.5],
            "vae_psnr_db_ci95": [float("-inf"), float("inf")],
            "stage_errors": {"E1": np.float32(0.125)},
            "teacher": "demo", "mode": "surgery",
        })
