"""Calibration data: the user's images (or the shipped pool) and text condition, encoded and
noised as SD 1.5 trains.

Crops at the pipeline's image size (see the images module for how pictures become crops) are
encoded by the teacher VAE into scaled latents and noised at seeded timesteps with SD 1.5's
noise schedule (scaled-linear betas 0.00085-0.012 over 1,000 steps). The text condition is a
context tensor ``[n, tokens, D]`` (the user's context file, the teacher's own, or the demo's
synthetic one; see the context module): each sample is given one of its rows by a seeded draw
that uses every row when there are at least ``n`` samples. Crops are split into a distillation
part and a held-out part by source picture, so that no held-out crop comes from a picture that
a stage was distilled on.

:func:`calibration_plan` makes every choice (crops, split, context rows) without touching the
VAE, so the composition of the data can be shown cheaply; :func:`calibration_data` carries it
out. :func:`data_identity` names the inputs (the images and the context) for caches.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler

from nanosd_nas.search.distill._images import (
    CalibrationDataError,
    Crop,
    ImagePool,
    image_files,
    image_pool,
)
from nanosd_nas.spaces import BuiltModel

#: What :func:`data_identity` hashes in place of the files for the shipped pool (bumped when the
#: shipped pool or the rules that make its crops change).
SHIPPED_POOL_ID = "skimage-pool-v2"
_CHUNK = 1 << 20


def sd15_noise_schedule() -> DDPMScheduler:
    """SD 1.5's training noise schedule."""
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear")


