"""Decompose a spec into blocks, and count parameters and MACs without building anything.

A block is the unit of latency tables and of distillation: one ResNet block, one transformer,
one resampler, an input or output head. Its :attr:`Block.key` names what it computes (kind,
channels, resolution, options) and not where it sits, so equal blocks of different candidates
share one key. MACs count multiply-accumulates of convolutions, linear layers and attention
products; normalisations and activations are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nanosd_nas.spaces._spec import ArchSpec, UNetSpec, VAESpec

COMPONENTS: tuple[str, ...] = ("unet", "vae_encoder", "vae_decoder")

Option = tuple[str, int]


@dataclass(frozen=True)
class Block:
    """One block of a built model.

    Attributes:
        component: ``unet``, ``vae_encoder`` or ``vae_decoder``.
        kind: ``resnet``, ``transformer``, ``downsample``, ``upsample``, ``attention``,
            ``conv_in``, ``conv_out``, ``time_embedding``, ``quant_conv``.
        in_channels: input channels (for a decoder ResNet: previous output plus skip).
        out_channels: output channels.
        resolution: spatial side of the block's input.
        options: further shape-determining settings, sorted by name.
        path: module path in the built model (``down_blocks.0.resnets.1``); not part of the key.
        params: trainable parameters.
        macs: multiply-accumulates of one forward pass at batch size 1.
    """

    component: str
    kind: str
    in_channels: int
    out_channels: int
    resolution: int
    options: tuple[Option, ...]
    path: str
    params: int
    macs: int

    @property
    def key(self) -> str:
        opts = "".join(f",{name}={value}" for name, value in self.options)
        return (
            f"{self.component}/{self.kind}/{self.in_channels}>{self.out_channels}"
            f"@{self.resolution}{opts}"
        )


# -- counting primitives ------------------------------------------------------------------------
def _conv(c_in: int, c_out: int, k: int, out_side: int) -> tuple[int, int]:
    return c_in * c_out * k * k + c_out, out_side * out_side * c_in * c_out * k * k


def _linear(d_in: int, d_out: int, tokens: int = 1, bias: bool = True) -> tuple[int, int]:
    return d_in * d_out + (d_out if bias else 0), tokens * d_in * d_out


def _sum(*counts: tuple[int, int]) -> tuple[int, int]:
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


def _norm(channels: int) -> tuple[int, int]:
    return 2 * channels, 0


# -- counters per block kind: (in, out, resolution, options) -> (params, macs) ----------------
def _count_resnet(c_in: int, c_out: int, side: int, opts: dict[str, int]) -> tuple[int, int]:
    temb = opts.get("temb", 0)
    parts = [_norm(c_in), _conv(c_in, c_out, 3, side), _norm(c_out), _conv(c_out, c_out, 3, side)]
    if temb:
        parts.append(_linear(temb, c_out))
    if c_in != c_out:
        parts.append(_conv(c_in, c_out, 1, side))
    return _sum(*parts)


def _count_transformer(c: int, _: int, side: int, opts: dict[str, int]) -> tuple[int, int]:
    n, m, cross = side * side, opts["context"], opts["cross"]
    per_depth = _sum(
        _norm(c),
        _linear(c, 3 * c, n, bias=False),  # self-attention q, k, v
        (0, 2 * n * n * c),  # scores and weighted sum
        _linear(c, c, n),
        _norm(c),
        _linear(c, c, n, bias=False),  # cross-attention q
        _linear(cross, 2 * c, m, bias=False),  # cross-attention k, v
        (0, 2 * n * m * c),
        _linear(c, c, n),
        _norm(c),
        _linear(c, 8 * c, n),  # GEGLU projection
        _linear(4 * c, c, n),
    )
    depth = opts["depth"]
    body = (per_depth[0] * depth, per_depth[1] * depth)
    return _sum(_norm(c), _conv(c, c, 1, side), body, _conv(c, c, 1, side))


def _count_attention(c: int, _: int, side: int, opts: dict[str, int]) -> tuple[int, int]:
    n = side * side
    return _sum(_norm(c), _linear(c, 4 * c, n), (0, 2 * n * n * c))


def _count_downsample(c_in: int, c_out: int, side: int, _: dict[str, int]) -> tuple[int, int]:
    return _conv(c_in, c_out, 3, side // 2)


def _count_upsample(c_in: int, c_out: int, side: int, _: dict[str, int]) -> tuple[int, int]:
    return _conv(c_in, c_out, 3, side * 2)


def _count_conv3(c_in: int, c_out: int, side: int, opts: dict[str, int]) -> tuple[int, int]:
    head = _conv(c_in, c_out, 3, side)
    return _sum(head, _norm(opts["norm"])) if "norm" in opts else head


def _count_conv1(c_in: int, c_out: int, side: int, _: dict[str, int]) -> tuple[int, int]:
    return _conv(c_in, c_out, 1, side)


def _count_time_embedding(c_in: int, c_out: int, _: int, __: dict[str, int]) -> tuple[int, int]:
    return _sum(_linear(c_in, c_out), _linear(c_out, c_out))


Counter = Callable[[int, int, int, dict[str, int]], tuple[int, int]]
_COUNTERS: dict[str, Counter] = {
    "resnet": _count_resnet,
    "transformer": _count_transformer,
    "attention": _count_attention,
    "downsample": _count_downsample,
    "upsample": _count_upsample,
    "conv_in": _count_conv3,
    "conv_out": _count_conv3,
    "quant_conv": _count_conv1,
    "time_embedding": _count_time_embedding,
}


class _Blocks:
    """Collects the blocks of one component in forward order."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.blocks: list[Block] = []

    def add(self, kind: str, c_in: int, c_out: int, side: int, path: str, **opts: int) -> None:
        if kind not in _COUNTERS:
            raise ValueError(f"block kind {kind!r} does not exist")
        params, macs = _COUNTERS[kind](c_in, c_out, side, opts)
        options = tuple(sorted(opts.items()))
        self.blocks.append(
            Block(self.component, kind, c_in, c_out, side, options, path, params, macs)
        )


