"""Pipeline scales: ``full`` is the real size; ``mini`` keeps every topology and shrinks widths.

``mini`` divides U-Net widths by 10 and VAE widths by 8 (rounded to a multiple of 8 group-norm
groups), the text condition to 64 wide and the latent to 16x16 (128-pixel images), so that a
whole model builds and runs in a fraction of a second on a 2-core CPU. Layers, stages,
attention layout and heads are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nanosd_nas.spaces._errors import SpaceError
from nanosd_nas.spaces._spec import ArchSpec


@dataclass(frozen=True)
class Scale:
    """How a full-size spec is shrunk, and at which image size it runs.

    ``image_size`` (pixels) overrides the latent size the scale would give: ``mini@256`` is
    ``mini``'s widths on 256-px tiles (a 32x32 latent for SD 1.5's VAE), ``full@768`` the
    real model on 768-px tiles. It is what latency is measured and predicted at; the weights
    of a spec do not depend on it.
    """

    name: str
    unet_width: float = 1.0
    vae_width: float = 1.0
    norm_groups: int | None = None
    cross_attention_dim: int | None = None
    latent_size: int | None = None
    image_size: int | None = None

    @property
    def base(self) -> str:
        """The scale's name without an image size (``mini`` for ``mini@256``)."""
        return self.name.split("@", 1)[0]

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


#: Image sizes a scale may be given (``NAME@PIXELS``): a multiple of 64 px, at most 4096.
MAX_IMAGE_SIZE = 4096


def get_scale(name: str) -> Scale:
    """The scale called ``name``: ``full`` or ``mini``, optionally at an image size
    (``mini@256``: a multiple of 64 px, up to :data:`MAX_IMAGE_SIZE`)."""
    base, at, pixels = name.partition("@") if isinstance(name, str) else (name, "", "")
    if base not in SCALES:
        raise SpaceError(f"scale {name!r} does not exist; known: {', '.join(SCALES)} (each "
                         "optionally at an image size, such as mini@256)")
    if not at:
        return SCALES[base]
    if not pixels.isdigit() or not 64 <= int(pixels) <= MAX_IMAGE_SIZE or int(pixels) % 64:
        raise SpaceError(f"scale {name!r}: the image size after '@' must be a multiple of 64 "
                         f"px from 64 to {MAX_IMAGE_SIZE}")
    return replace(SCALES[base], name=f"{base}@{int(pixels)}", image_size=int(pixels))


def scale_at(scale: str, image_size: int | None) -> str:
    """``scale`` at ``image_size`` pixels (``scale`` itself for ``None``)."""
    base = get_scale(scale).base
    return base if image_size is None else get_scale(f"{base}@{image_size}").name


def at_image_size(spec: ArchSpec, image_size: int) -> ArchSpec:
    """``spec`` run on images of ``image_size`` px: only its latent size changes.

    Raises:
        SpecError: the latent size that gives does not fit the U-Net's downsamplings.
    """
    latent = image_size >> (len(spec.vae.encoder_channels) - 1)
    return ArchSpec.from_dict({**spec.to_dict(), "latent_size": latent})


def to_scale(spec: ArchSpec, scale: str | Scale) -> ArchSpec:
    """The full-size ``spec`` at ``scale`` (identity for ``full``)."""
    s = get_scale(scale) if isinstance(scale, str) else scale
    if s.image_size is not None:  # the image size alone differs from the base scale's
        return at_image_size(to_scale(spec, SCALES[s.base]), s.image_size)
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