@dataclass
class CalibrationSet:
    """Noised latents and what the teacher U-Net is asked with them.

    Attributes:
        images: the crops, ``[N, 3, S, S]`` in [-1, 1].
        sources: the source picture each crop was cut from.
        latents: the teacher VAE's scaled latent means of ``images``.
        noise: the noise added; ``noisy = add_noise(latents, noise, timesteps)``.
        timesteps: one per sample, in [0, 1000).
        noisy: the U-Net input.
        context: each sample's text condition, ``[N, L, D]``.
        context_rows: which row of the context tensor each sample was given, ``[N]``.
    """

    images: torch.Tensor
    sources: list[str]
    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    noisy: torch.Tensor
    context: torch.Tensor
    context_rows: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def unet_inputs(self, index: slice | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(sample, timestep, context)`` for the samples at ``index``."""
        return self.noisy[index], self.timesteps[index], self.context[index]


@dataclass
class CalibrationPlan:
    """Every choice of the calibration data, made before any pixel is encoded.

    Attributes:
        pool: the de-duplicated sources and what was left out.
        crops: the chosen crops, in sample order.
        heldout_sources: the names of the sources held out whole.
        context_rows: the context row of each sample, in sample order.
        contexts: how many rows the context has.
        mirrored: whether mirrored crops joined the pool (too few crops at this image size).
        seed: the seed of every choice.
    """

    pool: ImagePool
    crops: list[Crop]
    heldout_sources: set[str]
    context_rows: list[int]
    contexts: int
    mirrored: bool
    seed: int

    @property
    def sources(self) -> list[str]:
        """The source name of each sample."""
        return [self.pool.sources[crop.source].name for crop in self.crops]

    @property
    def heldout(self) -> list[bool]:
        """Whether each sample is held out."""
        return [name in self.heldout_sources for name in self.sources]

    def composition(self) -> dict[str, Any]:
        """What the data is made of, as JSON-ready values (sources, duplicates, split, rows)."""
        pool = self.pool
        chosen = Counter(crop.source for crop in self.crops)
        held = sum(self.heldout)
        colour = sum(n for index, n in chosen.items() if pool.sources[index].colour)
        return {
            "images": pool.origin, "image_size": pool.size,
            "sources": [{"name": s.name, "width": s.width, "height": s.height,
                         "colour": s.colour, "crops": s.crops, "chosen": chosen[i],
                         "heldout": s.name in self.heldout_sources}
                        for i, s in enumerate(pool.sources)],
            "pool_crops": sum(s.crops for s in pool.sources), "mirrored": self.mirrored,
            "colour_share": colour / len(self.crops),
            "duplicates": [{"name": name, "same_as": kept} for name, kept in pool.duplicates],
            "unreadable": list(pool.unreadable),
            "samples": len(self.crops), "distill": len(self.crops) - held, "heldout": held,
            "context_rows": {str(row): n for row, n in sorted(Counter(self.context_rows).items())},
            "seed": self.seed,
        }


@dataclass
class CalibrationData:
    """The distillation part and the held-out part, and how they were made."""

    distill: CalibrationSet
    heldout: CalibrationSet
    seed: int
    image_size: int
    plan: CalibrationPlan


def _split_sources(sources: list[str], holdout: float, rng: random.Random) -> set[str]:
    """Whole sources for the held-out part, in a shuffled order, until it holds ``holdout`` of
    the crops. A source that would leave the distillation part less than half its share is
    passed over; if every source is, the smallest one is held out alone."""
    counts = Counter(sources)
    names = sorted(counts)
    rng.shuffle(names)
    ceiling = len(sources) - (1 - holdout) * len(sources) / 2
    held: set[str] = set()
    total = 0
    for name in names:
        if total >= holdout * len(sources):
            break
        if total + counts[name] <= ceiling:
            held.add(name)
            total += counts[name]
    if not held and len(names) > 1:
        held.add(min(names, key=lambda name: counts[name]))
    return held


def calibration_plan(
    image_size: int, *, samples: int = 160, holdout: float = 0.33, seed: int = 0,
    images: Path | None = None, contexts: int = 1,
) -> CalibrationPlan:
    """Choose the crops, the held-out sources and each sample's context row (seeded).

    Args:
        image_size: the side of every crop (the teacher spec's ``image_size``).
        samples: how many crops in all (distillation and held-out together).
        holdout: the share of crops held out, by whole source picture.
        seed: seeds the choice of crops, the split and the context rows.
        images: a folder of PNG/JPEG pictures; ``None`` for the shipped pool.
        contexts: how many rows the context tensor has.

    Raises:
        CalibrationDataError: ``samples`` or ``holdout`` out of range, no readable image, fewer
            crops than ``samples`` (mirrored ones included), or crops from a single source.
    """
    if samples < 4:
        raise CalibrationDataError(f"samples={samples} must be at least 4")
    if not 0.0 < holdout < 1.0:
        raise CalibrationDataError(f"holdout={holdout} must lie strictly between 0 and 1")
    if contexts < 1:
        raise ValueError(f"contexts={contexts} must be at least 1")
    pool = image_pool(image_size, images)
    candidates = pool.crops()
    mirrored = len(candidates) < samples
    if mirrored:  # too few crops at this image size: add their mirror images
        candidates += [Crop(c.source, c.index, mirrored=True) for c in candidates]
    if len(candidates) < samples:
        raise CalibrationDataError(
            f"samples={samples}: {pool.origin} gives only {len(candidates)} crops (mirrored "
            f"ones included) at {image_size} px from {len(pool.sources)} pictures")
    if len(pool.sources) < 2:
        raise CalibrationDataError(
            f"images {pool.origin}: crops from one picture only; the held-out part needs "
            "pictures of its own (give at least two different pictures)")
    rng = random.Random(seed)
    chosen = rng.sample(candidates, samples)
    names = [pool.sources[crop.source].name for crop in chosen]
    held = _split_sources(names, holdout, rng)
    if not held or held == set(names):
        raise CalibrationDataError(
            f"images {pool.origin}: the {samples} chosen crops come from {len(set(names))} "
            "picture(s), too few to hold some out by whole picture; give more pictures or more "
            "samples")
    rows = [i % contexts for i in range(samples)]
    rng.shuffle(rows)
    return CalibrationPlan(pool=pool, crops=chosen, heldout_sources=held, context_rows=rows,
                           contexts=contexts, mirrored=mirrored, seed=seed)


@torch.no_grad()
def _encode(vae_model: BuiltModel, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    vae = vae_model.vae
    device = next(vae.parameters()).device
    latents = [vae.encode(images[i:i + batch].to(device)).cpu()
               for i in range(0, images.shape[0], batch)]
    return torch.cat(latents) * vae_model.spec.vae.scaling_factor


def _check_context(context: torch.Tensor, teacher_model: BuiltModel) -> None:
    dim = teacher_model.spec.unet.cross_attention_dim
    if context.ndim != 3 or context.shape[0] < 1 or context.shape[1] < 1 or (
            context.shape[2] != dim):
        raise ValueError(f"context of shape {list(context.shape)}: expected [n, tokens, {dim}]")


def calibration_data(
    teacher_model: BuiltModel, *, samples: int = 160, holdout: float = 0.33, seed: int = 0,
    images: Path | None = None, context: torch.Tensor,
) -> CalibrationData:
    """Seeded calibration data for ``teacher_model`` (its spec fixes the image size).

    Args:
        teacher_model: the teacher's modules (the VAE encodes, the spec gives the shapes).
        samples: how many crops in all (distillation and held-out together).
        holdout: the share of crops held out, by whole source picture.
        seed: seeds the choice of crops, the split, the context rows, the timesteps and the
            noise.
        images: a folder of PNG/JPEG pictures; ``None`` for the shipped pool.
        context: the text condition ``[n, tokens, D]`` (as ``load_context`` gives it); each
            sample gets one row.

    Raises:
        CalibrationDataError: see :func:`calibration_plan`.
    """
    _check_context(context, teacher_model)
    spec = teacher_model.spec
    plan = calibration_plan(spec.image_size, samples=samples, holdout=holdout, seed=seed,
                            images=images, contexts=context.shape[0])
    pixels = plan.pool.cut(plan.crops) * 2 - 1
    generator = torch.Generator().manual_seed(seed)
    latents = _encode(teacher_model, pixels)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (samples,), generator=generator)
    noisy = sd15_noise_schedule().add_noise(latents, noise, timesteps)  # type: ignore[attr-defined]
    rows = torch.tensor(plan.context_rows)
    conditions = context.detach().to("cpu", torch.float32)[rows]
    sources = plan.sources
    is_held = torch.tensor(plan.heldout)

    def part(mask: torch.Tensor) -> CalibrationSet:
        return CalibrationSet(
            images=pixels[mask], sources=[s for s, m in zip(sources, mask, strict=True) if m],
            latents=latents[mask], noise=noise[mask], timesteps=timesteps[mask].float(),
            noisy=noisy[mask], context=conditions[mask], context_rows=rows[mask],
        )

    return CalibrationData(distill=part(~is_held), heldout=part(is_held), seed=seed,
                           image_size=spec.image_size, plan=plan)


def data_identity(images: Path | None, context: torch.Tensor) -> str:
    """A short hex digest of the calibration inputs: the image files (names and bytes, in a
    stable order; :data:`SHIPPED_POOL_ID` for the shipped pool) and the context's values.

    Raises:
        CalibrationDataError: ``images`` is not a folder.
    """
    digest = hashlib.sha256()
    if images is None:
        digest.update(SHIPPED_POOL_ID.encode())
    else:
        folder = Path(images)
        for path in image_files(folder):
            digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0"
                          .encode())
            with path.open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
    values = context.detach().to("cpu", torch.float32).contiguous()
    digest.update(f"\0context{list(values.shape)}\0".encode())
    digest.update(values.numpy().tobytes())
    return digest.hexdigest()[:16]