def _unet_blocks(unet: UNetSpec, latent_channels: int, latent_size: int) -> list[Block]:
    out = _Blocks("unet")
    channels = [level.channels for level in unet.levels]
    c0, temb = channels[0], 4 * channels[0]
    attn = {"context": unet.context_length, "cross": unet.cross_attention_dim}
    out.add("conv_in", latent_channels, c0, latent_size, "conv_in")
    out.add("time_embedding", c0, temb, 1, "time_embedding")
    side, c_prev = latent_size, c0
    for k, level in enumerate(unet.levels):
        where = f"down_blocks.{k}"
        for j, layer in enumerate(level.down):
            out.add(layer.block, c_prev, level.channels, side, f"{where}.resnets.{j}", temb=temb)
            c_prev = level.channels
            if layer.has_transformer:
                out.add("transformer", c_prev, c_prev, side, f"{where}.attentions.{j}",
                        depth=layer.transformer_depth, heads=level.heads, **attn)
        if k < len(unet.levels) - 1:
            out.add("downsample", c_prev, c_prev, side, f"{where}.downsamplers.0")
            side //= 2
    if unet.mid_block:
        c = channels[-1]
        out.add("resnet", c, c, side, "mid_block.resnets.0", temb=temb)
        out.add("transformer", c, c, side, "mid_block.attentions.0",
                depth=unet.mid_transformer_depth, heads=unet.levels[-1].heads, **attn)
        out.add("resnet", c, c, side, "mid_block.resnets.1", temb=temb)
    n = len(unet.levels)
    for u, k in enumerate(reversed(range(n))):
        level, where = unet.levels[k], f"up_blocks.{u}"
        skips = skip_channels(unet, k)
        for j, layer in enumerate(level.up):
            c_in = c_prev + skips[j]
            out.add(layer.block, c_in, level.channels, side, f"{where}.resnets.{j}", temb=temb)
            c_prev = level.channels
            if layer.has_transformer:
                out.add("transformer", c_prev, c_prev, side, f"{where}.attentions.{j}",
                        depth=layer.transformer_depth, heads=level.heads, **attn)
        if k > 0:
            out.add("upsample", c_prev, c_prev, side, f"{where}.upsamplers.0")
            side *= 2
    out.add("conv_out", c0, latent_channels, side, "conv_out", norm=c0)
    return out.blocks


def skip_channels(unet: UNetSpec, level: int) -> list[int]:
    """Channels of the skip connections consumed by decoder stage ``level``, in pop order."""
    channels = [lv.channels for lv in unet.levels]
    above = channels[level - 1] if level > 0 else channels[0]
    return [channels[level]] * len(unet.levels[level].down) + [above]


