"""Calibration data: real images shipped with scikit-image, encoded and noised as SD 1.5 trains.

Images are cut into patches at the pipeline's image size (small images, such as the LFW faces,
are resized up to it), encoded by the teacher VAE into scaled latents, and noised at seeded
timesteps with SD 1.5's noise schedule (scaled-linear betas 0.00085-0.012 over 1,000 steps). The
text condition is one fixed seeded tensor: without a text encoder there is no null-prompt
embedding to compute, and a fixed condition is what the teacher and every student share.
Patches are split into a distillation part and a held-out part by source image, so that no
held-out patch comes from an image that a stage was distilled on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDPMScheduler
from skimage import data as skdata
from torch.nn import functional

from nanosd_nas.spaces import BuiltModel


class CalibrationDataError(ValueError):
    """Calibration data that cannot be made as asked: too few samples or patches, a bad split."""

#: skimage.data images (all shipped with the package; nothing is downloaded).
IMAGE_SOURCES = (
    "astronaut", "coffee", "chelsea", "camera", "rocket", "immunohistochemistry",
    "hubble_deep_field", "cat", "colorwheel", "brick", "grass", "gravel", "coins", "clock",
    "moon", "retina",
)
#: How many of the 200 LFW faces (25x25 grey) join the pool, each resized to the image size.
LFW_FACES = 64


def sd15_noise_schedule() -> DDPMScheduler:
    """SD 1.5's training noise schedule."""
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear")


@dataclass
class CalibrationSet:
    """Noised latents and what the teacher U-Net is asked with them.

    Attributes:
        images: the patches, ``[N, 3, S, S]`` in [-1, 1].
        sources: the skimage image each patch was cut from.
        latents: the teacher VAE's scaled latent means of ``images``.
        noise: the noise added; ``noisy = add_noise(latents, noise, timesteps)``.
        timesteps: one per sample, in [0, 1000).
        noisy: the U-Net input.
        context: the fixed text condition, ``[1, L, D]`` (expand it to the batch).
    """

    images: torch.Tensor
    sources: list[str]
    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    noisy: torch.Tensor
    context: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def unet_inputs(self, index: slice | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(sample, timestep, context)`` for the samples at ``index``."""
        sample = self.noisy[index]
        return sample, self.timesteps[index], self.context.expand(sample.shape[0], -1, -1)


@dataclass
class CalibrationData:
    """The distillation part and the held-out part, and how they were made."""

    distill: CalibrationSet
    heldout: CalibrationSet
    seed: int
    image_size: int


def _as_rgb_float(image: np.ndarray) -> torch.Tensor:
    array = image.astype(np.float32)
    if image.dtype == np.uint8:
        array /= 255.0
    tensor = torch.from_numpy(array)
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(-1).expand(-1, -1, 3)
    return tensor.permute(2, 0, 1).contiguous()


def _patches(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Non-overlapping ``size`` patches, or the whole image resized when it is smaller."""
    _, height, width = image.shape
    if min(height, width) < size:
        resized = functional.interpolate(image[None], size=(size, size), mode="bilinear",
                                         align_corners=False)
        return [resized[0]]
    return [image[:, y:y + size, x:x + size]
            for y in range(0, height - size + 1, size)
            for x in range(0, width - size + 1, size)]


def image_pool(size: int) -> list[tuple[str, torch.Tensor]]:
    """Every patch of the shipped images at ``size``, as ``(source, [3, S, S] in [0, 1])``."""
    loaders: list[tuple[str, Callable[[], np.ndarray]]] = [
        (name, getattr(skdata, name)) for name in IMAGE_SOURCES
    ]
    pool = [(name, patch) for name, load in loaders for patch in _patches(
        _as_rgb_float(load()), size)]
    faces = skdata.lfw_subset()[:LFW_FACES]
    pool += [(f"lfw-{i}", _patches(_as_rgb_float(face), size)[0]) for i, face in enumerate(faces)]
    return pool


def _split_sources(sources: list[str], holdout: float, rng: random.Random) -> set[str]:
    """Whole source images for the held-out part, until it holds ``holdout`` of the patches."""
    counts: dict[str, int] = {}
    for source in sources:
        counts[source] = counts.get(source, 0) + 1
    names = sorted(counts)
    rng.shuffle(names)
    held: set[str] = set()
    for name in names:
        if sum(counts[h] for h in held) >= holdout * len(sources):
            break
        held.add(name)
    return held


@torch.no_grad()
def _encode(vae_model: BuiltModel, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    vae = vae_model.vae
    latents = [vae.encode(images[i:i + batch]) for i in range(0, images.shape[0], batch)]
    return torch.cat(latents) * vae_model.spec.vae.scaling_factor


def calibration_data(
    teacher: BuiltModel, *, samples: int = 160, holdout: float = 0.33, seed: int = 0
) -> CalibrationData:
    """Seeded calibration data for ``teacher`` (its spec fixes image size and condition shape).

    Args:
        teacher: the teacher's modules (the VAE encodes, the spec gives the shapes).
        samples: how many patches in all (distillation and held-out together).
        holdout: the share of patches held out, by whole source image.
        seed: seeds the choice of patches, the split, the timesteps, the noise and the condition.

    Raises:
        CalibrationDataError: ``samples`` or ``holdout`` out of range, or fewer patches than
            ``samples``.
    """
    if samples < 4:
        raise CalibrationDataError(f"samples={samples} must be at least 4")
    if not 0.0 < holdout < 1.0:
        raise CalibrationDataError(f"holdout={holdout} must lie strictly between 0 and 1")
    spec = teacher.spec
    pool = image_pool(spec.image_size)
    if len(pool) < samples:  # at 512 px the shipped images give fewer patches: add mirror images
        pool += [(source, patch.flip(-1)) for source, patch in pool]
    if len(pool) < samples:
        raise CalibrationDataError(f"samples={samples}: only {len(pool)} patches (mirrored ones "
                                   f"included) at {spec.image_size} px")
    rng = random.Random(seed)
    chosen = rng.sample(pool, samples)
    sources = [source for source, _ in chosen]
    images = torch.stack([patch for _, patch in chosen]) * 2 - 1
    held = _split_sources(sources, holdout, rng)
    generator = torch.Generator().manual_seed(seed)
    latents = _encode(teacher, images)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (samples,), generator=generator)
    noisy = sd15_noise_schedule().add_noise(latents, noise, timesteps)  # type: ignore[attr-defined]
    context = torch.randn((1, spec.unet.context_length, spec.unet.cross_attention_dim),
                          generator=generator)
    is_held = torch.tensor([source in held for source in sources])

    def part(mask: torch.Tensor) -> CalibrationSet:
        return CalibrationSet(
            images=images[mask], sources=[s for s, m in zip(sources, mask, strict=True) if m],
            latents=latents[mask], noise=noise[mask], timesteps=timesteps[mask].float(),
            noisy=noisy[mask], context=context,
        )

    return CalibrationData(distill=part(~is_held), heldout=part(is_held), seed=seed,
                           image_size=spec.image_size)
