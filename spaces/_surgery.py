"""Network surgery on the spec: drop levels and the mid block (weights: ``_transplant``)."""

from __future__ import annotations

from nanosd_nas.spaces._errors import SpaceError
from nanosd_nas.spaces._spec import ArchSpec


def prune(
    spec: ArchSpec, *, drop_deepest_levels: int = 0, mid_block: bool | None = None
) -> ArchSpec:
    """NanoSD-style surgery on the spec: drop the deepest U-Net levels (E4 with D4) and/or the
    mid block. The new deepest encoder stage loses its downsampler, as the builder's rule says."""
    levels = spec.unet.levels
    if not 0 <= drop_deepest_levels < len(levels):
        raise SpaceError(
            f"drop_deepest_levels={drop_deepest_levels} must leave at least one of "
            f"{len(levels)} levels"
        )
    unet = spec.unet.model_copy(update={
        "levels": levels[: len(levels) - drop_deepest_levels],
        "mid_block": spec.unet.mid_block if mid_block is None else mid_block,
    })
    return ArchSpec.from_dict(spec.model_copy(update={"unet": unet}).to_dict())
