"""A label-free PNG of paired samples: one row per class, the teacher's samples on the left, a
white gap, the student's samples of the same seeds on the right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: The width in pixels of the white gap between the teacher's and the student's columns.
GRID_GAP = 4


class GridError(ValueError):
    """Samples that do not make a grid: unpaired, or not a whole number of rows."""


def _pixels(images: torch.Tensor) -> np.ndarray:
    scaled = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def sample_grid(teacher: torch.Tensor, student: torch.Tensor, per_class: int) -> Image.Image:
    """The grid of ``teacher`` and ``student`` samples ``[N, 3, S, S]`` in [-1, 1], ordered
    class by class with ``per_class`` samples each: an RGB image ``2 · per_class · S + GRID_GAP``
    pixels wide and ``N / per_class · S`` high."""
    if teacher.shape != student.shape or teacher.ndim != 4 or per_class < 1 or (
            teacher.shape[0] % per_class):
        raise GridError(f"samples {list(teacher.shape)} and {list(student.shape)} with "
                        f"{per_class} per class do not make a grid")
    rows, size = teacher.shape[0] // per_class, teacher.shape[2]
    half = per_class * size
    canvas = np.full((rows * size, 2 * half + GRID_GAP, 3), 255, dtype=np.uint8)
    for side, images in ((0, _pixels(teacher)), (half + GRID_GAP, _pixels(student))):
        for index, picture in enumerate(images):
            row, column = divmod(index, per_class)
            left = side + column * size
            canvas[row * size:(row + 1) * size, left:left + size] = picture
    return Image.fromarray(canvas)


def save_grid(teacher: torch.Tensor, student: torch.Tensor, per_class: int, path: Path) -> None:
    """Write :func:`sample_grid` of the samples as a PNG at ``path``."""
    sample_grid(teacher, student, per_class).save(path, format="PNG")
