"""The trained teacher's data: real pictures shipped with scikit-image and a procedural,
class-labelled set, drawn afresh for every batch from a seed.

Ten classes. Eight are procedural, each a family with known factors drawn at random: a
``circle``, ``square``, ``triangle``, ``ring`` or ``cross`` (colour, background colour and
gradient, centre, size and rotation), ``stripes`` and ``checker`` (two colours, period, angle)
and ``dots`` (a grid of discs: colours, spacing, radius, offset); all are drawn at twice the size
and averaged down (anti-aliased), with a little pixel noise. Two are real: ``photo``, random
crops of scikit-image's sample pictures (crop size a quarter of the shorter side up to all of it,
resized, mirrored at random, brightness and contrast jittered by up to 10%), and ``face``, LFW
faces (shipped with scikit-image, 25x25 grey) enlarged with the same jitter.

A held-out part never meets training: the photos :data:`HELDOUT_PHOTOS`, the last
:data:`HELDOUT_FACES` faces, and procedural draws from another seed stream. Every batch is a
function of ``(seed, stream, index)`` alone, so a resumed training sees the batches an
uninterrupted one would.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from skimage import data as skdata
from torch.nn import functional

#: The classes, in the order of the teacher's context rows 1.. (row 0 is the null condition).
CLASSES = ("circle", "square", "triangle", "ring", "cross", "stripes", "checker", "dots",
           "photo", "face")
PROCEDURAL = CLASSES[:8]
#: The scikit-image pictures of the ``photo`` class.
PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "rocket", "immunohistochemistry",
          "hubble_deep_field", "colorwheel", "brick", "grass", "gravel", "coins", "clock",
          "moon", "retina")
#: Photos kept out of training (the held-out part of ``photo``).
HELDOUT_PHOTOS = ("coffee", "gravel", "clock")
#: How many of the 200 LFW faces (the last ones) are held out.
HELDOUT_FACES = 40
_TRAIN, _HELDOUT = 0, 1
_JITTER = 0.1


def _generator(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + stream) * 1_000_033 + index)
                                         % (2**63 - 1))


def _uniform(g: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _colours(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A foreground and a background colour per image, at least 0.35 apart in mean level."""
    fg = torch.rand(n, 3, generator=g)
    bg = torch.rand(n, 3, generator=g)
    flip = (fg.mean(1) - bg.mean(1)).abs() < 0.35
    bg[flip] = 1 - fg[flip]
    return fg, bg


