"""The errors of the spaces package that are the user's to fix, importable without PyTorch."""

from __future__ import annotations


class SpaceError(ValueError):
    """A request a space cannot meet: an unknown scale or export format, choices outside the
    space, more distinct members than it holds; the message shows the bad value."""


class PresetError(ValueError):
    """A preset or space file is unknown or malformed; the message names the file and field."""


class ExportError(RuntimeError):
    """An export could not be completed (e.g. ONNX Runtime disagrees with PyTorch)."""
