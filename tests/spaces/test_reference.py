"""Reference check: our builds load diffusers' weights strictly and compute the same."""

from __future__ import annotations

from typing import Any

import diffusers
import pytest
import torch
from spaces_support import POINTS

from nanosd_nas import spaces
from nanosd_nas.spaces import ArchSpec

TOLERANCE = 1e-5

#: SD 1.5's ``unet/config.json`` and ``vae/config.json`` as published (diffusers format).
SD15_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                       "CrossAttnUpBlock2D"],
}
SD15_VAE_CONFIG: dict[str, Any] = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}


def _reference_unet(config: dict[str, Any], seed: int = 123) -> diffusers.UNet2DConditionModel:
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel.from_config(config).eval()


def _reference_vae(config: dict[str, Any], seed: int = 321) -> diffusers.AutoencoderKL:
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL.from_config(config).eval()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@torch.no_grad()
def _check_unet(spec: ArchSpec, reference: diffusers.UNet2DConditionModel, **load: Any) -> None:
    built = spaces.build(spec, seed=7, device="meta" if load else "cpu")
    built.unet.load_state_dict(reference.state_dict(), strict=True, **load)
    inputs = built.example_inputs()["unet"]
    ours = built.unet(*inputs)
    theirs = reference(*inputs).sample
    assert ours.shape == (1, spec.latent_channels, spec.latent_size, spec.latent_size)
    assert _max_diff(ours, theirs) <= TOLERANCE


@torch.no_grad()
def _check_vae(spec: ArchSpec, reference: diffusers.AutoencoderKL, **load: Any) -> None:
    built = spaces.build(spec, seed=7, device="meta" if load else "cpu")
    built.vae.load_state_dict(reference.state_dict(), strict=True, **load)
    inputs = built.example_inputs()
    (image,), (latent,) = inputs["vae_encoder"], inputs["vae_decoder"]
    mean = built.vae.encode(image)
    assert mean.shape == latent.shape
    assert _max_diff(mean, reference.encode(image).latent_dist.mean) <= TOLERANCE
    decoded = built.vae.decode(latent)
    assert decoded.shape == image.shape
    assert _max_diff(decoded, reference.decode(latent).sample) <= TOLERANCE


@pytest.mark.parametrize("name", POINTS)
def test_mini_unet_matches_diffusers(name: str) -> None:
    spec = spaces.to_scale(spaces.load_point(name), "mini")
    _check_unet(spec, _reference_unet(spaces.unet_config(spec)))


@pytest.mark.parametrize("name", POINTS)
def test_mini_vae_matches_diffusers(name: str) -> None:
    spec = spaces.to_scale(spaces.load_point(name), "mini")
    _check_vae(spec, _reference_vae(spaces.vae_config(spec)))


def test_loaded_weights_are_what_makes_outputs_equal(sd15_mini: ArchSpec) -> None:
    """Guards the check above: our own seeded weights give a different output."""
    reference = _reference_unet(spaces.unet_config(sd15_mini))
    built = spaces.build(sd15_mini, seed=7)
    inputs = built.example_inputs()["unet"]
    with torch.no_grad():
        assert _max_diff(built.unet(*inputs), reference(*inputs).sample) > 1e-3


def test_published_sd15_configs_are_the_sd15_spec(sd15: ArchSpec) -> None:
    assert spaces.spec_from_diffusers(SD15_UNET_CONFIG, SD15_VAE_CONFIG) == sd15


def test_state_dict_names_follow_diffusers(sd15: ArchSpec) -> None:
    built = spaces.build(sd15, device="meta")
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel.from_config(SD15_UNET_CONFIG)
        vae = diffusers.AutoencoderKL.from_config(SD15_VAE_CONFIG)
    assert set(built.unet.state_dict()) == set(unet.state_dict())
    assert set(built.vae.state_dict()) == set(vae.state_dict())


@pytest.mark.slow
def test_full_size_sd15_unet_matches_diffusers(sd15: ArchSpec) -> None:
    # Full width at SD 1.5's real 64x64 latent, batch 1; weights assigned to spare memory.
    _check_unet(sd15, _reference_unet(SD15_UNET_CONFIG), assign=True)


@pytest.mark.slow
def test_full_size_sd15_vae_matches_diffusers(sd15: ArchSpec) -> None:
    # Full width; a 16x16 latent (128 px image) keeps the 512 px VAE's minute-long pass out.
    spec = ArchSpec.from_dict(sd15.model_copy(update={"latent_size": 16}).to_dict())
    _check_vae(spec, _reference_vae(SD15_VAE_CONFIG), assign=True)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["bk-sdm-base", "bk-sdm-small", "bk-sdm-tiny"])
def test_full_size_bk_sdm_unets_match_diffusers(preset: str) -> None:
    # The BK-SDM configs as diffusers builds them, at full width and the real 64x64 latent.
    spec = spaces.load_point(preset)
    _check_unet(spec, _reference_unet(spaces.unet_config(spec)), assign=True)
