"""Build PyTorch modules from a spec, out of diffusers' own building blocks.

Parameter names follow diffusers' ``UNet2DConditionModel`` and ``AutoencoderKL``, so an SD-1.5
state dict loads into the ``sd15`` build with ``strict=True`` and gives the same outputs. A stage
whose layers mix ResNet-only and ResNet+transformer layers keeps the layer index in the
transformer's name (``attentions.1`` without ``attentions.0``), which is what surgery needs to
find each kept layer's teacher weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.models.autoencoders.vae import Decoder, Encoder
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.upsampling import Upsample2D
from torch import nn

from nanosd_nas.spaces._blocks import skip_channels
from nanosd_nas.spaces._spec import ArchSpec, Layer, UNetSpec, VAESpec, validate

ResidualFactory = Callable[[int, int, int, int], nn.Module]


def _resnet(c_in: int, c_out: int, temb: int, groups: int) -> nn.Module:
    return ResnetBlock2D(
        in_channels=c_in, out_channels=c_out, temb_channels=temb, eps=1e-5, groups=groups,
        dropout=0.0, time_embedding_norm="default", non_linearity="silu",
        output_scale_factor=1.0, pre_norm=True,
    )


#: Residual block kinds by name (a layer's ``block``): (in, out, temb, groups) -> module.
RESIDUAL_BLOCKS: dict[str, ResidualFactory] = {"resnet": _resnet}


def residual_block(kind: str) -> ResidualFactory:
    if kind not in RESIDUAL_BLOCKS:
        raise ValueError(f"block kind {kind!r} does not exist")
    return RESIDUAL_BLOCKS[kind]


def _transformer(channels: int, heads: int, depth: int, unet: UNetSpec) -> Transformer2DModel:
    transformer: Transformer2DModel = Transformer2DModel(
        num_attention_heads=heads, attention_head_dim=channels // heads, in_channels=channels,
        num_layers=depth, cross_attention_dim=unet.cross_attention_dim,
        norm_num_groups=unet.norm_groups, use_linear_projection=False,
        only_cross_attention=False, upcast_attention=False, attention_type="default",
    )
    return transformer


@dataclass(frozen=True)
class StageShape:
    """What a U-Net stage is made of: its layers, their input channels, and the level's widths."""

    layers: tuple[Layer, ...]
    in_channels: list[int]
    out_channels: int
    heads: int
    temb: int