def _shape_mask(kind: str, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Where the shape ``kind`` covers the rotated, centred coordinates ``u, v``."""
    d = torch.sqrt(u**2 + v**2)
    if kind == "circle":
        return d < r
    if kind == "square":
        return (u.abs() < 0.8 * r) & (v.abs() < 0.8 * r)
    if kind == "ring":
        return (d < r) & (d > 0.6 * r)
    if kind == "cross":
        arm = 0.3 * r
        return ((u.abs() < arm) & (v.abs() < r)) | ((v.abs() < arm) & (u.abs() < r))
    # triangle: three half-planes at 120 degrees, inradius r/2
    inside = torch.ones_like(u, dtype=torch.bool)
    for k in range(3):
        angle = math.pi / 2 + 2 * math.pi * k / 3
        inside &= u * math.cos(angle) + v * math.sin(angle) < 0.5 * r
    return inside


def _pattern_mask(kind: str, u: torch.Tensor, v: torch.Tensor,
                  period: torch.Tensor) -> torch.Tensor:
    if kind == "stripes":
        return torch.sin(2 * math.pi * u / period) > 0
    if kind == "checker":
        return (torch.floor(u / period) + torch.floor(v / period)) % 2 == 0
    # dots: discs of radius period/4 on a grid of spacing period
    cu = torch.remainder(u, period) - period / 2
    cv = torch.remainder(v, period) - period / 2
    return cu**2 + cv**2 < (0.28 * period) ** 2


def procedural(kind: str, n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """``n`` images of the procedural class ``kind``, ``[n, 3, size, size]`` in [0, 1]."""
    big = 2 * size
    axis = (torch.arange(big) + 0.5) / big
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    x, y = x.expand(n, big, big), y.expand(n, big, big)
    angle = _uniform(g, n, 0, 2 * math.pi)[:, None, None]
    fg, bg = _colours(g, n)
    if kind in ("stripes", "checker", "dots"):
        cx = cy = torch.rand(n, generator=g)[:, None, None]
        period = _uniform(g, n, 0.08, 0.25)[:, None, None]
        du, dv = x - cx, y - cy
        u = du * torch.cos(angle) + dv * torch.sin(angle)
        v = -du * torch.sin(angle) + dv * torch.cos(angle)
        mask = _pattern_mask(kind, u, v, period)
    else:
        cx = _uniform(g, n, 0.3, 0.7)[:, None, None]
        cy = _uniform(g, n, 0.3, 0.7)[:, None, None]
        radius = _uniform(g, n, 0.14, 0.3)[:, None, None]
        du, dv = x - cx, y - cy
        u = du * torch.cos(angle) + dv * torch.sin(angle)
        v = -du * torch.sin(angle) + dv * torch.cos(angle)
        mask = _shape_mask(kind, u, v, radius)
    slope = _uniform(g, n, -0.25, 0.25)[:, None, None]
    shade = (slope * (x - 0.5) + slope.flip(0) * (y - 0.5))[:, None]
    background = (bg[:, :, None, None] + shade).clamp(0, 1)
    image = torch.where(mask[:, None], fg[:, :, None, None].expand_as(background), background)
    image = functional.avg_pool2d(image, 2)
    return (image + 0.02 * torch.randn(image.shape, generator=g)).clamp(0, 1)


@cache
def _photo(name: str) -> torch.Tensor:
    array = getattr(skdata, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1).float() / 255


@cache
def _faces() -> torch.Tensor:
    faces = torch.from_numpy(skdata.lfw_subset()).float()
    return faces[:, None].expand(-1, 3, -1, -1).contiguous()


def _jitter(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n = images.shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    gain = _uniform(g, n, 1 - _JITTER, 1 + _JITTER)[:, None, None, None]
    offset = _uniform(g, n, -_JITTER, _JITTER)[:, None, None, None]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * gain + mean + offset).clamp(0, 1)


def photos(n: int, size: int, g: torch.Generator, *, heldout: bool) -> torch.Tensor:
    """``n`` random crops of the training (or held-out) photos, ``[n, 3, size, size]``."""
    names = [p for p in PHOTOS if (p in HELDOUT_PHOTOS) == heldout]
    out = []
    for pick in torch.randint(0, len(names), (n,), generator=g).tolist():
        picture = _photo(names[pick])
        height, width = picture.shape[1:]
        short = min(height, width)
        side = int(_uniform(g, 1, max(short / 4, min(size, short)), short).item())
        top = int(torch.randint(0, height - side + 1, (1,), generator=g))
        left = int(torch.randint(0, width - side + 1, (1,), generator=g))
        crop = picture[None, :, top:top + side, left:left + side]
        out.append(functional.interpolate(crop, size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False))
    return _jitter(torch.cat(out).clamp(0, 1), g)


def faces(n: int, size: int, g: torch.Generator, *, heldout: bool) -> torch.Tensor:
    """``n`` LFW faces of the training (or held-out) part, enlarged to ``size``."""
    pool = _faces()
    split = len(pool) - HELDOUT_FACES
    low, high = (split, len(pool)) if heldout else (0, split)
    picked = pool[torch.randint(low, high, (n,), generator=g)]
    images = functional.interpolate(picked, size=(size, size), mode="bicubic",
                                    align_corners=False)
    return _jitter(images.clamp(0, 1), g)


def images_of(labels: torch.Tensor, size: int, g: torch.Generator, *,
              heldout: bool = False) -> torch.Tensor:
    """Images ``[N, 3, size, size]`` in [-1, 1] of the classes ``labels`` (indices of
    :data:`CLASSES`)."""
    out = torch.empty(len(labels), 3, size, size)
    for index, kind in enumerate(CLASSES):
        where = (labels == index).nonzero().flatten()
        if len(where) == 0:
            continue
        if kind == "photo":
            drawn = photos(len(where), size, g, heldout=heldout)
        elif kind == "face":
            drawn = faces(len(where), size, g, heldout=heldout)
        else:
            drawn = procedural(kind, len(where), size, g)
        out[where] = drawn
    return out * 2 - 1


def training_batch(seed: int, stream: int, index: int, batch: int,
                   size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``index`` of training stream ``stream``: images in [-1, 1] and their labels, the
    classes drawn uniformly; the same arguments give the same batch."""
    g = _generator(seed, 2 * stream + _TRAIN, index)
    labels = torch.randint(0, len(CLASSES), (batch,), generator=g)
    return images_of(labels, size, g), labels


def heldout_set(per_class: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` held-out images of every class (never trained on) and their labels."""
    g = _generator(seed, _HELDOUT, 0)
    labels = torch.arange(len(CLASSES)).repeat_interleave(per_class)
    return images_of(labels, size, g, heldout=True), labels
