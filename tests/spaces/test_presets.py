"""Shipped presets, and a user's own space, point and spec files; clear errors on bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from spaces_support import POINTS, SPACES

from nanosd_nas import spaces
from nanosd_nas.spaces import ArchSpec, PresetError

USER_SPACE = """\
# my own space: the nanosd surgery, two stages searched, E1 at two widths
kind: space
name: my-space
description: a user's space
base: sd15
surgery: {drop_deepest_levels: 1, mid_block: false}
dimensions:
  - {name: E1, kind: attention, stage: down, level: 0}
  - {name: D1, kind: attention, stage: up, level: 0}
  - {name: W1, kind: width, level: 0, choices: [256, 320]}
"""


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_shipped_presets_are_listed() -> None:
    assert sorted(spaces.list_points()) == sorted(POINTS)
    assert set(SPACES) <= set(spaces.list_spaces())


def test_a_users_space_file_loads(tmp_path: Path, nanosd: spaces.Space) -> None:
    space = spaces.load_space(_write(tmp_path, USER_SPACE))
    assert space.name == "my-space"
    assert space.cardinalities == [4, 8, 2]
    assert space.base == nanosd.base
    member = space.spec((3, 0, 0))
    assert member.unet.levels[0].channels == 256
    assert all(layer.has_transformer for layer in member.unet.levels[0].down)
    assert space.choices(space.spec((1, 5, 1), "mini"), "mini") == (1, 5, 1)


def test_a_users_point_file_loads(tmp_path: Path) -> None:
    text = "kind: point\nname: mine\nbase: sd15\nunet: {layers_per_block: 1}\n"
    assert spaces.load_point(_write(tmp_path, text, "point.yaml")) == spaces.load_point(
        "bk-sdm-base")


def test_a_spec_json_file_loads_as_a_point(tmp_path: Path, nanosd: spaces.Space) -> None:
    spec = nanosd.spec((1, 2, 3, 4, 5, 6), "mini")
    assert spaces.load_point(_write(tmp_path, spec.to_json(indent=2), "spec.json")) == spec


def test_an_invalid_spec_json_file_names_file_and_field(tmp_path: Path, sd15: ArchSpec) -> None:
    document = sd15.to_json().replace('"heads":8', '"heads":7', 1)
    path = _write(tmp_path, document, "bad.json")
    with pytest.raises(PresetError) as caught:
        spaces.load_point(path)
    message = str(caught.value)
    assert path in message and "unet.levels[0].heads=7" in message


@pytest.mark.parametrize("loader", [spaces.load_point, spaces.load_space])
def test_unknown_name_is_a_preset_error(loader) -> None:
    with pytest.raises(PresetError, match="'sd99' is neither"):
        loader("sd99")


def test_unknown_preset_message_lists_the_presets() -> None:
    with pytest.raises(PresetError, match="bk-sdm-tiny"):
        spaces.load_point("sd99")


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "kind: space\nname: broken\ndimensions: [\n  {name: E1\n")
    with pytest.raises(PresetError, match="malformed YAML") as caught:
        spaces.load_space(path)
    assert path in str(caught.value) and "line" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (USER_SPACE.replace("base: sd15", "base: sd99"), "'sd99' is neither"),
        (USER_SPACE.replace("kind: width", "kind: depth"), "dimension kind 'depth' does not exist"),
        (USER_SPACE.replace("{name: D1, ", "{"), "needs a 'name' and a 'kind'"),
        (USER_SPACE.replace("name: D1", "name: E1"), "dimension names repeat"),
        (USER_SPACE.replace("level: 0}", "level: 5}", 1), "'E1': level 5 is not a level"),
        (USER_SPACE.replace("level: 0, choices", "level: 9, choices"),
         "'W1': level 9 is not a level"),
        (USER_SPACE.replace(", level: 0}", "}", 1), "'E1': missing 'level'"),
        (USER_SPACE.replace("stage: down", "stage: middle"), "'middle' must be 'down' or 'up'"),
        (USER_SPACE.replace("[256, 320]", "[320, 250]"),
         r"member \[.*\] at scale 'full' is invalid: .*250"),
        (USER_SPACE.replace("drop_deepest_levels: 1", "drop_deepest_levels: 4"), "surgery"),
        (USER_SPACE.split("dimensions:")[0], "at least one dimension"),
        ("- just\n- a list\n", "must be a YAML mapping"),
    ],
    ids=["unknown-base", "unknown-kind", "unnamed", "repeated", "bad-level",
         "bad-width-level", "missing-level", "bad-stage",
         "invalid-member", "bad-surgery", "no-dimensions", "not-a-mapping"],
)
def test_bad_space_file_is_a_preset_error(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PresetError, match=expected) as caught:
        spaces.load_space(path)
    assert "\n" not in str(caught.value)


def test_point_file_with_unknown_base_is_a_preset_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "kind: point\nname: mine\nbase: sd99\n", "point.yaml")
    with pytest.raises(PresetError, match="base 'sd99' is not a shipped point"):
        spaces.load_point(path)


def test_missing_file_is_a_preset_error(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="nor an existing file"):
        spaces.load_space(str(tmp_path / "nowhere.yaml"))


def test_preset_error_is_a_value_error() -> None:
    assert issubclass(PresetError, ValueError)


def test_relative_base_of_a_space_file_is_relative_to_that_file(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "teacher.json").write_text(spaces.load_point("bk-sdm-tiny").to_json())
    (folder / "space.yaml").write_text(
        "kind: space\nname: rel\nbase: teacher.json\ndimensions:\n"
        "  - {name: E1, kind: attention, stage: down, level: 0}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the space file's folder
    space = spaces.load_space(str(folder / "space.yaml"))
    assert space.spec(space.extremes()[1]) == spaces.load_point("bk-sdm-tiny")
