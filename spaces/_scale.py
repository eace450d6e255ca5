"""Pipeline scales: ``full`` is the real size; ``mini`` keeps every topology and shrinks widths.

``mini`` divides U-Net widths by 10 and VAE widths by 8 (rounded to a multiple of 8 group-norm
groups), the text condition to 64 wide and the latent to 16x16 (128-pixel images), so that a
whole model builds and runs in a fraction of a second on a 2-core CPU. Layers, stages,
attention layout and heads are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from nanosd_nas.spaces._errors import SpaceError
from nanosd_nas.spaces._spec import ArchSpec


@dataclass(frozen=True)
class Scale:
    """How a full-size spec is shrunk."""

    name: str
    unet_width: float = 1.0
    vae_width: float = 1.0
    norm_groups: int | None = None
    cross_attention_dim: int | None = None
    latent_size: int | None = None

    def channels(self, full: int, factor: float, groups: int) -> int:
        """``full`` scaled by ``factor`` and rounded to a positive multiple of ``groups``."""
        if factor == 1.0:
            return full
        return max(groups, round(full * factor / groups) * groups)


SCALES: dict[str, Scale] = {
    "full": Scale("full"),
    "mini": Scale("mini", unet_width=0.1, vae_width=0.125, norm_groups=8,
                  cross_attention_dim=64, latent_size=16),
}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise SpaceError(f"scale {name!r} does not exist; known: {', '.join(SCALES)}")
    return SCALES[name]


def to_scale(spec: ArchSpec, scale: str | Scale) -> ArchSpec:
    """The full-size ``spec`` at ``scale`` (identity for ``full``)."""
    s = get_scale(scale) if isinstance(scale, str) else scale
    if s.name == "full":
        return spec
    unet_groups = s.norm_groups or spec.unet.norm_groups
    vae_groups = s.norm_groups or spec.vae.norm_groups
    levels = [
        level.model_copy(update={"channels": s.channels(level.channels, s.unet_width, unet_groups)})
        for level in spec.unet.levels
    ]
    unet = spec.unet.model_copy(update={
        "levels": tuple(levels),
        "norm_groups": unet_groups,
        "cross_attention_dim": s.cross_attention_dim or spec.unet.cross_attention_dim,
    })
    vae = spec.vae.model_copy(update={
        side: tuple(s.channels(c, s.vae_width, vae_groups) for c in getattr(spec.vae, side))
        for side in ("encoder_channels", "decoder_channels")
    } | {"norm_groups": vae_groups})
    scaled = spec.model_copy(update={
        "unet": unet, "vae": vae, "latent_size": s.latent_size or spec.latent_size,
    })
    return ArchSpec.from_dict(scaled.to_dict())
