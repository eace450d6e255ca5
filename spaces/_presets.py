"""Shipped presets (points and spaces, YAML in ``spaces/presets``) and user YAML/JSON files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from nanosd_nas.spaces._diffusers_config import spec_from_diffusers
from nanosd_nas.spaces._errors import PresetError
from nanosd_nas.spaces._scale import SCALES
from nanosd_nas.spaces._space import DIMENSIONS, AttentionDimension, Dimension, Space
from nanosd_nas.spaces._spec import ArchSpec, SpecError
from nanosd_nas.spaces._surgery import prune


def _shipped(kind: str) -> dict[str, dict[str, Any]]:
    found = {}
    for entry in resources.files("nanosd_nas.spaces.presets").iterdir():
        if entry.name.endswith(".yaml"):
            document = yaml.safe_load(entry.read_text())
            if document.get("kind") == kind:
                found[document["name"]] = document
    return dict(sorted(found.items()))


def list_points() -> list[str]:
    """Names of the shipped architecture points (``sd15``, ``bk-sdm-*``)."""
    return list(_shipped("point"))


def list_spaces() -> list[str]:
    """Names of the shipped search spaces."""
    return list(_shipped("space"))


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise PresetError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        return yaml.safe_load(text)  # YAML is a superset of JSON
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PresetError(f"{path}: malformed YAML/JSON{where}") from None


def _point_spec(document: dict[str, Any], source: str) -> ArchSpec:
    unet, vae = dict(document.get("unet") or {}), dict(document.get("vae") or {})
    if "base" in document:
        base = _shipped("point").get(document["base"])
        if base is None:
            raise PresetError(f"{source}: base {document['base']!r} is not a shipped point")
        unet, vae = {**base.get("unet", {}), **unet}, {**base.get("vae", {}), **vae}
    try:
        return spec_from_diffusers(unet, vae)
    except SpecError as error:
        raise PresetError(f"{source}: {error}") from None


def load_point(name_or_path: str) -> ArchSpec:
    """A spec from a shipped point name, a point YAML file, or a spec JSON file."""
    shipped = _shipped("point")
    if name_or_path in shipped:
        return _point_spec(shipped[name_or_path], name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        raise PresetError(
            f"{name_or_path!r} is neither a preset ({', '.join(shipped)}) nor an existing file"
        )
    document = _read_document(path)
    if isinstance(document, dict) and document.get("kind") == "point":
        return _point_spec(document, str(path))
    try:
        return ArchSpec.from_dict(document)
    except SpecError as error:
        raise PresetError(f"{path}: {error}") from None


def _dimension(entry: Any, base: ArchSpec, source: str) -> Dimension:
    if not isinstance(entry, dict) or "kind" not in entry or "name" not in entry:
        raise PresetError(f"{source}: each dimension needs a 'name' and a 'kind': {entry!r}")
    options = {k: v for k, v in entry.items() if k != "kind"}
    kind = entry["kind"]
    if kind not in DIMENSIONS:
        raise PresetError(f"{source}: dimension kind {kind!r} does not exist; "
                          f"known: {', '.join(DIMENSIONS)}")
    n_levels = len(base.unet.levels)
    if "level" in options and options["level"] not in range(n_levels):
        raise PresetError(f"{source}: dimension {entry['name']!r}: level {options['level']!r} "
                          f"is not a level of the base (0..{n_levels - 1})")
    try:
        if kind == AttentionDimension.kind:
            level = base.unet.levels[options["level"]]
            if options["stage"] not in ("down", "up"):
                raise PresetError(f"stage {options['stage']!r} must be 'down' or 'up'")
            layers = getattr(level, options["stage"])
            depth = options.pop("depth", max((la.transformer_depth for la in layers), default=1))
            return AttentionDimension(**options, layers=len(layers), depth=depth or 1)
        return DIMENSIONS[kind](**options)
    except KeyError as error:
        raise PresetError(f"{source}: dimension {entry['name']!r}: missing {error}") from None
    except (TypeError, IndexError, AttributeError, ValueError) as error:
        raise PresetError(f"{source}: dimension {entry['name']!r}: {error}") from None


def _check_space_fields(document: dict[str, Any], source: str) -> None:
    """The top-level fields' types, checked before anything uses them."""
    for field, kind in (("name", str), ("description", str), ("base", str), ("surgery", dict),
                        ("dimensions", list)):
        value = document.get(field)
        if value is not None and not isinstance(value, kind):
            raise PresetError(f"{source}: {field} must be a {_TYPE_NAMES[kind]}, not "
                              f"{type(value).__name__} {value!r:.60}")
    for entry in document.get("dimensions") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or \
                not isinstance(entry.get("kind"), str):
            raise PresetError(f"{source}: each dimension needs a 'name' and a 'kind' (text): "
                              f"{entry!r:.80}")


_TYPE_NAMES = {str: "text", dict: "mapping", list: "list"}


def _space_from(document: dict[str, Any], source: str, folder: Path | None = None) -> Space:
    _check_space_fields(document, source)
    base_name = str(document.get("base", "sd15"))
    if folder is not None and (folder / base_name).exists():
        base_name = str(folder / base_name)  # a relative base is relative to the space file
    base = load_point(base_name)
    surgery = document.get("surgery") or {}
    try:
        base = prune(base, **surgery)
    except (TypeError, ValueError) as error:
        raise PresetError(f"{source}: surgery: {error}") from None
    dimensions = [_dimension(entry, base, source) for entry in document.get("dimensions") or []]
    if not dimensions:
        raise PresetError(f"{source}: a space needs at least one dimension")
    names = [d.name for d in dimensions]
    if len(set(names)) != len(names):
        raise PresetError(f"{source}: dimension names repeat: {names}")
    space = Space(name=str(document.get("name", source)),
                  description=str(document.get("description", "")),
                  base=base, dimensions=dimensions)
    _check_every_choice(space, source)
    return space


def _check_every_choice(space: Space, source: str) -> None:
    """Every choice of every dimension (the others at their largest), and the smallest member,
    must give a valid spec at every scale: a bad choice is refused now, not mid-search."""
    smallest, largest = space.extremes()
    vectors = [smallest] + [
        (*largest[:d], choice, *largest[d + 1:])
        for d, cardinality in enumerate(space.cardinalities) for choice in range(cardinality)
    ]
    for scale in SCALES:
        for vector in vectors:
            try:
                space.spec(vector, scale)
            # A choice of the wrong type (a list where a width goes) fails in the arithmetic;
            # it is the file's mistake all the same.
            except (SpecError, TypeError, ValueError) as error:
                raise PresetError(f"{source}: member {list(vector)} at scale {scale!r} is "
                                  f"invalid: {error}") from None


def load_space(name_or_path: str) -> Space:
    """A shipped space by name, or a space YAML file."""
    shipped = _shipped("space")
    if name_or_path in shipped:
        return _space_from(shipped[name_or_path], name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        raise PresetError(
            f"{name_or_path!r} is neither a shipped space ({', '.join(shipped)}) "
            "nor an existing file"
        )
    document = _read_document(path)
    if not isinstance(document, dict):
        raise PresetError(f"{path}: a space file must be a YAML mapping")
    return _space_from(document, str(path), path.parent)
