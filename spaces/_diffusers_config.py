"""Translate between an :class:`ArchSpec` and diffusers' ``UNet2DConditionModel`` /
``AutoencoderKL`` configs.

Every stock config of the SD-1.x family becomes a spec. The reverse only holds where stock
diffusers can express the spec: diffusers picks attention per stage, not per layer, and gives the
VAE's encoder and decoder one shared width and depth.
"""

from __future__ import annotations

from typing import Any

from nanosd_nas.spaces._spec import ArchSpec, Layer, SpecError, UNetLevel, UNetSpec, VAESpec

_CROSS_DOWN, _PLAIN_DOWN = "CrossAttnDownBlock2D", "DownBlock2D"
_CROSS_UP, _PLAIN_UP = "CrossAttnUpBlock2D", "UpBlock2D"
_MID = "UNetMidBlock2DCrossAttn"

#: Config entries the spec does not model, with the only value it can represent.
_UNET_FIXED: dict[str, Any] = {
    "act_fn": "silu", "center_input_sample": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "use_linear_projection": False, "only_cross_attention": False, "upcast_attention": False,
    "dual_cross_attention": False, "class_embed_type": None, "addition_embed_type": None,
    "num_class_embeds": None, "encoder_hid_dim": None, "time_embedding_type": "positional",
    "time_cond_proj_dim": None, "resnet_time_scale_shift": "default", "norm_eps": 1e-5,
    "downsample_padding": 1, "mid_block_scale_factor": 1, "conv_in_kernel": 3,
    "conv_out_kernel": 3, "time_embedding_dim": None, "attention_type": "default",
    "num_attention_heads": None, "dropout": 0.0,
}
_VAE_FIXED: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "act_fn": "silu", "use_quant_conv": True,
    "use_post_quant_conv": True, "shift_factor": None,
}


class NotExpressible(ValueError):
    """The spec cannot be written as a stock diffusers config; the message says why."""


def _per_level(value: Any, n: int, key: str) -> list[Any]:
    values = list(value) if isinstance(value, list | tuple) else [value] * n
    if len(values) != n:
        raise SpecError(f"unet.{key}", value, f"needs one entry per level ({n})")
    return values


def _check_fixed(config: dict[str, Any], fixed: dict[str, Any], prefix: str) -> None:
    for key, supported in fixed.items():
        if key in config and config[key] != supported:
            raise SpecError(f"{prefix}.{key}", config[key], f"only {supported!r} is supported")


def _check_block_types(types: list[Any], n: int, key: str, known: tuple[str, ...]) -> None:
    if len(types) != n:
        raise SpecError(f"unet.{key}", types, f"needs one entry per level ({n})")
    for block_type in types:
        if block_type not in known:
            raise SpecError(f"unet.{key}", block_type, f"unknown block type; known: {known}")


def _latent_channels(unet: dict[str, Any], vae: dict[str, Any]) -> Any:
    """The latent channels the U-Net and the VAE agree on."""
    latent_channels = unet.get("in_channels", 4)
    if unet.get("out_channels", latent_channels) != latent_channels:
        raise SpecError("unet.out_channels", unet["out_channels"], "must equal in_channels")
    if vae.get("latent_channels", 4) != latent_channels:
        raise SpecError("vae.latent_channels", vae["latent_channels"], "must equal the U-Net's")
    return latent_channels


def spec_from_diffusers(unet: dict[str, Any], vae: dict[str, Any]) -> ArchSpec:
    """Build a spec from a ``UNet2DConditionModel`` config and an ``AutoencoderKL`` config."""
    _check_fixed(unet, _UNET_FIXED, "unet")
    _check_fixed(vae, _VAE_FIXED, "vae")
    channels = list(unet.get("block_out_channels", (320, 640, 1280, 1280)))
    n = len(channels)
    down_types = list(unet.get("down_block_types", [_CROSS_DOWN] * (n - 1) + [_PLAIN_DOWN]))
    up_types = list(unet.get("up_block_types", [_PLAIN_UP] + [_CROSS_UP] * (n - 1)))
    _check_block_types(down_types, n, "down_block_types", (_CROSS_DOWN, _PLAIN_DOWN))
    _check_block_types(up_types, n, "up_block_types", (_CROSS_UP, _PLAIN_UP))
    layers = _per_level(unet.get("layers_per_block", 2), n, "layers_per_block")
    heads = _per_level(unet.get("attention_head_dim", 8), n, "attention_head_dim")
    depths = _per_level(unet.get("transformer_layers_per_block", 1), n,
                        "transformer_layers_per_block")
    up_depths = _per_level(unet.get("reverse_transformer_layers_per_block") or depths[::-1], n,
                           "reverse_transformer_layers_per_block")[::-1]
    levels = []
    for k in range(n):
        down_depth = depths[k] if down_types[k] == _CROSS_DOWN else 0
        up_depth = up_depths[k] if up_types[n - 1 - k] == _CROSS_UP else 0
        levels.append(UNetLevel(
            channels=channels[k], heads=heads[k],
            down=(Layer(transformer_depth=down_depth),) * layers[k],
            up=(Layer(transformer_depth=up_depth),) * (layers[k] + 1),
        ))
    mid_type = unet.get("mid_block_type", _MID)
    if mid_type not in (_MID, None):
        raise SpecError("unet.mid_block_type", mid_type, f"only {_MID} or null is supported")
    latent_channels = _latent_channels(unet, vae)
    vae_channels = tuple(vae.get("block_out_channels", (64,)))
    for key, block_type in (("down_block_types", "DownEncoderBlock2D"),
                            ("up_block_types", "UpDecoderBlock2D")):
        for found in vae.get(key, [block_type] * len(vae_channels)):
            if found != block_type:
                raise SpecError(f"vae.{key}", found, f"only {block_type} is supported")
    vae_layers = vae.get("layers_per_block", 1)
    mid_attention = vae.get("mid_block_add_attention", True)
    document = {
        "latent_channels": latent_channels,
        "latent_size": unet.get("sample_size", 64),
        "unet": UNetSpec(
            levels=tuple(levels), mid_block=mid_type == _MID,
            mid_transformer_depth=depths[-1],
            cross_attention_dim=unet.get("cross_attention_dim", 1280),
            norm_groups=unet.get("norm_num_groups", 32),
        ).model_dump(),
        "vae": VAESpec(
            encoder_channels=vae_channels, encoder_layers=vae_layers,
            encoder_mid_attention=mid_attention, decoder_channels=vae_channels,
            decoder_layers=vae_layers, decoder_mid_attention=mid_attention,
            norm_groups=vae.get("norm_num_groups", 32),
            scaling_factor=vae.get("scaling_factor", 0.18215),
        ).model_dump(),
    }
    return ArchSpec.from_dict(document)


