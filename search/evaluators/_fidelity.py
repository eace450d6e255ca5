"""Fidelity figures: how closely a student reproduces its teacher, in decibels.

Every figure is a signal-to-error ratio ``10 log10(signal / error)`` over held-out samples
(``error`` pooled over the samples): 0 dB is an error as large as the signal, every 10 dB is ten
times less error, and a student identical to its teacher is capped at :data:`IDENTICAL_DB`.

- ``fidelity`` (the headline) compares the two **pipelines** on one reference: each held-out
  image is encoded by the pipeline's own VAE, noised (same noise, same timestep), denoised in one
  step by the pipeline's own U-Net (its ``x0`` estimate), and decoded by its own VAE; the
  student's image is compared with the teacher's as a PSNR in [0, 1]. One step's estimate is
  what a 1-step pipeline ships, and every multi-step sampler is built of them.
- ``unet_fidelity_db``: the U-Net alone, its noise prediction against the teacher's on the
  teacher's own latents (signal: the teacher's prediction).
- ``vae_psnr_db``: the VAE alone, its reconstruction against the teacher VAE's, as a PSNR (a VAE
  identical to the teacher's scores the cap).

Each comes with a percentile bootstrap 95% interval over held-out samples (SciPy), and the
U-Net and pipeline figures with a breakdown by timestep bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import bootstrap

from nanosd_nas.search.distill import CalibrationSet, Trace, sd15_noise_schedule, trace_batched
from nanosd_nas.search.distill._distill import fit_channels
from nanosd_nas.spaces import BuiltModel

#: The figure reported for an error that vanishes (identical up to float rounding).
IDENTICAL_DB = 120.0
#: Timestep buckets of the breakdown, ``[lo, hi)``.
BUCKETS = ((0, 250), (250, 500), (500, 750), (750, 1000))
RESAMPLES = 2000
BATCH = 8


def ratio_db(signal: float, error: float) -> float:
    """``10 log10(signal / error)``, capped at :data:`IDENTICAL_DB`."""
    if error <= signal * 10 ** (-IDENTICAL_DB / 10):
        return IDENTICAL_DB
    return 10 * math.log10(signal / error)


def _ratio_db_vectorised(error: np.ndarray, signal: np.ndarray, axis: int = -1) -> np.ndarray:
    s, e = np.mean(signal, axis=axis), np.mean(error, axis=axis)
    floor = s * 10 ** (-IDENTICAL_DB / 10)
    return np.where(e <= floor, IDENTICAL_DB,
                    10 * np.log10(np.maximum(s, 1e-300) / np.maximum(e, 1e-300)))


@dataclass
class SampleErrors:
    """Per held-out sample: the error and the signal of one figure, and the sample's timestep."""

    error: np.ndarray
    signal: np.ndarray
    timesteps: np.ndarray

    @property
    def db(self) -> float:
        return ratio_db(float(np.mean(self.signal)), float(np.mean(self.error)))

    def ci95(self, seed: int = 0) -> list[float]:
        """Percentile bootstrap 95% interval of :attr:`db`, resampling held-out samples."""
        if len(self.error) < 2 or not np.any(self.error > 0):
            return [round(self.db, 3)] * 2
        result = bootstrap((self.error, self.signal), _ratio_db_vectorised, paired=True,
                           vectorized=True, n_resamples=RESAMPLES, method="percentile",
                           confidence_level=0.95, rng=np.random.default_rng(seed))
        interval = result.confidence_interval
        return [round(float(interval.low), 3), round(float(interval.high), 3)]

    def by_t(self) -> dict[str, float | None]:
        """The figure on the samples of each timestep bucket (``None``: no sample there)."""
        out: dict[str, float | None] = {}
        for lo, hi in BUCKETS:
            rows = (self.timesteps >= lo) & (self.timesteps < hi)
            out[f"{lo}-{hi}"] = (round(ratio_db(float(np.mean(self.signal[rows])),
                                                float(np.mean(self.error[rows]))), 3)
                                 if rows.any() else None)
        return out


