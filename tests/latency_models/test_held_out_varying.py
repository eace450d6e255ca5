"""Which components vary across a space, recorded with a predictor's held-out accuracy: their
figures are the headline, since a component the space fixes adds the same latency to every
member and flatters the pipeline's figure (``nanosd``'s VAE)."""

from __future__ import annotations

import numpy as np
import pytest

from nanosd_nas import spaces
from nanosd_nas.latency_models import BlockLatencyTable, LatencyPredictor, LatencyStats
from nanosd_nas.latency_models._calibrate import held_out_metrics, varying_components
from nanosd_nas.latency_models._features import SpaceFeatures, sample_members
from nanosd_nas.latency_models._predictor import RidgeEnsemble

NANOSD = spaces.load_space("nanosd")
VAE = spaces.load_space("vae")


def _subspace(space: spaces.Space, keep: list[str]) -> spaces.Space:
    return spaces.Space(name=f"{space.name}-part", description="", base=space.base,
                        dimensions=[d for d in space.dimensions if d.name in keep])


@pytest.mark.parametrize(("space", "varying"), [
    (NANOSD, ["unet"]),
    (spaces.load_space("nanosd-scaled"), ["unet", "vae_encoder", "vae_decoder"]),
    (VAE, ["vae_encoder", "vae_decoder"]),
    (_subspace(VAE, ["enc-width", "enc-layers"]), ["vae_encoder"]),
    (_subspace(NANOSD, ["E1"]), ["unet"]),
    (_subspace(NANOSD, []), []),  # one member: nothing varies, the pipeline is the figure
])
@pytest.mark.parametrize("scale", ["mini", "full"])
def test_a_component_varies_when_a_dimension_changes_its_blocks(space, varying, scale):
    assert varying_components(space, scale) == varying


def _predictor(space: spaces.Space) -> LatencyPredictor:
    """A predictor of ``space`` at mini fitted, without measuring, on latencies that follow its
    block table exactly (MACs for a block's latency); the VAE is the same in every member."""
    blocks = SpaceFeatures(space, "mini", lambda _: 0.0).all_blocks()
    table = BlockLatencyTable(device="local-cpu", scale="mini", statistic="p10_ms")
    for key, (_, block) in blocks.items():
        ms = 0.01 + block.macs / 1e6
        table.entries[key] = LatencyStats(ms, ms, ms, ms, 3)
    features = SpaceFeatures(space, "mini", table.latency)
    x = features.features(np.array(sample_members(space, 24, seed=0)))
    models = {c: RidgeEnsemble.fit(x[c], x[c][:, 0], members=2) for c in spaces.COMPONENTS}
    return LatencyPredictor(table=table, models=models, metadata={
        "device": "local-cpu", "space": space.name, "space_digest": space.digest,
        "scale": "mini", "statistic": "p10_ms", "created": "2026-12-01T10:00:00.000+00:00",
        "fingerprint": {"cpu": "test", "scale": "mini"}})


def test_the_held_out_metrics_name_the_unet_alone_on_a_space_whose_vae_is_fixed():
    space = _subspace(NANOSD, ["E1", "E2", "D1"])
    predictor = _predictor(space)
    members = sample_members(space, 8, seed=7)
    prediction = predictor.predict_choices(space, np.array(members))
    # Half the U-Nets 30% slower than predicted; the fixed VAE exactly as predicted.
    measured = {c: prediction.mean[c].copy() for c in spaces.COMPONENTS}
    measured["unet"][::2] *= 1.3
    metrics = held_out_metrics(predictor, space, members, measured)
    assert metrics["varying"] == ["unet"]
    assert metrics["unet"]["within_10pct"] == 0.5
    assert metrics["vae_decoder"]["spearman"] is None  # one latency for every member
    assert metrics["pipeline"]["n"] == 8 and "points" in metrics["pipeline"]
