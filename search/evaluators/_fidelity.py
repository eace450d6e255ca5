"""Fidelity figures: how closely a student reproduces its teacher, in decibels.

``fidelity`` is a PSNR-like signal-to-error ratio of the noise prediction on held-out data,
``10 log10(mean(teacher^2) / mean((student - teacher)^2))``: 0 dB is an error as large as the
signal, every 10 dB is ten times less error. A student identical to its teacher has no error;
its figure is capped at :data:`IDENTICAL_DB`. VAE reconstructions are compared as images in
[0, 1]: ``PSNR = 10 log10(1 / MSE)`` against the teacher VAE's reconstruction.
"""

from __future__ import annotations

import math

import torch

from nanosd_nas.search.distill import CalibrationSet, Trace, trace_batched
from nanosd_nas.search.distill._distill import fit_channels
from nanosd_nas.spaces import BuiltModel

#: The figure reported for an error that vanishes (identical up to float rounding).
IDENTICAL_DB = 120.0


def ratio_db(signal: float, error: float) -> float:
    """``10 log10(signal / error)``, capped at :data:`IDENTICAL_DB`."""
    if error <= signal * 10 ** (-IDENTICAL_DB / 10):
        return IDENTICAL_DB
    return 10 * math.log10(signal / error)


def noise_fidelity_db(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """The signal-to-error ratio of a noise prediction against the teacher's, in dB."""
    error = float(torch.mean((prediction - target) ** 2))
    return ratio_db(float(torch.mean(target**2)), error)


def stage_errors(student: Trace, teacher: Trace) -> dict[str, float]:
    """Each student stage's relative feature error (MSE over the target's mean square) against
    the teacher's same-named stage, with both run end to end on the same inputs."""
    errors = {}
    for name, features in student.stages.items():
        target = teacher.stages[name]
        pairs = zip(features.outputs, target.outputs, strict=False)
        terms = [float(torch.mean((o - fit_channels(t, o.shape[1])) ** 2)
                       / torch.mean(fit_channels(t, o.shape[1]) ** 2).clamp_min(1e-12))
                 for o, t in pairs]
        errors[name] = sum(terms) / len(terms)
    return errors


def unet_fidelity(
    student: BuiltModel, heldout: CalibrationSet, teacher_trace: Trace
) -> tuple[float, dict[str, float]]:
    """The student U-Net's noise fidelity (dB) and per-stage errors on held-out data."""
    inputs = heldout.unet_inputs(slice(None))
    with torch.no_grad():
        student_trace = trace_batched(student.unet, student.spec, inputs)  # type: ignore[arg-type]
    return (noise_fidelity_db(student_trace.output, teacher_trace.output),
            stage_errors(student_trace, teacher_trace))


@torch.no_grad()
def reconstructions(model: BuiltModel, images: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """The VAE's reconstructions of ``images`` (in [-1, 1]), clamped to that range."""
    parts = [model.vae(images[i:i + batch]) for i in range(0, images.shape[0], batch)]
    return torch.cat(parts).clamp(-1, 1)


def vae_psnr_db(student: BuiltModel, images: torch.Tensor, teacher_images: torch.Tensor) -> float:
    """PSNR of the student VAE's reconstructions against the teacher VAE's, in dB."""
    error = float(torch.mean(((reconstructions(student, images) - teacher_images) / 2) ** 2))
    return ratio_db(1.0, error)
