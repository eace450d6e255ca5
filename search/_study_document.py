"""Reading study documents: YAML or JSON text, and one line per validation problem.

A message names the source (a file, ``request body``), the field path and the bad value:
``study.yaml: objectives.1.direction: 'fastest' is not one of maximize, minimize``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

_LOOKS_LIKE_JSON = re.compile(r'\s*(\{\s*"|\[)')


class StudyConfigError(ValueError):
    """A study document that cannot be used; the message is one line naming the file (or
    document), the field and the bad value."""


def parse_document(text: str, source: str) -> Any:
    """JSON when it starts like JSON (``{"`` or ``[``), else YAML (a flow mapping such as
    ``{name: a}`` is YAML).

    Raises:
        StudyConfigError: malformed text, with the line and column.
    """
    try:
        return _parse(text, source)
    except RecursionError:  # '[[[[...' a hundred thousand deep: a document, not a crash
        raise StudyConfigError(f"{source}: the document is nested too deeply") from None


def _parse(text: str, source: str) -> Any:
    if _LOOKS_LIKE_JSON.match(text):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise StudyConfigError(f"{source}: malformed JSON at line {error.lineno}, column "
                                   f"{error.colno}: {error.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        raise StudyConfigError(f"{source}: malformed YAML{where}"
                               + (f": {problem}" if problem else "")) from None


def find_beside(name: str, base_dir: str | Path | None,
                accept: Callable[[Path], bool]) -> Path | None:
    """The path a study document names (a space file, a folder of images), absolute, so that
    the stored study does not depend on where it is run from: beside the study file first
    (``base_dir``), then from the working folder; ``None`` if neither is ``accept``-ed."""
    try:
        candidates = [Path(name)]
        if base_dir is not None and not candidates[0].is_absolute():
            candidates.insert(0, Path(base_dir) / name)
        for candidate in candidates:
            if accept(candidate):
                return candidate.resolve()
    except (OSError, ValueError):  # a name no file system accepts (NUL, too long)
        return None
    return None


def describe_kind(value: Any) -> str:
    """What a document that should have been a mapping is instead."""
    if value is None:
        return "an empty document"
    return {list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean"}.get(type(value), type(value).__name__)


def validation_message(source: str, error: ValidationError, *, root: type[BaseModel],
                       items: Mapping[str, type[BaseModel]]) -> str:
    """The first problem of ``error`` as one line, and how many more there are.

    Args:
        source: what the document is called.
        error: pydantic's errors of validating ``root``.
        root: the model validated, to list the fields of a section that got an unknown one.
        items: fields of ``root`` holding several sections (a list or a mapping): the model
            of one item.
    """
    problems = error.errors(include_url=False)
    # A list whose items failed is also reported as too short; the items' errors say it all.
    problems = [p for p in problems if not (p["type"] == "too_short" and any(
        q["loc"][:len(p["loc"])] == p["loc"] and q is not p for q in problems))] or problems
    text = f"{source}: {_describe(problems[0], root, items)}"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return " ".join(text.split())  # one line, whatever a value held


def _describe(problem: ErrorDetails, root: type[BaseModel],
              items: Mapping[str, type[BaseModel]]) -> str:
    location = ".".join(str(part) for part in problem["loc"])
    kind, value, context = problem["type"], problem.get("input"), problem.get("ctx") or {}
    if kind == "missing":
        text = "is required"
    elif kind == "extra_forbidden":
        fields = _fields_at(problem["loc"][:-1], root, items)
        text = "is not a field" + (f"; fields: {', '.join(fields)}" if fields else "")
    elif kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        text = f"{_show(value)} is not one of {', '.join(allowed)}"
    elif kind in ("value_error", "assertion_error"):
        text = str(context.get("error", problem["msg"]))
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = f"must be a mapping, not {_show(value)}"
    elif kind == "too_short":
        text = f"needs at least {context.get('min_length', 1)} item(s)"
    elif kind in ("tuple_type", "list_type"):
        text = f"must be a list, not {_show(value)}"
    else:
        message = problem["msg"]
        text = f"{message[:1].lower()}{message[1:]} (got {_show(value)})"
    return f"{location}: {text}" if location else text


def _fields_at(loc: tuple[int | str, ...], root: type[BaseModel],
               items: Mapping[str, type[BaseModel]]) -> list[str]:
    """The field names of the section at ``loc`` (``()``: the root)."""
    model: type[BaseModel] = root
    parts = [str(part) for part in loc]
    while parts:
        name = parts.pop(0)
        if model is root and name in items:
            model = items[name]
            parts = parts[1:]  # the list index or the mapping's key
            continue
        field = model.model_fields.get(name)
        nested = None if field is None else _section_model(field.annotation, field.metadata)
        if nested is None:
            return []
        model = nested
    return list(model.model_fields)


def _section_model(annotation: Any, metadata: list[Any]) -> type[BaseModel] | None:
    """The model a field is validated as: its own type, or the ``model`` of a marker in its
    metadata (a mapping validated as a model, such as ``accuracy.distill``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for marker in metadata:
        model = getattr(marker, "model", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
    return None


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
