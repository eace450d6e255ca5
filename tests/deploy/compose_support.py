"""docker-compose.yml as Compose reads it: its variables interpolated."""

from __future__ import annotations

import re
from pathlib import Path

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
#: ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``: the forms the file uses.
VARIABLE = re.compile(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")


def interpolate(text: str, variables: dict[str, str]) -> str:
    """``text`` with its variables replaced as Compose does from ``variables``.

    Raises:
        AssertionError: a ``${VAR:?error}`` is unset or empty (Compose refuses to start).
    """
    def value(match: re.Match[str]) -> str:
        name, kind, word = match.group(1), match.group(2), match.group(3)
        given = variables.get(name, "")
        if kind == ":?" and not given:
            raise AssertionError(f"compose would refuse to start: {word}")
        return given or (word if kind == ":-" else "")

    return VARIABLE.sub(value, text)


def required_variables(text: str) -> set[str]:
    """The variables that ``text`` needs set (``${VAR:?error}``)."""
    return {m.group(1) for m in VARIABLE.finditer(text) if m.group(2) == ":?"}