def _uniform_depth(layers: tuple[Layer, ...], where: str) -> int:
    depths = {layer.transformer_depth for layer in layers}
    if len(depths) > 1:
        raise NotExpressible(
            f"{where} mixes layers with transformer depths {sorted(depths)}; stock diffusers "
            "puts the same transformer after every layer of a stage"
        )
    if any(layer.block != "resnet" for layer in layers):
        raise NotExpressible(f"{where} uses a block kind other than diffusers' ResnetBlock2D")
    return depths.pop()


def unet_config(spec: ArchSpec) -> dict[str, Any]:
    """The ``UNet2DConditionModel`` config of ``spec``; :class:`NotExpressible` if none exists."""
    unet = spec.unet
    down_depths, up_depths = [], []
    for k, level in enumerate(unet.levels):
        where = f"stage {{}}{k + 1} (unet.levels[{k}].{{}})"
        down_depths.append(_uniform_depth(level.down, "encoder " + where.format("E", "down")))
        up_depths.append(_uniform_depth(level.up, "decoder " + where.format("D", "up")))
    depths = [d or 1 for d in down_depths]
    if unet.mid_block:
        if down_depths[-1] and down_depths[-1] != unet.mid_transformer_depth:
            raise NotExpressible(
                "the mid block's transformer depth differs from the deepest encoder stage's; "
                "diffusers uses one value for both"
            )
        depths[-1] = unet.mid_transformer_depth
    return {
        "_class_name": "UNet2DConditionModel",
        "sample_size": spec.latent_size,
        "in_channels": spec.latent_channels,
        "out_channels": spec.latent_channels,
        "block_out_channels": [level.channels for level in unet.levels],
        "layers_per_block": [len(level.down) for level in unet.levels],
        "attention_head_dim": [level.heads for level in unet.levels],
        "transformer_layers_per_block": depths,
        "reverse_transformer_layers_per_block": [d or 1 for d in up_depths][::-1],
        "down_block_types": [_CROSS_DOWN if d else _PLAIN_DOWN for d in down_depths],
        "up_block_types": [_CROSS_UP if d else _PLAIN_UP for d in up_depths][::-1],
        "mid_block_type": _MID if unet.mid_block else None,
        "cross_attention_dim": unet.cross_attention_dim,
        "norm_num_groups": unet.norm_groups,
        **{key: value for key, value in _UNET_FIXED.items() if value is not None},
    }


def vae_config(spec: ArchSpec) -> dict[str, Any]:
    """The ``AutoencoderKL`` config of ``spec``; :class:`NotExpressible` if none exists."""
    vae = spec.vae
    for encoder_field, decoder_field, what in (
        ("encoder_channels", "decoder_channels", "widths"),
        ("encoder_layers", "decoder_layers", "layers per level"),
        ("encoder_mid_attention", "decoder_mid_attention", "mid attention"),
    ):
        if getattr(vae, encoder_field) != getattr(vae, decoder_field):
            raise NotExpressible(
                f"the VAE's encoder and decoder differ in {what} (vae.{encoder_field}="
                f"{getattr(vae, encoder_field)!r}, vae.{decoder_field}="
                f"{getattr(vae, decoder_field)!r}); AutoencoderKL shares one value"
            )
    n = len(vae.encoder_channels)
    return {
        "_class_name": "AutoencoderKL",
        "sample_size": spec.image_size,
        "latent_channels": spec.latent_channels,
        "block_out_channels": list(vae.encoder_channels),
        "layers_per_block": vae.encoder_layers,
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "mid_block_add_attention": vae.encoder_mid_attention,
        "norm_num_groups": vae.norm_groups,
        "scaling_factor": vae.scaling_factor,
        **{key: value for key, value in _VAE_FIXED.items() if value is not None},
    }
