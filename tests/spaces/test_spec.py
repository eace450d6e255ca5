"""The architecture spec as a value: JSON round trip, sorted keys, version, stable id."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError
from spaces_support import POINTS, SCALES, SPACES, members

from nanosd_nas import spaces
from nanosd_nas.spaces import ArchSpec


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", POINTS)
def test_point_round_trips_through_json(name: str, scale: str) -> None:
    spec = spaces.to_scale(spaces.load_point(name), scale)
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert ArchSpec.from_json(spec.to_json(indent=2)) == spec


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("space_name", SPACES)
def test_space_members_round_trip_through_json(
    shipped_spaces: dict[str, spaces.Space], space_name: str, scale: str
) -> None:
    space = shipped_spaces[space_name]
    for choices in members(space, n=10, seed=3):
        spec = space.spec(choices, scale)
        assert ArchSpec.from_json(spec.to_json()) == spec, choices


def test_json_has_sorted_keys_and_schema_version(sd15: ArchSpec) -> None:
    text = sd15.to_json()
    document = json.loads(text)
    assert text == json.dumps(document, sort_keys=True, separators=(",", ":"))
    assert document["schema_version"] == spaces.SCHEMA_VERSION
    assert list(document) == sorted(document)
    assert list(document["unet"]["levels"][0]) == sorted(document["unet"]["levels"][0])


def test_spec_file_round_trips(sd15: ArchSpec, tmp_path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(sd15.to_json(indent=2))
    assert ArchSpec.from_file(path) == sd15


def test_spec_id_is_stable_across_independent_constructions() -> None:
    first = spaces.load_point("sd15")
    second = ArchSpec.from_json(spaces.load_point("sd15").to_json(indent=4))
    assert first is not second
    assert re.fullmatch(r"[0-9a-f]{16}", first.spec_id)
    assert first.spec_id == second.spec_id


def test_spec_id_changes_with_the_spec(sd15: ArchSpec) -> None:
    changed = ArchSpec.from_dict(sd15.model_copy(update={"latent_size": 32}).to_dict())
    assert changed.spec_id != sd15.spec_id
    assert spaces.to_scale(sd15, "mini").spec_id != sd15.spec_id
    ids = {spaces.load_point(name).spec_id for name in POINTS}
    assert len(ids) == len(POINTS)


def test_spec_is_frozen(sd15: ArchSpec) -> None:
    with pytest.raises(ValidationError):
        sd15.latent_size = 32  # type: ignore[misc]
    assert sd15.latent_size == 64


def test_sd15_spec_describes_the_teacher(sd15: ArchSpec) -> None:
    unet = sd15.unet
    assert [level.channels for level in unet.levels] == [320, 640, 1280, 1280]
    assert [len(level.down) for level in unet.levels] == [2, 2, 2, 2]
    assert [len(level.up) for level in unet.levels] == [3, 3, 3, 3]
    assert [level.down[0].has_transformer for level in unet.levels] == [True, True, True, False]
    assert unet.mid_block and unet.cross_attention_dim == 768
    assert sd15.vae.encoder_channels == (128, 256, 512, 512)
    assert (sd15.latent_channels, sd15.latent_size, sd15.image_size) == (4, 64, 512)
    assert sd15.vae.scaling_factor == pytest.approx(0.18215)
