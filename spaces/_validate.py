"""Semantic checks of an :class:`ArchSpec`, run before anything is built.

Each failure raises :class:`SpecError` naming one field and its value.
"""

from __future__ import annotations

from nanosd_nas.spaces._spec import ArchSpec, SpecError, UNetSpec, VAESpec

#: Residual block kinds the builder knows; a layer's ``block`` must be one of them.
RESIDUAL_BLOCK_KINDS: tuple[str, ...] = ("resnet",)


def validate(spec: ArchSpec) -> None:
    """Raise :class:`SpecError` for the first problem found in ``spec``."""
    _validate_unet(spec.unet, spec.latent_size)
    _validate_vae(spec.vae)


def _validate_unet(unet: UNetSpec, latent_size: int) -> None:
    if not unet.levels:
        raise SpecError("unet.levels", [], "a U-Net needs at least one level")
    groups = unet.norm_groups
    for k, level in enumerate(unet.levels):
        where = f"unet.levels[{k}]"
        if level.channels % groups:
            raise SpecError(
                f"{where}.channels",
                level.channels,
                f"not divisible by the group-norm groups ({groups})",
            )
        if level.channels % level.heads:
            raise SpecError(
                f"{where}.heads",
                level.heads,
                f"head dim channels/heads = {level.channels}/{level.heads} is not a whole number",
            )
        for stage in ("down", "up"):
            layers = getattr(level, stage)
            if not layers:
                raise SpecError(f"{where}.{stage}", [], "a stage needs at least one layer")
            for j, layer in enumerate(layers):
                if layer.block not in RESIDUAL_BLOCK_KINDS:
                    raise SpecError(
                        f"{where}.{stage}[{j}].block",
                        layer.block,
                        f"unknown block kind; known: {', '.join(RESIDUAL_BLOCK_KINDS)}",
                    )
        if len(level.up) != len(level.down) + 1:
            raise SpecError(
                f"{where}.up",
                f"{len(level.up)} layers",
                f"the skip connections of level {k} cannot match: the encoder stage leaves "
                f"{len(level.down) + 1} skips (its {len(level.down)} layers and the "
                f"{'input conv' if k == 0 else 'downsampler above'}), so the decoder stage needs "
                f"{len(level.down) + 1} layers",
            )
    downsamplings = len(unet.levels) - 1
    if latent_size % 2**downsamplings:
        raise SpecError(
            "latent_size",
            latent_size,
            f"must be divisible by 2^{downsamplings} for {len(unet.levels)} U-Net levels",
        )


def _validate_vae(vae: VAESpec) -> None:
    for side in ("encoder", "decoder"):
        channels: tuple[int, ...] = getattr(vae, f"{side}_channels")
        if not channels:
            raise SpecError(f"vae.{side}_channels", [], "a VAE needs at least one level")
        for i, width in enumerate(channels):
            if width <= 0 or width % vae.norm_groups:
                raise SpecError(
                    f"vae.{side}_channels[{i}]",
                    width,
                    f"not a positive multiple of the group-norm groups ({vae.norm_groups})",
                )
    if len(vae.decoder_channels) != len(vae.encoder_channels):
        raise SpecError(
            "vae.decoder_channels",
            list(vae.decoder_channels),
            f"needs {len(vae.encoder_channels)} levels to upsample back to the image size, "
            "like the encoder",
        )
