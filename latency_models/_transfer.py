"""Few-shot transfer of a predictor to a new device, as HELP and LitePred do: the new device's
block table plus a few whole members adapt another device's predictor, instead of the hundred
members a calibration from scratch measures.

The predictor's features are sums over the device's own block table, so measuring the new
device's blocks already moves every feature to the new device. What the source predictor
learned on top of the block sums (how blocks add up inside a whole component) is kept, and an
affine correction per component, ``latency = a * source + b``, is fitted on the ``K`` measured
members in relative error, with ``b`` pulled towards 0 by one pseudo-observation: a few members
give a ratio to the source (a device uniformly faster or slower), more members an offset too.

What the source learned does not always carry over: quantised kernels add up differently from
FP32 ones. So the same affine fit is also made on the new device's plain block sum, the simpler
basis (nothing in it comes from another device), and each component keeps it unless the
source's model predicts the ``K`` members, each left out in turn, clearly better: by
:data:`SOURCE_MARGIN` in relative error. On a few members the two errors are close and the
closer choice was often wrong on the members that were not seen (INT8 on this project's CPU,
one run: left-one-out errors of 2.8% and 3.3% at K = 10, and the source's basis then held 90% of
unseen U-Nets within ±10% where the block sum held 100%; in another run the source's model was
ahead by more than the margin, and was kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from nanosd_nas.latency_models._calibrate import (
    Calibration,
    ProgressCallback,
    build_block_table,
    held_out_metrics,
    measure_members,
)
from nanosd_nas.latency_models._features import BLOCK_SUM, SpaceFeatures, sample_members
from nanosd_nas.latency_models._measure import ComponentMeasurer
from nanosd_nas.latency_models._predictor import LatencyPredictor, RidgeEnsemble, accuracy
from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models._records import LatencyInputError, now_iso
from nanosd_nas.latency_models._store import LatencyStore
from nanosd_nas.latency_models._table import BlockLatencyTable
from nanosd_nas.spaces import COMPONENTS, Choices, Space

#: Weight of the pull of the offset towards 0, in members.
PRIOR_WEIGHT = 1.0
#: Members needed to compare the bases (one left out of each); fewer keep the block sum.
MIN_CHOICE = 4
#: How much lower the source basis' left-one-out error must be for it to be kept.
SOURCE_MARGIN = 0.2


def fit_affine(source: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` minimising the squared relative error of ``a * source + b`` against
    ``measured``, plus :data:`PRIOR_WEIGHT` times ``(b / mean)^2``; ``(1, 0)`` without data."""
    if len(measured) == 0:
        return 1.0, 0.0
    weight = 1.0 / np.maximum(measured, 1e-9)
    scale = float(np.mean(measured))
    prior = np.sqrt(PRIOR_WEIGHT)
    design = np.vstack([np.column_stack([source * weight, weight]), [[0.0, prior / scale]]])
    target = np.concatenate([np.ones(len(measured)), [0.0]])
    (a, b), *_ = np.linalg.lstsq(design, target, rcond=None)
    return float(a), float(b)


def loo_error(basis: np.ndarray, measured: np.ndarray) -> float:
    """Root mean squared relative error of the affine fit on ``basis``, each member predicted
    by the fit on the others."""
    predicted = np.empty(len(measured))
    for i in range(len(measured)):
        keep = np.arange(len(measured)) != i
        a, b = fit_affine(basis[keep], measured[keep])
        predicted[i] = a * basis[i] + b
    return float(accuracy(predicted, measured)["rmspe"] or 0.0)


@dataclass(frozen=True)
class Adapted:
    """A transferred predictor's models, and per component the basis its correction was fitted
    on, the correction, and each basis' leave-one-out relative error (empty without choice)."""

    models: dict[str, RidgeEnsemble]
    affine: dict[str, tuple[float, float]]
    basis: dict[str, str]
    loo: dict[str, dict[str, float]]


def _on_block_sum(model: RidgeEnsemble, a: float, b: float) -> RidgeEnsemble:
    """``a * block_sum + b`` in ``model``'s standardised features."""
    coef = np.zeros_like(model.coef)
    coef[:, BLOCK_SUM] = a * model.scale[BLOCK_SUM]
    intercept = np.full_like(model.intercept, a * model.mean[BLOCK_SUM] + b)
    return RidgeEnsemble(mean=model.mean, scale=model.scale, coef=coef, intercept=intercept,
                         alpha=model.alpha)


