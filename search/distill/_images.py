"""Calibration images: the user's own folder of pictures, or the pool shipped with scikit-image.

A folder is searched recursively for ``.png``, ``.jpg`` and ``.jpeg`` files (any case; hidden
files and folders are skipped); each is a source, named by its path inside the folder. Every
source is decoded (its EXIF orientation applied), made RGB (a greyscale picture repeats its one
channel), resized with its aspect kept so that its shorter side is at least the image size and
at most :data:`MAX_SIDE` times it (a small picture is enlarged, a large photo reduced, so that
one photo gives a bounded number of crops), and cut into non-overlapping crops at the image
size, centred. Sources are de-duplicated by a hash of their decoded pixels, so the same picture
under two names counts once; a file that cannot be decoded is skipped and reported.

The shipped pool (no folder) is scikit-image's sample images and a subset of its LFW faces
(nothing is downloaded), made into crops by the same rules and de-duplicated by the same hash
(``cat`` is ``chelsea``).

Pixels are decoded twice: once to hash, measure and count the crops of every source, and again
to cut the crops chosen, one source at a time, so a large folder never sits whole in memory.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from skimage import data as skdata

#: The files of a folder that are read as images (suffixes compared in lower case).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
#: A source's shorter side is reduced to at most this many times the image size.
MAX_SIDE = 4
#: What :attr:`ImagePool.origin` says of the shipped pool.
SHIPPED_POOL = "scikit-image sample images and LFW faces (shipped with scikit-image)"
#: skimage.data images (all shipped with the package; nothing is downloaded).
IMAGE_SOURCES = (
    "astronaut", "coffee", "chelsea", "camera", "rocket", "immunohistochemistry",
    "hubble_deep_field", "cat", "colorwheel", "brick", "grass", "gravel", "coins", "clock",
    "moon", "retina",
)
#: How many of the 200 LFW faces (25x25 grey) join the pool, each enlarged to the image size.
LFW_FACES = 64
#: What decoding a damaged or foreign file may raise (Pillow's plugins differ).
_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error,
               Image.DecompressionBombError)

Loader = Callable[[], Image.Image]


class CalibrationDataError(ValueError):
    """Calibration data that cannot be made as asked: no readable image, too few samples or
    crops, a bad split."""


@dataclass(frozen=True)
class ImageSource:
    """One de-duplicated source picture.

    Attributes:
        name: its path inside the folder (``/``-separated), or the scikit-image name.
        width, height: its size as decoded, before any resizing.
        colour: whether its channels differ anywhere (``False``: greyscale).
        crops: how many crops it gives at the pool's image size.
    """

    name: str
    width: int
    height: int
    colour: bool
    crops: int
    load: Loader = field(repr=False, compare=False)


@dataclass(frozen=True)
class Crop:
    """One crop of the pool: the ``index``-th of source ``source``, mirrored or not."""

    source: int
    index: int
    mirrored: bool = False


@dataclass
class ImagePool:
    """The sources of calibration images at one image size, and what was left out.

    Attributes:
        origin: the folder, or :data:`SHIPPED_POOL`.
        size: the image size, the side of every crop.
        sources: the de-duplicated sources, in a stable order.
        duplicates: ``(name, same_as)`` for each source dropped as a copy of an earlier one.
        unreadable: the files that could not be decoded, skipped.
    """

    origin: str
    size: int
    sources: list[ImageSource]
    duplicates: list[tuple[str, str]]
    unreadable: list[str]

    def crops(self) -> list[Crop]:
        """Every crop of every source, source by source."""
        return [Crop(i, k) for i, source in enumerate(self.sources) for k in range(source.crops)]

    def cut(self, crops: Sequence[Crop]) -> torch.Tensor:
        """The pixels of ``crops``, ``[N, 3, S, S]`` in [0, 1], each source decoded once."""
        out = torch.empty((len(crops), 3, self.size, self.size))
        wanted: dict[int, list[int]] = {}
        for position, crop in enumerate(crops):
            wanted.setdefault(crop.source, []).append(position)
        for index, positions in wanted.items():
            source = self.sources[index]
            try:
                image = source.load()
            except _UNREADABLE as error:
                raise CalibrationDataError(f"{self.origin}: {source.name} can no longer be read "
                                           f"({' '.join(str(error).split())})") from None
            tiles = _tiles(_as_tensor(_fitted(image, self.size)), self.size)
            for position in positions:
                tile = tiles[crops[position].index]
                out[position] = tile.flip(-1) if crops[position].mirrored else tile
        return out


def image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (recursively, hidden ones skipped), by relative path.

    Raises:
        CalibrationDataError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        kind = "not a folder" if folder.exists() else "no such folder"
        raise CalibrationDataError(f"images {folder}: {kind} (give a folder of PNG or JPEG "
                                   "files)")
    files = [path for path in folder.rglob("*")
             if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
             and not any(part.startswith(".") for part in path.relative_to(folder).parts)]
    return sorted(files, key=lambda path: path.relative_to(folder).as_posix())


def image_pool(size: int, images: Path | None = None) -> ImagePool:
    """The de-duplicated sources of ``images`` (or the shipped pool) at image size ``size``.

    Raises:
        CalibrationDataError: ``images`` is not a folder, or holds no readable image.
    """
    if images is None:
        origin, candidates = SHIPPED_POOL, _shipped()
    else:
        folder = Path(images)
        origin = str(folder)
        candidates = [(path.relative_to(folder).as_posix(), partial(_decode, path))
                      for path in image_files(folder)]
        if not candidates:
            raise CalibrationDataError(f"images {folder}: no PNG or JPEG file (.png, .jpg, "
                                       ".jpeg; searched recursively)")
    pool = ImagePool(origin=origin, size=size, sources=[], duplicates=[], unreadable=[])
    seen: dict[str, str] = {}
    for name, load in candidates:
        try:
            image = load()
        except _UNREADABLE:
            pool.unreadable.append(name)
            continue
        digest = hashlib.sha256(f"{image.width}x{image.height}:".encode() + image.tobytes())
        if digest.hexdigest() in seen:
            pool.duplicates.append((name, seen[digest.hexdigest()]))
            continue
        seen[digest.hexdigest()] = name
        pool.sources.append(_source(name, image, size, load))
    if not pool.sources:
        skipped = ", ".join(pool.unreadable[:5]) + (", ..." if len(pool.unreadable) > 5 else "")
        raise CalibrationDataError(f"images {origin}: no readable image ({len(pool.unreadable)} "
                                   f"unreadable: {skipped})")
    return pool


def _source(name: str, image: Image.Image, size: int, load: Loader) -> ImageSource:
    width, height = _fitted_size(image.width, image.height, size)
    pixels = np.asarray(image)
    colour = bool((pixels[..., 0] != pixels[..., 1]).any()
                  or (pixels[..., 1] != pixels[..., 2]).any())
    return ImageSource(name=name, width=image.width, height=image.height, colour=colour,
                       crops=(width // size) * (height // size), load=load)


# -- decoding --------------------------------------------------------------------------------
def _decode(path: Path) -> Image.Image:
    """``path`` decoded, its EXIF orientation applied, as RGB."""
    with Image.open(path) as image:
        image.load()
        upright = ImageOps.exif_transpose(image)
        if upright.mode.startswith("I"):  # 16- or 32-bit integer grey: scale to 8 bits first
            return _from_array(_eight_bit(np.asarray(upright)))
        return upright.convert("RGB")


def _eight_bit(array: np.ndarray) -> np.ndarray:
    """An integer grey image scaled to 0..255 by its type's range (16-bit PNGs)."""
    top = 65535.0 if array.max(initial=0) > 255 or array.dtype.itemsize == 2 else 255.0
    return np.clip(array.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:  # floats in [0, 1] (the LFW faces)
        array = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


@cache
def _faces() -> np.ndarray:
    faces: np.ndarray = skdata.lfw_subset()[:LFW_FACES]
    return faces


def _sample_image(name: str) -> Image.Image:
    return _from_array(getattr(skdata, name)())


def _face(index: int) -> Image.Image:
    return _from_array(_faces()[index])


def _shipped() -> list[tuple[str, Loader]]:
    pool: list[tuple[str, Loader]] = [(name, partial(_sample_image, name))
                                      for name in IMAGE_SOURCES]
    return pool + [(f"lfw-{i}", partial(_face, i)) for i in range(LFW_FACES)]


# -- resizing and cutting --------------------------------------------------------------------
def _fitted_size(width: int, height: int, size: int) -> tuple[int, int]:
    """``(width, height)`` scaled, aspect kept, to a shorter side in [size, MAX_SIDE * size]."""
    shorter = min(width, height)
    target = min(max(shorter, size), MAX_SIDE * size)
    if target == shorter:
        return width, height
    scale = target / shorter
    return ((target, max(target, round(height * scale))) if width == shorter
            else (max(target, round(width * scale)), target))


def _fitted(image: Image.Image, size: int) -> Image.Image:
    width, height = _fitted_size(image.width, image.height, size)
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.Resampling.BICUBIC)


def _as_tensor(image: Image.Image) -> torch.Tensor:
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def _tiles(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The non-overlapping ``size`` crops of ``image``, the grid centred, row by row."""
    _, height, width = image.shape
    top, left = (height % size) // 2, (width % size) // 2
    return [image[:, y:y + size, x:x + size].clamp(0, 1)
            for y in range(top, height - size + 1, size)
            for x in range(left, width - size + 1, size)]
