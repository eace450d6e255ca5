"""A readable summary of a spec: what ``spec show``, the API and the candidate page print."""

from __future__ import annotations

from typing import Any

from nanosd_nas.spaces._blocks import count
from nanosd_nas.spaces._spec import ArchSpec, Layer


def attention_layout(layers: tuple[Layer, ...]) -> str:
    """One letter a layer: ``T`` with a transformer, ``R`` a ResNet alone (``RTT``)."""
    return "".join("T" if layer.has_transformer else "R" for layer in layers)


def stage_layouts(spec: ArchSpec) -> dict[str, str]:
    """Each U-Net stage's attention layout by name, in the order data flows: the encoder
    shallowest first, then the decoder deepest first (``{"E1": "TT", ..., "D1": "TTT"}``)."""
    levels = list(enumerate(spec.unet.levels))
    return {**{f"E{k + 1}": attention_layout(level.down) for k, level in levels},
            **{f"D{k + 1}": attention_layout(level.up) for k, level in reversed(levels)}}


def spec_summary(spec: ArchSpec) -> dict[str, Any]:
    """Stages with their attention layout, widths and resolution; the VAE; parameters and MACs
    per component (as :meth:`Counts.to_dict`)."""
    stages = []
    for k, level in enumerate(spec.unet.levels):
        for name, layers in ((f"E{k + 1}", level.down), (f"D{k + 1}", level.up)):
            stages.append({"stage": name, "channels": level.channels, "heads": level.heads,
                           "layers": attention_layout(layers),
                           "transformer_depths": [la.transformer_depth for la in layers],
                           "resolution": spec.latent_size // 2**k})
    return {
        "spec_id": spec.spec_id,
        "image_size": spec.image_size,
        "latent": [spec.latent_channels, spec.latent_size, spec.latent_size],
        "stages": stages,
        "mid_block": spec.unet.mid_block,
        "cross_attention_dim": spec.unet.cross_attention_dim,
        "vae": spec.vae.model_dump(mode="json"),
        **count(spec).to_dict(),
    }