def adapt(source: LatencyPredictor, features: SpaceFeatures, members: list[Choices],
          measured: dict[str, np.ndarray]) -> Adapted:
    """Per component, the new device's block sum, or the source's model where it predicts the
    ``members`` measured there clearly better (left one out), corrected by its affine fit to
    them."""
    x = features.features(np.array(members)) if members else None
    models: dict[str, RidgeEnsemble] = {}
    affine: dict[str, tuple[float, float]] = {}
    basis: dict[str, str] = {}
    loo: dict[str, dict[str, float]] = {}
    for component in COMPONENTS:
        model = source.models[component]
        if x is None:
            models[component], affine[component], basis[component] = model, (1.0, 0.0), "source"
            loo[component] = {}
            continue
        y = measured[component]
        candidates = {"source": model.predict_members(x[component]).mean(axis=1),
                      "block_sum": x[component][:, BLOCK_SUM]}
        errors = ({name: round(loo_error(values, y), 6) for name, values in candidates.items()}
                  if len(members) >= MIN_CHOICE else {})
        chosen = ("source" if errors and errors["source"] < (1 - SOURCE_MARGIN)
                  * errors["block_sum"] else "block_sum")
        a, b = fit_affine(candidates[chosen], y)
        models[component] = (
            RidgeEnsemble(mean=model.mean, scale=model.scale, coef=model.coef * a,
                          intercept=model.intercept * a + b, alpha=model.alpha)
            if chosen == "source" else _on_block_sum(model, a, b))
        affine[component], basis[component] = (round(a, 6), round(b, 6)), chosen
        loo[component] = errors
    return Adapted(models=models, affine=affine, basis=basis, loo=loo)


def check_source(source: LatencyPredictor, space: Space, scale: str) -> None:
    """Refuse, in one line, a source predictor of another space or scale."""
    identity = source.identity
    if (identity.space, identity.space_digest, identity.scale) != (space.name, space.digest,
                                                                   scale):
        raise LatencyInputError(
            f"the source predictor of {identity.device!r} is for {identity.space} "
            f"({identity.space_digest}) at {identity.scale}, not {space.name} "
            f"({space.digest}) at {scale}")


def transfer_calibrate(
    space: Space, scale: str, profiler: Profiler, source: LatencyPredictor, *, members: int,
    held_out: int = 30, seed: int = 0, store: LatencyStore | None = None,
    on_progress: ProgressCallback | None = None,
) -> Calibration:
    """The predictor of ``profiler``'s device for ``space``, transferred from ``source`` (another
    device's predictor for the same space and scale) with the device's block table and
    ``members`` measured members; ``held_out`` more members, never trained on, give its
    accuracy. Returned, not saved (:func:`load_or_calibrate` and ``device calibrate --from``
    save it)."""
    check_source(source, space, scale)
    if members < 1:
        raise LatencyInputError(f"members={members}: a transfer measures at least one member")
    if members + held_out > space.size:
        raise LatencyInputError(f"space {space.name!r} has {space.size} members, fewer than the "
                                f"{members + held_out} this transfer measures")
    started = time.perf_counter()
    statistic = profiler.statistic
    table = build_block_table(space, scale, profiler, statistic=statistic, store=store,
                              on_progress=on_progress)
    features = SpaceFeatures(space, scale, table.latency)
    measurer = ComponentMeasurer(profiler=profiler, statistic=statistic, scale=scale,
                                 store=store)
    training = sample_members(space, members, seed=seed)
    measured = measure_members(training, space, scale, measurer, on_progress, "train")
    adapted = adapt(source, features, training, measured)
    held = sample_members(space, held_out, seed=seed + 7, exclude=training)
    held_measured = measure_members(held, space, scale, measurer, on_progress, "held-out")
    seconds = time.perf_counter() - started
    metadata = _metadata(source, table, profiler, space, scale, training, measured, adapted,
                         seconds)
    predictor = LatencyPredictor(table=table, models=adapted.models, metadata=metadata)
    if held:
        metadata["held_out"] = held_out_metrics(predictor, space, held, held_measured)
    return Calibration(predictor=predictor, training=training, held_out=held,
                       held_out_measured=held_measured, seconds=seconds)


def _metadata(source: LatencyPredictor, table: BlockLatencyTable, profiler: Profiler,
              space: Space, scale: str, training: list[Choices],
              measured: dict[str, np.ndarray], adapted: Adapted,
              seconds: float) -> dict[str, Any]:
    origin = source.identity
    return {
        "device": profiler.device,
        "fingerprint": {**profiler.fingerprint(), "scale": scale},
        "space": space.name,
        "space_digest": space.digest,
        "scale": scale,
        "statistic": table.statistic,
        "created": now_iso(),
        "calibration_s": round(seconds, 1),
        "transfer": {"from": origin.device, "from_created": origin.created_at,
                     "from_fingerprint": origin.fingerprint, "members": len(training),
                     "affine": {c: list(ab) for c, ab in adapted.affine.items()},
                     "basis": adapted.basis, "loo_rmspe": adapted.loo},
        "training_set": {"choices": [list(m) for m in training],
                         "measured_ms": {c: [float(v) for v in measured[c]]
                                         for c in COMPONENTS}},
        "blocks": len(table.entries),
    }