def _per_sample_mse(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return ((a - b) ** 2).flatten(1).mean(dim=1).double().numpy()


def stage_errors(student: Trace, teacher: Trace) -> dict[str, float]:
    """Each student stage's relative feature error (MSE over the target's mean square) against
    the teacher's same-named stage, with both run end to end on the same inputs."""
    errors = {}
    for name, features in student.stages.items():
        target = teacher.stages[name]
        # Paired by position; a stage that dropped layers (a BK-SDM point scored by surgery)
        # has outputs of other sizes past the first, which are left out.
        pairs = [(o, fit_channels(t, o.shape[1])) for o, t in zip(
            features.outputs, target.outputs, strict=False) if o.shape[2:] == t.shape[2:]]
        terms = [float(torch.mean((o - t) ** 2) / torch.mean(t**2).clamp_min(1e-12))
                 for o, t in pairs]
        if terms:
            errors[name] = sum(terms) / len(terms)
    return errors


@torch.no_grad()
def reconstructions(model: BuiltModel, images: torch.Tensor) -> torch.Tensor:
    """The VAE's reconstructions of ``images`` (in [-1, 1]), clamped to that range."""
    parts = [model.vae(images[i:i + BATCH]) for i in range(0, images.shape[0], BATCH)]
    return torch.cat(parts).clamp(-1, 1)


@torch.no_grad()
def denoised_images(model: BuiltModel, noisy: torch.Tensor, noise_prediction: torch.Tensor,
                    timesteps: torch.Tensor) -> torch.Tensor:
    """The pipeline's one-step estimate of the clean image: ``x0`` from the noise prediction
    (SD 1.5's schedule), decoded by the model's VAE and clamped to [-1, 1]."""
    alphas = sd15_noise_schedule().alphas_cumprod[timesteps.long()]  # type: ignore[attr-defined]
    alphas = alphas.to(noisy.dtype).view(-1, 1, 1, 1)
    x0 = (noisy - (1 - alphas).sqrt() * noise_prediction) / alphas.sqrt()
    latents = x0 / model.spec.vae.scaling_factor
    parts = [model.vae.decode(latents[i:i + BATCH]) for i in range(0, latents.shape[0], BATCH)]
    return torch.cat(parts).clamp(-1, 1)


@dataclass
class TeacherReference:
    """What every candidate is compared with, computed once per teacher and held-out set."""

    trace: Trace
    images: torch.Tensor
    reconstructions: torch.Tensor

    @classmethod
    def of(cls, teacher: BuiltModel, heldout: CalibrationSet, trace: Trace) -> TeacherReference:
        return cls(trace=trace,
                   images=denoised_images(teacher, heldout.noisy, trace.output,
                                          heldout.timesteps),
                   reconstructions=reconstructions(teacher, heldout.images))


@dataclass
class FidelityReport:
    """A candidate's three figures, sample by sample, and its stage errors."""

    pipeline: SampleErrors
    unet: SampleErrors
    vae: SampleErrors
    stage_errors: dict[str, float]


@torch.no_grad()
def _student_noisy(student: BuiltModel, heldout: CalibrationSet) -> torch.Tensor:
    parts = [student.vae.encode(heldout.images[i:i + BATCH])
             for i in range(0, len(heldout), BATCH)]
    latents = torch.cat(parts) * student.spec.vae.scaling_factor
    schedule = sd15_noise_schedule()
    return schedule.add_noise(latents, heldout.noise,  # type: ignore[attr-defined]
                              heldout.timesteps.long())


@torch.no_grad()
def _prediction(student: BuiltModel, noisy: torch.Tensor, heldout: CalibrationSet
                ) -> torch.Tensor:
    return torch.cat([student.unet(noisy[i:i + BATCH], heldout.timesteps[i:i + BATCH],
                                   heldout.context[i:i + BATCH])
                      for i in range(0, noisy.shape[0], BATCH)])


def fidelity_report(student: BuiltModel, heldout: CalibrationSet, reference: TeacherReference,
                    *, same_vae: bool) -> FidelityReport:
    """Score ``student`` against the teacher's :class:`TeacherReference` on ``heldout``.

    Args:
        same_vae: the student's VAE is the teacher's (its latents, and so its noisy inputs,
            are the teacher's, and its reconstruction error is zero).
    """
    inputs = heldout.unet_inputs(slice(None))
    with torch.no_grad():
        student_trace = trace_batched(student.unet, student.spec, inputs)  # type: ignore[arg-type]
    timesteps = heldout.timesteps.double().numpy()
    teacher_eps = reference.trace.output
    unet = SampleErrors(_per_sample_mse(student_trace.output, teacher_eps),
                        (teacher_eps**2).flatten(1).mean(dim=1).double().numpy(), timesteps)
    ones = np.ones(len(heldout))
    if same_vae:
        noisy, prediction = heldout.noisy, student_trace.output
        vae = SampleErrors(np.zeros(len(heldout)), ones, timesteps)
    else:
        noisy = _student_noisy(student, heldout)
        prediction = _prediction(student, noisy, heldout)
        vae = SampleErrors(_per_sample_mse(reconstructions(student, heldout.images) / 2,
                                           reference.reconstructions / 2), ones, timesteps)
    images = denoised_images(student, noisy, prediction, heldout.timesteps)
    pipeline = SampleErrors(_per_sample_mse(images / 2, reference.images / 2), ones, timesteps)
    return FidelityReport(pipeline=pipeline, unet=unet, vae=vae,
                          stage_errors=stage_errors(student_trace, reference.trace))
