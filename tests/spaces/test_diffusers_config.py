"""diffusers configs: exported where stock diffusers can express a spec, refused where not."""

from __future__ import annotations

import diffusers
import pytest
import torch
from spaces_support import POINTS, SCALES, n_params

from nanosd_nas import spaces
from nanosd_nas.spaces import ArchSpec, NotExpressible, SpecError


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", POINTS)
def test_point_configs_round_trip_to_the_same_spec(name: str, scale: str) -> None:
    spec = spaces.to_scale(spaces.load_point(name), scale)
    assert spaces.spec_from_diffusers(spaces.unet_config(spec), spaces.vae_config(spec)) == spec


def test_sd15_config_is_what_diffusers_publishes(sd15: ArchSpec) -> None:
    config = spaces.unet_config(sd15)
    assert config["block_out_channels"] == [320, 640, 1280, 1280]
    assert config["down_block_types"] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert config["up_block_types"] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert config["mid_block_type"] == "UNetMidBlock2DCrossAttn"
    assert config["cross_attention_dim"] == 768
    vae = spaces.vae_config(sd15)
    assert vae["block_out_channels"] == [128, 256, 512, 512]
    assert (vae["layers_per_block"], vae["latent_channels"], vae["sample_size"]) == (2, 4, 512)


@pytest.mark.parametrize(
    ("vector", "stage"),
    [((1, 0, 0, 0, 0, 0), "E1"), ((0, 0, 2, 0, 0, 0), "E3"), ((0, 0, 0, 1, 0, 0), "D3"),
     ((3, 3, 3, 7, 7, 6), "D1")],
)
def test_mixed_attention_in_a_stage_is_not_expressible(
    nanosd: spaces.Space, vector: tuple[int, ...], stage: str
) -> None:
    with pytest.raises(NotExpressible) as caught:
        spaces.unet_config(nanosd.spec(vector))
    message = str(caught.value)
    assert stage in message and "mixes" in message


UNIFORM = (3, 0, 3, 0, 7, 0)  # E1 TT, E2 RR, E3 TT, D3 RRR, D2 TTT, D1 RRR


def test_a_member_with_uniform_stages_is_expressible(nanosd: spaces.Space) -> None:
    spec = nanosd.spec(UNIFORM)
    config = spaces.unet_config(spec)
    assert config["down_block_types"] == ["CrossAttnDownBlock2D", "DownBlock2D",
                                          "CrossAttnDownBlock2D"]
    assert config["up_block_types"] == ["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    assert config["mid_block_type"] is None
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel.from_config(config)
    assert n_params(unet) == spaces.count(spec).params["unet"]
    assert spaces.spec_from_diffusers(config, spaces.vae_config(spec)) == spec


def test_a_uniform_member_computes_what_diffusers_computes(nanosd: spaces.Space) -> None:
    spec = nanosd.spec(UNIFORM, "mini")
    torch.manual_seed(5)
    reference = diffusers.UNet2DConditionModel.from_config(spaces.unet_config(spec)).eval()
    built = spaces.build(spec)
    built.unet.load_state_dict(reference.state_dict(), strict=True)
    inputs = built.example_inputs()["unet"]
    with torch.no_grad():
        assert (built.unet(*inputs) - reference(*inputs).sample).abs().max().item() <= 1e-5


def test_different_vae_encoder_and_decoder_is_not_expressible(
    shipped_spaces: dict[str, spaces.Space],
) -> None:
    vae_space = shipped_spaces["vae"]
    spec = vae_space.spec((0, 1, 1, 3, 1, 1))  # encoder narrower than the decoder
    with pytest.raises(NotExpressible, match=r"vae\.encoder_channels"):
        spaces.vae_config(spec)
    assert spaces.unet_config(spec) == spaces.unet_config(spaces.load_point("sd15"))


def test_not_expressible_is_a_value_error() -> None:
    assert issubclass(NotExpressible, ValueError)


@pytest.mark.parametrize(
    ("update", "field"),
    [({"use_linear_projection": True}, "unet.use_linear_projection"),
     ({"down_block_types": ["SimpleCrossAttnDownBlock2D"] * 4}, "unet.down_block_types"),
     ({"layers_per_block": [2, 2]}, "unet.layers_per_block")],
)
def test_configs_the_spec_cannot_model_are_refused(
    sd15: ArchSpec, update: dict[str, object], field: str
) -> None:
    config = spaces.unet_config(sd15) | update
    with pytest.raises(SpecError) as caught:
        spaces.spec_from_diffusers(config, spaces.vae_config(sd15))
    assert caught.value.field == field