class UNetStage(nn.Module):
    """An encoder or decoder stage: ResNet blocks, each optionally followed by a transformer."""

    def __init__(self, shape: StageShape, unet: UNetSpec) -> None:
        super().__init__()
        c_out = shape.out_channels
        self.resnets = nn.ModuleList(
            residual_block(layer.block)(c_in, c_out, shape.temb, unet.norm_groups)
            for layer, c_in in zip(shape.layers, shape.in_channels, strict=True)
        )
        self.attentions = nn.ModuleDict({
            str(j): _transformer(c_out, shape.heads, layer.transformer_depth, unet)
            for j, layer in enumerate(shape.layers) if layer.has_transformer
        })

    def layer(
        self, j: int, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        h = self.resnets[j](h, temb)
        if str(j) in self.attentions:
            h = self.attentions[str(j)](h, encoder_hidden_states=context, return_dict=False)[0]
        return h


class DownStage(UNetStage):
    """Encoder stage ``E{k}``; every layer's output and the downsampler's are skip connections."""

    def __init__(self, shape: StageShape, unet: UNetSpec, *, downsample: bool) -> None:
        super().__init__(shape, unet)
        c = shape.out_channels
        self.downsamplers = nn.ModuleList(
            [Downsample2D(c, use_conv=True, out_channels=c, padding=1, name="op")]
            if downsample else []
        )

    def forward(
        self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for j in range(len(self.resnets)):
            h = self.layer(j, h, temb, context)
            skips.append(h)
        for downsampler in self.downsamplers:
            h = downsampler(h)
            skips.append(h)
        return h, skips


class UpStage(UNetStage):
    """Decoder stage ``D{k}``; each layer first concatenates one skip connection."""

    def __init__(self, shape: StageShape, unet: UNetSpec, *, upsample: bool) -> None:
        super().__init__(shape, unet)
        c = shape.out_channels
        self.upsamplers = nn.ModuleList(
            [Upsample2D(c, use_conv=True, out_channels=c)] if upsample else []
        )

    def forward(
        self, h: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor,
        context: torch.Tensor,
    ) -> torch.Tensor:
        for j in range(len(self.resnets)):
            h = torch.cat([h, skips.pop()], dim=1)
            h = self.layer(j, h, temb, context)
        for upsampler in self.upsamplers:
            h = upsampler(h)
        return h


class MidBlock(nn.Module):
    """ResNet, transformer, ResNet (diffusers' ``UNetMidBlock2DCrossAttn``)."""

    def __init__(self, *, channels: int, heads: int, temb: int, unet: UNetSpec) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            _resnet(channels, channels, temb, unet.norm_groups) for _ in range(2)
        )
        self.attentions = nn.ModuleList(
            [_transformer(channels, heads, unet.mid_transformer_depth, unet)]
        )

    def forward(self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.resnets[0](h, temb)
        h = self.attentions[0](h, encoder_hidden_states=context, return_dict=False)[0]
        out: torch.Tensor = self.resnets[1](h, temb)
        return out


class SpecUNet(nn.Module):
    """The denoising U-Net of a spec; ``forward(sample, timestep, context) -> noise prediction``."""

    def __init__(self, unet: UNetSpec, latent_channels: int) -> None:
        super().__init__()
        channels = [level.channels for level in unet.levels]
        c0, temb, groups, n = channels[0], 4 * channels[0], unet.norm_groups, len(unet.levels)
        self.conv_in = nn.Conv2d(latent_channels, c0, kernel_size=3, padding=1)
        self.time_proj = Timesteps(c0, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(c0, temb, act_fn="silu")
        self.down_blocks = nn.ModuleList()
        c_prev = c0
        for k, level in enumerate(unet.levels):
            in_channels = [c_prev] + [level.channels] * (len(level.down) - 1)
            shape = StageShape(level.down, in_channels, level.channels, level.heads, temb)
            self.down_blocks.append(DownStage(shape, unet, downsample=k < n - 1))
            c_prev = level.channels
        self.mid_block = (
            MidBlock(channels=channels[-1], heads=unet.levels[-1].heads, temb=temb, unet=unet)
            if unet.mid_block else None
        )
        self.up_blocks = nn.ModuleList()
        for k in reversed(range(n)):
            level = unet.levels[k]
            previous = [c_prev] + [level.channels] * (len(level.up) - 1)
            in_channels = [p + s for p, s in zip(previous, skip_channels(unet, k), strict=True)]
            shape = StageShape(level.up, in_channels, level.channels, level.heads, temb)
            self.up_blocks.append(UpStage(shape, unet, upsample=k > 0))
            c_prev = level.channels
        self.conv_norm_out = nn.GroupNorm(num_channels=c0, num_groups=groups, eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(c0, latent_channels, kernel_size=3, padding=1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        timesteps = timestep.reshape(-1).expand(sample.shape[0])
        temb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))
        h = self.conv_in(sample)
        skips = [h]
        for down in self.down_blocks:
            h, stage_skips = down(h, temb, context)
            skips.extend(stage_skips)
        if self.mid_block is not None:
            h = self.mid_block(h, temb, context)
        for up in self.up_blocks:
            h = up(h, skips, temb, context)
        out: torch.Tensor = self.conv_out(self.conv_act(self.conv_norm_out(h)))
        return out


class SpecVAE(nn.Module):
    """The VAE of a spec, with ``AutoencoderKL``'s module names."""

    def __init__(self, vae: VAESpec, latent_channels: int) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.encoder = Encoder(
            in_channels=3, out_channels=latent_channels,
            down_block_types=("DownEncoderBlock2D",) * len(vae.encoder_channels),
            block_out_channels=vae.encoder_channels, layers_per_block=vae.encoder_layers,
            norm_num_groups=vae.norm_groups, act_fn="silu", double_z=True,
            mid_block_add_attention=vae.encoder_mid_attention,
        )
        self.decoder = Decoder(
            in_channels=latent_channels, out_channels=3,
            up_block_types=("UpDecoderBlock2D",) * len(vae.decoder_channels),
            block_out_channels=vae.decoder_channels, layers_per_block=vae.decoder_layers,
            norm_num_groups=vae.norm_groups, act_fn="silu",
            mid_block_add_attention=vae.decoder_mid_attention,
        )
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)

    def moments(self, image: torch.Tensor) -> torch.Tensor:
        """Mean and log-variance of the latent distribution, stacked on the channel axis."""
        moments: torch.Tensor = self.quant_conv(self.encoder(image))
        return moments

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """The latent mean (unscaled) of ``image`` in [-1, 1]."""
        return self.moments(image)[:, : self.latent_channels]

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        image: torch.Tensor = self.decoder(self.post_quant_conv(latent))
        return image

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(image))


class VAEEncoderPart(nn.Module):
    """The encoder half as its own module (for export and latency): image -> latent mean."""

    def __init__(self, vae: SpecVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(image)


class VAEDecoderPart(nn.Module):
    """The decoder half as its own module: latent -> image."""

    def __init__(self, vae: SpecVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent)


@dataclass
class BuiltModel:
    """The modules of a spec, in eval mode."""

    spec: ArchSpec
    unet: SpecUNet
    vae: SpecVAE

    def state_dict(self) -> dict[str, torch.Tensor]:
        """All weights, named ``unet.<diffusers name>`` and ``vae.<diffusers name>``."""
        return {
            f"{prefix}.{name}": tensor
            for prefix, module in (("unet", self.unet), ("vae", self.vae))
            for name, tensor in module.state_dict().items()
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights named as :meth:`state_dict` names them, strictly."""
        for prefix, module in (("unet", self.unet), ("vae", self.vae)):
            part = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
            module.load_state_dict(part, strict=True)
        unknown = [k for k in state if not k.startswith(("unet.", "vae."))]
        if unknown:
            raise KeyError(f"weights without a unet./vae. prefix: {unknown[:3]}")

    def components(self) -> dict[str, nn.Module]:
        """The three deployable components by name: ``unet``, ``vae_encoder``, ``vae_decoder``."""
        return {
            "unet": self.unet,
            "vae_encoder": VAEEncoderPart(self.vae),
            "vae_decoder": VAEDecoderPart(self.vae),
        }

    def example_inputs(self, batch: int = 1, seed: int = 0) -> dict[str, tuple[torch.Tensor, ...]]:
        """Seeded example inputs of each component, shaped as the spec says."""
        spec, g = self.spec, torch.Generator().manual_seed(seed)
        lat = (batch, spec.latent_channels, spec.latent_size, spec.latent_size)
        image = (batch, 3, spec.image_size, spec.image_size)
        context = (batch, spec.unet.context_length, spec.unet.cross_attention_dim)
        return {
            "unet": (torch.randn(lat, generator=g), torch.tensor([500.0]),
                     torch.randn(context, generator=g)),
            "vae_encoder": (torch.rand(image, generator=g) * 2 - 1,),
            "vae_decoder": (torch.randn(lat, generator=g),),
        }


def build(spec: ArchSpec, *, seed: int = 0, device: str | torch.device = "cpu") -> BuiltModel:
    """Build the U-Net and VAE of ``spec`` with seeded initial weights, in eval mode.

    Raises:
        SpecError: ``spec`` is invalid (a spec constructed directly skips ``from_dict``'s checks).
    """
    validate(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            unet = SpecUNet(spec.unet, spec.latent_channels)
            vae = SpecVAE(spec.vae, spec.latent_channels)
    return BuiltModel(spec=spec, unet=unet.eval(), vae=vae.eval())
