"""Real predictors made without measuring (for the store tests), and this host's fingerprint."""

from __future__ import annotations

from typing import Any

import numpy as np

from nanosd_nas import spaces
from nanosd_nas.latency_models import (
    FEATURES,
    BlockLatencyTable,
    LatencyPredictor,
    LatencyStats,
    LocalProfiler,
    Protocol,
)
from nanosd_nas.latency_models._predictor import RidgeEnsemble

#: A quick protocol: these tests check where figures go, not how well they repeat.
QUICK = Protocol(threads=1, warmup=0, runs=3)
NANOSD = spaces.load_space("nanosd")
#: A space file of 32 U-Nets (nanosd with two dimensions free), for tiny calibrations.
SMALL_YAML = """kind: space
name: nanosd-e1-d1
description: nanosd with only E1 and D1 free (32 U-Nets)
base: sd15
surgery: {drop_deepest_levels: 1, mid_block: false}
dimensions:
  - {name: E1, kind: attention, stage: down, level: 0}
  - {name: D1, kind: attention, stage: up, level: 0}
"""


def this_host() -> dict[str, Any]:
    """The host fingerprint a local profiler with :data:`QUICK` reports here."""
    return LocalProfiler(protocol=QUICK).host_fingerprint()


def elsewhere() -> dict[str, Any]:
    """A fingerprint of another machine (another CPU and runtime)."""
    return {**this_host(), "cpu": "Apple M2 Max", "runtime": "onnxruntime 1.16.0"}


def fitted_predictor(*, device: str = "local-cpu", space: spaces.Space = NANOSD,
                     scale: str = "mini", statistic: str = "normalised_ms",
                     fingerprint: dict[str, Any] | None = None,
                     created: str = "2026-12-01T10:00:00.000+00:00",
                     seed: int = 0) -> LatencyPredictor:
    """A real predictor, fitted on synthetic features instead of measurements."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(1.0, 2.0, size=(24, len(FEATURES)))
    models = {c: RidgeEnsemble.fit(x, x @ rng.uniform(0.1, 1.0, len(FEATURES)) + 1.0,
                                   members=4, seed=seed) for c in spaces.COMPONENTS}
    stats = LatencyStats(1.0, 1.1, 1.2, 1.6, 30, {**(fingerprint or this_host()), "scale": scale},
                         normalised_ms=1.15)
    table = BlockLatencyTable(device=device, scale=scale, statistic=statistic,
                              entries={"unet/conv_in/4-32": stats})
    metadata = {"device": device, "space": space.name, "space_digest": space.digest,
                "scale": scale, "statistic": statistic, "created": created,
                "fingerprint": {**(fingerprint or this_host()), "reference_ms": 0.9,
                                "scale": scale},
                "held_out": {"pipeline": {"within_5pct": 0.5, "within_10pct": 0.75,
                                          "spearman": 0.9, "rmspe": 0.08, "n": 4}},
                "training_set": {"choices": [[0, 0, 0, 0, 0, 0]], "measured_ms": {}}}
    return LatencyPredictor(table=table, models=models, metadata=metadata)


def features(seed: int = 1) -> dict[str, np.ndarray]:
    """Feature rows to compare two predictors' outputs on."""
    rows = np.random.default_rng(seed).uniform(1.0, 2.0, size=(5, len(FEATURES)))
    return {c: rows for c in spaces.COMPONENTS}
