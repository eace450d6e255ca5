"""Errors of the export path, importable without PyTorch."""

from __future__ import annotations


class ExportError(RuntimeError):
    """An export could not be completed (e.g. ONNX Runtime disagrees with PyTorch)."""
