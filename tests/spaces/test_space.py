"""Search spaces: size, enumeration, sampling, choices <-> spec both ways, extremes, ranges."""

from __future__ import annotations

import pytest
from spaces_support import SCALES, SPACES

from nanosd_nas import spaces
from nanosd_nas.spaces import ArchSpec, SpecError


def test_nanosd_has_exactly_32768_members(nanosd: spaces.Space) -> None:
    assert nanosd.cardinalities == [4, 4, 4, 8, 8, 8]
    assert nanosd.size == 4 * 4 * 4 * 8 * 8 * 8 == 32_768


def test_nanosd_enumerates_every_member_once(nanosd: spaces.Space) -> None:
    vectors = list(nanosd.enumerate())
    assert len(vectors) == len(set(vectors)) == 32_768
    assert all(0 <= v < n for vector in vectors
               for v, n in zip(vector, nanosd.cardinalities, strict=True))


def test_every_nanosd_member_has_its_own_spec(nanosd: spaces.Space) -> None:
    ids = {nanosd.spec(vector).spec_id for vector in nanosd.enumerate()}
    assert len(ids) == 32_768


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("space_name", SPACES)
def test_choices_and_spec_are_inverse(
    shipped_spaces: dict[str, spaces.Space], space_name: str, scale: str
) -> None:
    space = shipped_spaces[space_name]
    for vector in [*space.extremes(), *space.sample(150, seed=5)]:
        assert space.choices(space.spec(vector, scale), scale) == vector


def test_sample_is_seeded_distinct_and_in_range(nanosd: spaces.Space) -> None:
    first = nanosd.sample(50, seed=1)
    assert first == nanosd.sample(50, seed=1)
    assert first != nanosd.sample(50, seed=2)
    assert len(set(first)) == 50
    assert all(0 <= v < n for vector in first
               for v, n in zip(vector, nanosd.cardinalities, strict=True))


def test_sample_cannot_draw_more_distinct_members_than_exist(
    shipped_spaces: dict[str, spaces.Space],
) -> None:
    vae = shipped_spaces["vae"]
    assert len(set(vae.sample(vae.size, seed=0))) == vae.size == 384
    with pytest.raises(ValueError, match="385"):
        vae.sample(vae.size + 1)


def test_spec_of_a_bad_choice_vector_is_refused(nanosd: spaces.Space) -> None:
    with pytest.raises(ValueError, match="6 dimensions"):
        nanosd.spec((0, 0, 0))
    with pytest.raises(ValueError, match="D3"):
        nanosd.spec((0, 0, 0, 8, 0, 0))


def test_a_spec_outside_the_space_is_refused(nanosd: spaces.Space, sd15: ArchSpec) -> None:
    with pytest.raises(SpecError, match="not in space 'nanosd'"):
        nanosd.choices(sd15)  # four levels and a mid block
    member = nanosd.spec((1, 2, 3, 4, 5, 6))
    wider = ArchSpec.from_dict(member.model_copy(update={"latent_size": 32}).to_dict())
    with pytest.raises(SpecError, match="not in space"):
        nanosd.choices(wider)  # same choices, different outside the dimensions
    with pytest.raises(SpecError, match="scale 'mini'"):
        nanosd.choices(member, "mini")  # a full-size member is not a mini member


def test_a_spec_with_a_deeper_transformer_is_not_in_nanosd(nanosd: spaces.Space) -> None:
    document = nanosd.spec((3, 3, 3, 7, 7, 7)).to_dict()
    document["unet"]["levels"][0]["down"][0]["transformer_depth"] = 2
    with pytest.raises(SpecError, match="not in space"):
        nanosd.choices(ArchSpec.from_dict(document))


def test_nanosd_base_is_sd15_after_surgery(nanosd: spaces.Space, sd15: ArchSpec) -> None:
    unet = nanosd.base.unet
    assert len(unet.levels) == 3  # no E4, no D4
    assert not unet.mid_block
    assert [level.channels for level in unet.levels] == [320, 640, 1280]
    assert all(len(level.down) == 2 and len(level.up) == 3 for level in unet.levels)
    assert nanosd.base.vae == sd15.vae


def test_nanosd_choice_labels_turn_transformers_on(nanosd: spaces.Space) -> None:
    smallest, largest = (nanosd.spec(v) for v in nanosd.extremes())
    for level in smallest.unet.levels:
        assert not any(layer.has_transformer for layer in (*level.down, *level.up))
    for level in largest.unet.levels:
        assert all(layer.transformer_depth == 1 for layer in (*level.down, *level.up))
    # choice 1 of E1 ("TR"): the first layer of E1 keeps its transformer, the second does not
    e1 = nanosd.spec((1, 0, 0, 0, 0, 0)).unet.levels[0].down
    assert [layer.has_transformer for layer in e1] == [True, False]
    assert nanosd.dimensions[0].choices == ["RR", "TR", "RT", "TT"]


def test_nanosd_largest_member_is_the_pruned_teacher(nanosd: spaces.Space, sd15: ArchSpec) -> None:
    pruned = spaces.prune(sd15, drop_deepest_levels=1, mid_block=False)
    assert nanosd.spec(nanosd.extremes()[1]) == pruned


def test_nanosd_scaled_covers_the_reported_unet_family(
    shipped_spaces: dict[str, spaces.Space],
) -> None:
    low, high = shipped_spaces["nanosd-scaled"].describe("full")["params_range"]["unet"]
    assert low <= 130_000_000
    assert high >= 315_000_000


@pytest.mark.parametrize("space_name", SPACES)
def test_extremes_are_the_smallest_and_largest_members(
    shipped_spaces: dict[str, spaces.Space], space_name: str
) -> None:
    space = shipped_spaces[space_name]
    smallest, largest = (spaces.count(space.spec(v)) for v in space.extremes())
    for vector in space.sample(200, seed=9):
        counts = spaces.count(space.spec(vector))
        assert smallest.total_params <= counts.total_params <= largest.total_params
        assert smallest.total_macs <= counts.total_macs <= largest.total_macs


def test_describe_reports_size_dimensions_and_ranges(nanosd: spaces.Space) -> None:
    described = nanosd.describe("mini")
    assert described["size"] == 32_768
    assert [d["name"] for d in described["dimensions"]] == ["E1", "E2", "E3", "D3", "D2", "D1"]
    low, high = described["params_range"]["unet"]
    assert 0 < low < high
    full_high = nanosd.describe("full")["params_range"]["unet"][1]
    assert high < full_high


def test_vae_space_varies_only_the_vae(shipped_spaces: dict[str, spaces.Space],
                                       sd15: ArchSpec) -> None:
    vae = shipped_spaces["vae"]
    assert vae.size == 4 * 2 * 2 * 4 * 3 * 2
    members = [vae.spec(v) for v in vae.sample(20, seed=2)]
    assert all(member.unet == sd15.unet for member in members)
    assert len({member.vae for member in members}) == 20


def test_nanosd_scaled_width_choices_apply_per_level(
    shipped_spaces: dict[str, spaces.Space],
) -> None:
    space = shipped_spaces["nanosd-scaled"]
    smallest = space.spec(space.extremes()[0])
    assert [level.channels for level in smallest.unet.levels] == [192, 384, 768]
    assert smallest.vae.encoder_channels == (64, 128, 256, 256)
    assert (smallest.vae.encoder_layers, smallest.vae.decoder_layers) == (1, 1)


@pytest.mark.slow
def test_every_nanosd_member_maps_back_to_its_choices(nanosd: spaces.Space) -> None:
    for vector in nanosd.enumerate():
        assert nanosd.choices(nanosd.spec(vector)) == vector
