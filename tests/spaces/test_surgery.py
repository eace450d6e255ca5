"""Surgery: prune a spec; transplant teacher weights into every kept layer of a student."""

from __future__ import annotations

import re

import pytest
import torch

from nanosd_nas import spaces
from nanosd_nas.spaces import ArchSpec


@pytest.fixture(scope="module")
def teacher(sd15_mini: ArchSpec) -> dict[str, torch.Tensor]:
    return spaces.build(sd15_mini, seed=1).state_dict()


def _assert_copied_exactly(result: spaces.TransplantResult,
                           teacher: dict[str, torch.Tensor]) -> None:
    student = result.model.state_dict()
    assert result.copied, "nothing was transplanted"
    for name, source in result.copied.items():
        assert torch.equal(student[name], teacher[source]), (name, source)


@pytest.mark.parametrize("vector", [(0, 0, 0, 0, 0, 0), (1, 2, 3, 4, 5, 6), (3, 3, 3, 7, 7, 7)])
def test_nanosd_student_takes_its_teachers_weights(
    nanosd: spaces.Space, teacher: dict[str, torch.Tensor], vector: tuple[int, ...]
) -> None:
    student = nanosd.spec(vector, "mini")
    result = spaces.transplant(teacher, student)
    _assert_copied_exactly(result, teacher)
    # every layer of a nanosd member exists in SD 1.5 with the same shape
    assert result.fresh == []
    assert set(result.copied) == set(result.model.state_dict())


def test_nanosd_decoder_stages_map_from_the_output_end(
    nanosd: spaces.Space, teacher: dict[str, torch.Tensor]
) -> None:
    result = spaces.transplant(teacher, nanosd.spec((3, 3, 3, 7, 7, 7), "mini"))
    for name, source in result.copied.items():
        up = re.match(r"unet\.up_blocks\.(\d+)\.", name)
        down = re.match(r"unet\.down_blocks\.(\d+)\.", name)
        if up:
            assert source == name.replace(f"up_blocks.{up[1]}.", f"up_blocks.{int(up[1]) + 1}.")
        elif down or name.startswith("vae."):
            assert source == name
    assert (result.copied["unet.up_blocks.0.resnets.0.conv1.weight"]
            == "unet.up_blocks.1.resnets.0.conv1.weight")


def test_a_student_equal_to_its_teacher_is_the_teacher_bit_for_bit(
    sd15_mini: ArchSpec, teacher: dict[str, torch.Tensor]
) -> None:
    result = spaces.transplant(teacher, sd15_mini, seed=99)
    student = result.model.state_dict()
    assert result.fresh == []
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[name], teacher[name]) for name in teacher)


def test_a_fresh_student_differs_from_the_teacher(
    sd15_mini: ArchSpec, teacher: dict[str, torch.Tensor]
) -> None:
    """Guards the test above: without transplant the weights would differ."""
    fresh = spaces.build(sd15_mini, seed=99).state_dict()
    assert not torch.equal(fresh["unet.conv_in.weight"], teacher["unet.conv_in.weight"])


def test_bk_sdm_tiny_last_decoder_layer_comes_from_the_teachers_last(
    teacher: dict[str, torch.Tensor],
) -> None:
    tiny = spaces.to_scale(spaces.load_point("bk-sdm-tiny"), "mini")
    result = spaces.transplant(teacher, tiny)
    _assert_copied_exactly(result, teacher)
    assert result.fresh == []
    copied = result.copied
    for u in range(3):  # student D3, D2, D1 <- teacher up_blocks 1, 2, 3
        for kind in ("resnets", "attentions"):
            first = f"unet.up_blocks.{u}.{kind}.0.norm.weight".replace(
                "resnets.0.norm.", "resnets.0.norm1.")
            last = first.replace(f"{kind}.0.", f"{kind}.1.")
            assert copied[first] == first.replace(f"up_blocks.{u}.", f"up_blocks.{u + 1}.")
            assert copied[last] == first.replace(f"up_blocks.{u}.{kind}.0.",
                                                 f"up_blocks.{u + 1}.{kind}.2.")


def test_transplanted_student_runs_like_its_teacher_where_it_is_the_teacher(
    sd15_mini: ArchSpec, teacher: dict[str, torch.Tensor]
) -> None:
    student = spaces.transplant(teacher, sd15_mini).model
    original = spaces.build(sd15_mini, seed=1)
    inputs = original.example_inputs()["unet"]
    with torch.no_grad():
        assert torch.equal(student.unet(*inputs), original.unet(*inputs))


def test_prune_is_the_nanosd_and_bk_sdm_surgery(sd15: ArchSpec, nanosd: spaces.Space) -> None:
    pruned = spaces.prune(sd15, drop_deepest_levels=1, mid_block=False)
    assert pruned == nanosd.base
    assert len(pruned.unet.levels) == 3 and not pruned.unet.mid_block
    base, small, tiny = (spaces.load_point(f"bk-sdm-{n}") for n in ("base", "small", "tiny"))
    assert spaces.prune(base, mid_block=False) == small
    assert spaces.prune(small, drop_deepest_levels=1) == tiny
    assert spaces.prune(sd15) == sd15


def test_prune_must_leave_a_level(sd15: ArchSpec) -> None:
    with pytest.raises(ValueError, match="at least one of 4 levels"):
        spaces.prune(sd15, drop_deepest_levels=4)
    with pytest.raises(ValueError, match="drop_deepest_levels=-1"):
        spaces.prune(sd15, drop_deepest_levels=-1)
