"""Turn a SPEC argument into an :class:`ArchSpec`."""

from __future__ import annotations

from pathlib import Path

import yaml

from nanosd_nas import spaces
from nanosd_nas.cli._output import UserError


def resolve_spec(text: str, scale: str | None) -> spaces.ArchSpec:
    """A SPEC argument: a preset name (``sd15``), a space member (``nanosd:3,0,1,7,7,2``), a
    spec JSON file or a point YAML file.

    Presets and space members are full-size unless ``scale`` says otherwise; a spec file is
    already concrete and is used as written.
    """
    if scale is not None:
        spaces.get_scale(scale)
    space_name, sep, vector = text.rpartition(":")
    if sep and not Path(text).exists():
        space = spaces.load_space(space_name)
        try:
            choices = tuple(int(part) for part in vector.split(","))
        except ValueError:
            raise UserError(
                f"{text!r}: a space member is SPACE:i,j,... with one choice index per "
                f"dimension ({len(space.dimensions)} for {space.name})"
            ) from None
        return space.spec(choices, scale or "full")
    if text in spaces.list_points():
        return spaces.to_scale(spaces.load_point(text), scale or "full")
    spec = spaces.load_point(text)  # a file: PresetError if missing or malformed
    if _is_point_file(Path(text)):
        return spaces.to_scale(spec, scale or "full")
    if scale not in (None, "full"):
        raise UserError(f"{text}: a spec file is used as written; --scale applies to presets "
                        "and space members only")
    return spec


def _is_point_file(path: Path) -> bool:
    """A point YAML (``kind: point``, full-size) rather than a concrete spec JSON."""
    document = yaml.safe_load(path.read_text())
    return isinstance(document, dict) and document.get("kind") == "point"
