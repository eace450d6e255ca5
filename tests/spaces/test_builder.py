"""The builder: seeded weights, diffusers names, components that run on their example inputs."""

from __future__ import annotations

import pytest
import torch

from nanosd_nas import spaces
from nanosd_nas.spaces import ArchSpec


def test_same_seed_same_weights_other_seed_other_weights(sd15_mini: ArchSpec) -> None:
    a, b, c = (spaces.build(sd15_mini, seed=seed).state_dict() for seed in (3, 3, 4))
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a["unet.conv_in.weight"], c["unet.conv_in.weight"])


def test_build_leaves_the_global_random_state_alone(sd15_mini: ArchSpec) -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    spaces.build(sd15_mini, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_components_run_on_their_example_inputs(sd15_mini: ArchSpec) -> None:
    built = spaces.build(sd15_mini)
    components, inputs = built.components(), built.example_inputs(batch=2)
    assert list(components) == list(spaces.COMPONENTS) == list(inputs)
    with torch.no_grad():
        outputs = {name: module(*inputs[name]) for name, module in components.items()}
    latent = (2, 4, 16, 16)
    assert outputs["unet"].shape == latent
    assert outputs["vae_encoder"].shape == latent
    assert outputs["vae_decoder"].shape == (2, 3, 128, 128)


def test_example_inputs_are_seeded(sd15_mini: ArchSpec) -> None:
    built = spaces.build(sd15_mini)
    a, b, c = built.example_inputs(seed=1), built.example_inputs(seed=1), built.example_inputs()
    assert torch.equal(a["unet"][0], b["unet"][0])
    assert not torch.equal(a["unet"][0], c["unet"][0])


def test_a_stage_with_mixed_layers_keeps_the_layer_index(nanosd: spaces.Space) -> None:
    built = spaces.build(nanosd.spec((2, 0, 0, 0, 0, 0), "mini"))  # E1 "RT"
    names = built.state_dict()
    assert any(n.startswith("unet.down_blocks.0.attentions.1.") for n in names)
    assert not any(n.startswith("unet.down_blocks.0.attentions.0.") for n in names)


def test_state_dict_round_trips_and_is_strict(sd15_mini: ArchSpec) -> None:
    source = spaces.build(sd15_mini, seed=1)
    target = spaces.build(sd15_mini, seed=2)
    target.load_state_dict(source.state_dict())
    assert all(torch.equal(target.state_dict()[n], t) for n, t in source.state_dict().items())
    partial = dict(source.state_dict())
    partial.pop("unet.conv_in.weight")
    with pytest.raises(RuntimeError, match=r"conv_in\.weight"):
        target.load_state_dict(partial)


def test_weights_of_a_different_architecture_do_not_load(
    sd15_mini: ArchSpec, nanosd: spaces.Space
) -> None:
    student = spaces.build(nanosd.spec((0, 0, 0, 0, 0, 0), "mini"))
    with pytest.raises(RuntimeError):
        student.load_state_dict(spaces.build(sd15_mini).state_dict())


def test_every_block_kind_the_validator_accepts_can_be_built_and_counted():
    from nanosd_nas.spaces._blocks import _COUNTERS
    from nanosd_nas.spaces._spec import RESIDUAL_BLOCK_KINDS

    assert set(RESIDUAL_BLOCK_KINDS) == set(spaces.RESIDUAL_BLOCKS)
    assert set(RESIDUAL_BLOCK_KINDS) <= set(_COUNTERS)