def _vae_encoder_blocks(vae: VAESpec, latent_channels: int, image_size: int) -> list[Block]:
    out = _Blocks("vae_encoder")
    chans = vae.encoder_channels
    out.add("conv_in", 3, chans[0], image_size, "encoder.conv_in")
    side, c_prev = image_size, chans[0]
    for i, c in enumerate(chans):
        for j in range(vae.encoder_layers):
            out.add("resnet", c_prev, c, side, f"encoder.down_blocks.{i}.resnets.{j}")
            c_prev = c
        if i < len(chans) - 1:
            out.add("downsample", c, c, side, f"encoder.down_blocks.{i}.downsamplers.0")
            side //= 2
    _vae_mid(out, "encoder", c_prev, side, vae.encoder_mid_attention)
    out.add("conv_out", c_prev, 2 * latent_channels, side, "encoder.conv_out", norm=c_prev)
    out.add("quant_conv", 2 * latent_channels, 2 * latent_channels, side, "quant_conv")
    return out.blocks


def _vae_decoder_blocks(vae: VAESpec, latent_channels: int, latent_size: int) -> list[Block]:
    out = _Blocks("vae_decoder")
    chans = list(reversed(vae.decoder_channels))
    side = latent_size
    out.add("quant_conv", latent_channels, latent_channels, side, "post_quant_conv")
    out.add("conv_in", latent_channels, chans[0], side, "decoder.conv_in")
    _vae_mid(out, "decoder", chans[0], side, vae.decoder_mid_attention)
    c_prev = chans[0]
    for i, c in enumerate(chans):
        for j in range(vae.decoder_layers + 1):
            out.add("resnet", c_prev, c, side, f"decoder.up_blocks.{i}.resnets.{j}")
            c_prev = c
        if i < len(chans) - 1:
            out.add("upsample", c, c, side, f"decoder.up_blocks.{i}.upsamplers.0")
            side *= 2
    out.add("conv_out", c_prev, 3, side, "decoder.conv_out", norm=c_prev)
    return out.blocks


def _vae_mid(out: _Blocks, side_name: str, c: int, side: int, attention: bool) -> None:
    out.add("resnet", c, c, side, f"{side_name}.mid_block.resnets.0")
    if attention:
        out.add("attention", c, c, side, f"{side_name}.mid_block.attentions.0")
    out.add("resnet", c, c, side, f"{side_name}.mid_block.resnets.1")


def decompose(spec: ArchSpec) -> list[Block]:
    """All blocks of ``spec`` in forward order: U-Net, then VAE encoder, then VAE decoder."""
    return [
        *_unet_blocks(spec.unet, spec.latent_channels, spec.latent_size),
        *_vae_encoder_blocks(spec.vae, spec.latent_channels, spec.image_size),
        *_vae_decoder_blocks(spec.vae, spec.latent_channels, spec.latent_size),
    ]


@dataclass(frozen=True)
class Counts:
    """Parameters and MACs of each component of a spec.

    ``params['vae_encoder']`` and ``params['vae_decoder']`` include the 1x1 quant convs
    (``quant_conv``, ``post_quant_conv``); ``vae_core_params`` leaves them out, as the usual
    "encoder 34,163,592 / decoder 49,490,179" figures of SD 1.5 do.
    """

    params: dict[str, int]
    macs: dict[str, int]
    vae_core_params: dict[str, int]

    @property
    def total_params(self) -> int:
        return sum(self.params.values())

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "params": dict(self.params),
            "macs": dict(self.macs),
            "vae_core_params": dict(self.vae_core_params),
            "total_params": self.total_params,
            "total_macs": self.total_macs,
        }


def count(spec: ArchSpec) -> Counts:
    """Parameter and MAC counts per component, from the spec alone (nothing is built)."""
    params = dict.fromkeys(COMPONENTS, 0)
    macs = dict.fromkeys(COMPONENTS, 0)
    core = dict.fromkeys(COMPONENTS[1:], 0)
    for block in decompose(spec):
        params[block.component] += block.params
        macs[block.component] += block.macs
        if block.component in core and block.kind != "quant_conv":
            core[block.component] += block.params
    return Counts(params=params, macs=macs, vae_core_params=core)
