"""The objectives a study can ask for, and where each comes from.

Size objectives are counted from the spec, latency comes from the device (its predictor or a
measurement), accuracy from the study's evaluator on a Ray worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from nanosd_nas.spaces import ArchSpec, count

#: The latency objective: the pipeline's latency on the study's device, in ms.
LATENCY_OBJECTIVE = "latency_ms"
#: The latency of a user's photo run tile by tile (``pipeline.photo``): its tiles x the pipeline's
#: latency, in ms.
PHOTO_LATENCY_OBJECTIVE = "photo_latency_ms"


def tiles_along(side: int, tile: int, overlap: int) -> int:
    """Tiles of ``tile`` px that cover ``side`` px when neighbours overlap by ``overlap`` px:
    they start every ``tile - overlap`` px and the last one may run past the edge; a side no
    longer than a tile takes one.

    Raises:
        ValueError: a side or tile below 1 px, or an overlap outside ``[0, tile)``.
    """
    if side < 1 or tile < 1:
        raise ValueError(f"a side of {side} px in tiles of {tile} px: both must be at least 1")
    if not 0 <= overlap < tile:
        raise ValueError(f"an overlap of {overlap} px must be at least 0 and less than the "
                         f"tile ({tile} px)")
    if side <= tile:
        return 1
    return math.ceil((side - overlap) / (tile - overlap))


def photo_tiles(photo: tuple[int, int], tile: int, overlap: int) -> int:
    """Tiles of ``tile`` px, overlapping by ``overlap`` px, that cover a ``(width, height)``
    photo: 88 of 512 px overlapping by 128 px for a 4000x3000 (12-MP) photo (11 x 8)."""
    width, height = photo
    return tiles_along(width, tile, overlap) * tiles_along(height, tile, overlap)


def params_m(spec: ArchSpec, steps: int) -> float:
    """Parameters of the whole pipeline (U-Net and VAE), in millions."""
    return count(spec).total_params / 1e6


def macs_g(spec: ArchSpec, steps: int) -> float:
    """MACs of one generation (VAE encoder, ``steps`` U-Net evaluations, VAE decoder), in G."""
    macs = count(spec).macs
    return (macs["vae_encoder"] + steps * macs["unet"] + macs["vae_decoder"]) / 1e9


#: Each size objective and how it is counted from a spec (for ``steps`` U-Net evaluations).
SIZE_COUNTERS: dict[str, Callable[[ArchSpec, int], float]] = {
    "params_m": params_m, "macs_g": macs_g,
}
