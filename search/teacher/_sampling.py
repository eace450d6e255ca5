"""Sampling a model as SD 1.5 is sampled: a diffusers scheduler configured as SD 1.5's, with
classifier-free guidance against the null prompt, decoded by the model's own VAE.

Samples are paired: sample ``i`` starts from noise that depends only on the seed, its context
row and how many earlier samples ask for that row, so a teacher and a student asked for the same
rows with the same seed start every sample from the same noise, whatever the batch size, the
device or the other rows asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler

from nanosd_nas.spaces import BuiltModel

#: SD 1.5's scheduler configuration (its ``scheduler/scheduler_config.json``).
SD15_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "steps_offset": 1, "prediction_type": "epsilon",
}
#: The samplers :func:`sample` knows: deterministic DDIM (eta 0) and DPM-Solver++ (2nd order).
SAMPLERS = ("ddim", "dpmsolver++")
#: The default classifier-free guidance scale (1.0 is the conditional prediction alone).
DEFAULT_GUIDANCE = 3.0
#: The two step settings of ground truth: a usual sampling budget and an edge one.
STEP_SETTINGS = (25, 4)

#: ``on_progress(done, total)``: U-Net evaluations of samples done so far.
StepProgress = Callable[[int, int], None]


class SamplingError(ValueError):
    """A sampling request that cannot be run: rows outside the context, a context of the wrong
    width, an unknown sampler, fewer than one step, a negative seed."""


def scheduler(name: str = "ddim") -> DDIMScheduler | DPMSolverMultistepScheduler:
    """A fresh scheduler ``name`` (one of :data:`SAMPLERS`) configured as SD 1.5's."""
    if name == "ddim":
        return DDIMScheduler(**SD15_SCHEDULER, set_alpha_to_one=False, clip_sample=False)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler(**SD15_SCHEDULER, algorithm_type="dpmsolver++",
                                           solver_order=2)
    raise SamplingError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def initial_noise(model: BuiltModel, rows: torch.Tensor, seed: int) -> torch.Tensor:
    """The initial latent noise of each sample, float32 on the CPU (see the module's docstring).
    """
    if seed < 0:
        raise SamplingError(f"seed {seed} is negative")
    spec = model.spec
    shape = (spec.latent_channels, spec.latent_size, spec.latent_size)
    seen: dict[int, int] = {}
    noise = []
    for row in rows.tolist():
        occurrence = seen.get(row, 0)
        seen[row] = occurrence + 1
        state = np.random.SeedSequence([seed, row, occurrence]).generate_state(1, np.uint64)
        generator = torch.Generator().manual_seed(int(state[0]) >> 1)
        noise.append(torch.randn(shape, generator=generator))
    return torch.stack(noise) if noise else torch.empty((0, *shape))


def _check(model: BuiltModel, context: torch.Tensor, rows: torch.Tensor, steps: int) -> None:
    dim = model.spec.unet.cross_attention_dim
    if context.ndim != 3 or context.shape[2] != dim or context.shape[0] < 2:
        raise SamplingError(f"context of shape {list(context.shape)}: expected [n, tokens, {dim}]"
                            " with the null prompt in row 0 and at least one more row")
    if rows.ndim != 1 or (rows.numel() and not (
            int(rows.min()) >= 1 and int(rows.max()) < context.shape[0])):
        raise SamplingError(f"rows must be a 1-D tensor of context rows in 1.."
                            f"{context.shape[0] - 1} (row 0 is the null prompt); got "
                            f"{rows.tolist()[:8]}")
    if steps < 1:
        raise SamplingError(f"steps {steps}: at least one sampling step is needed")


@torch.no_grad()
def sample(
    model: BuiltModel, context: torch.Tensor, rows: torch.Tensor, *, steps: int = 25,
    seed: int = 0, guidance: float = DEFAULT_GUIDANCE, sampler: str = "ddim", batch: int = 8,
    on_progress: StepProgress | None = None,
) -> torch.Tensor:
    """Generate one image per entry of ``rows`` with ``model``.

    Args:
        model: the U-Net and VAE; sampling runs on the device of its weights.
        context: text conditions ``[n, tokens, D]``, row 0 the null prompt.
        rows: the context row (1..n-1) each sample is conditioned on, ``[N]``.
        steps: sampling steps (25 is a usual budget, 4 an edge one).
        seed: seeds the initial noise (see :func:`initial_noise`).
        guidance: the classifier-free guidance scale against row 0; 1.0 runs the conditional
            prediction alone, 0.0 the unconditional one.
        sampler: ``ddim`` (eta 0) or ``dpmsolver++``, configured as SD 1.5's scheduler.
        batch: samples per U-Net call (guidance doubles the batch the U-Net sees).
        on_progress: called after each step of each batch with the sample steps done and
            those in all.

    Returns:
        float32 images ``[N, 3, S, S]`` on the CPU, the latents divided by the VAE's scaling
        factor, decoded and clamped to [-1, 1].

    Raises:
        SamplingError: see the class.
    """
    rows = torch.as_tensor(rows, dtype=torch.long)
    _check(model, context, rows, steps)
    scheduler(sampler)  # an unknown name fails before any work
    noise = initial_noise(model, rows, seed)
    total, batch = rows.shape[0] * steps, max(1, batch)
    size = model.spec.image_size
    images = [torch.empty((0, 3, size, size))]
    for start in range(0, rows.shape[0], batch):
        chunk = slice(start, start + batch)

        def on_step(step: int, done: int = start * steps, n: int = noise[chunk].shape[0]) -> None:
            if on_progress is not None:
                on_progress(done + n * step, total)

        latents = _denoise(model, context, rows[chunk], noise[chunk], steps=steps,
                           guidance=guidance, sampler=sampler, on_step=on_step)
        images.append(_decode(model, latents))
    return torch.cat(images)


def _denoise(
    model: BuiltModel, context: torch.Tensor, rows: torch.Tensor, noise: torch.Tensor, *,
    steps: int, guidance: float, sampler: str, on_step: Callable[[int], None],
) -> torch.Tensor:
    device = next(model.unet.parameters()).device
    schedule = scheduler(sampler)
    schedule.set_timesteps(steps, device=device)
    context = context.to(device=device, dtype=torch.float32)
    conditional = context[rows.to(device)]
    guided = guidance != 1.0
    if guided:
        unconditional = context[:1].expand_as(conditional)
        conditional = torch.cat([unconditional, conditional])
    latents = noise.to(device) * schedule.init_noise_sigma
    for done, t in enumerate(schedule.timesteps, start=1):
        model_input = schedule.scale_model_input(torch.cat([latents] * (2 if guided else 1)), t)
        eps = model.unet(model_input, t, conditional)
        if guided:
            eps_null, eps_cond = eps.chunk(2)
            eps = eps_null + guidance * (eps_cond - eps_null)
        latents = schedule.step(eps, t, latents, return_dict=False)[0]
        on_step(done)
    return latents


def _decode(model: BuiltModel, latents: torch.Tensor) -> torch.Tensor:
    image = model.vae.decode(latents / model.spec.vae.scaling_factor)
    return image.clamp(-1, 1).float().cpu()
