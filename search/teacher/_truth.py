"""Ground truth of generation quality: a student's samples against its teacher's and against
held-out real images.

For each step setting (25 and 4 by default) the teacher and the student sample the same classes
from the same seeds (see :mod:`._sampling`), so their samples are paired. A student's figures:

- ``psnr_db`` and ``ssim``: its samples against the teacher's, paired, images mapped from
  [-1, 1] to [0, 1] (data range 1); the mean over samples of each sample's figure, PSNR capped
  at :data:`IDENTICAL_DB` (a sample identical to the teacher's).
- ``fid`` and ``kid`` (with ``kid_std``): torchmetrics' Fréchet distance and kernel inception
  distance of its samples against the real images, in the feature network's features.
- ``class_accuracy``: the share of samples that the feature network classifies as the class
  they were asked for.

The teacher's own ``fid``, ``kid`` and ``class_accuracy`` are the reference line. A
:class:`TruthReference` samples the teacher once; each :meth:`TruthReference.score` samples one
student. Without a feature network, FID, KID and class accuracy are omitted (``None``) with a
note; without real images, FID and KID are.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from nanosd_nas.search.teacher._features import FeatureNet
from nanosd_nas.search.teacher._sampling import (
    DEFAULT_GUIDANCE,
    STEP_SETTINGS,
    sample,
    scheduler,
)
from nanosd_nas.spaces import ArchSpec, BuiltModel

#: The PSNR of a sample identical to the teacher's (PSNR itself is infinite there).
IDENTICAL_DB = 120.0
#: How many class names an error message lists before it counts the rest.
_LISTED = 30

#: ``on_progress(phase, done, total)``, as the command line's progress display takes it.
Progress = Callable[[str, int, int], None]


class TruthError(ValueError):
    """Ground truth that cannot be computed as asked: a student at another scale, real images
    of the wrong shape or range, a feature network that lacks a class, bad settings."""


class UnknownClassError(TruthError):
    """A class name the teacher's context does not have."""


class TeacherLike(Protocol):
    """What ground truth needs of a teacher (``nanosd_nas.search.distill.Teacher`` has it)."""

    @property
    def model(self) -> BuiltModel: ...

    @property
    def context(self) -> torch.Tensor | None: ...

    @property
    def classes(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class TruthSettings:
    """How ground truth samples.

    Attributes:
        steps: the step settings, each scored on its own.
        per_class: samples per class.
        seed: seeds the initial noise (teacher and student alike).
        guidance: classifier-free guidance scale (1.0: conditional only).
        sampler: ``ddim`` or ``dpmsolver++``.
        classes: the class names to sample; empty: up to ``max_classes`` classes evenly spread
            over the teacher's.
        max_classes: the most classes sampled when ``classes`` is empty.
        batch: samples per U-Net call.
        kid_subset: KID's subset size (capped by the number of samples and real images).
    """

    steps: tuple[int, ...] = STEP_SETTINGS
    per_class: int = 4
    seed: int = 0
    guidance: float = DEFAULT_GUIDANCE
    sampler: str = "ddim"
    classes: tuple[str, ...] = ()
    max_classes: int = 16
    batch: int = 8
    kid_subset: int = 50

    def check(self) -> None:
        """Raise :class:`TruthError` for settings that cannot be sampled."""
        if not self.steps or min(self.steps) < 1:
            raise TruthError(f"steps {list(self.steps)}: each setting needs at least one step")
        if self.per_class < 1 or self.max_classes < 1 or self.seed < 0:
            raise TruthError("per_class and max_classes must be at least 1, seed at least 0")
        scheduler(self.sampler)


@dataclass(frozen=True)
class StepFigures:
    """The figures of one model at one step setting (``None``: not computed; see ``notes``).

    ``by_class`` maps each class name to its ``psnr_db``, ``ssim`` and ``class_accuracy``.
    """

    steps: int
    psnr_db: float | None = None
    ssim: float | None = None
    fid: float | None = None
    kid: float | None = None
    kid_std: float | None = None
    class_accuracy: float | None = None
    by_class: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class TruthReport:
    """One student's ground truth, with the teacher's reference line beside it.

    Attributes:
        settings: the sampling settings and the classes sampled.
        student: the student's figures by step setting.
        teacher: the teacher's figures by step setting (no paired figures).
        notes: why any figure is omitted.
        samples: the student's samples by step setting, ``[N, 3, S, S]`` in [-1, 1], when
            :meth:`TruthReference.score` was asked to keep them.
    """

    settings: dict[str, Any]
    student: dict[int, StepFigures]
    teacher: dict[int, StepFigures]
    notes: tuple[str, ...] = ()
    samples: dict[int, torch.Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document (step settings as string keys; no samples)."""
        return {"settings": self.settings, "notes": list(self.notes),
                "student": {str(k): asdict(v) for k, v in self.student.items()},
                "teacher": {str(k): asdict(v) for k, v in self.teacher.items()}}


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")


def class_rows(known: Sequence[str], chosen: Sequence[str] = (), max_classes: int = 16
               ) -> list[int]:
    """The context rows of the classes ``chosen`` (by name, duplicates dropped) or, when none
    is chosen, of up to ``max_classes`` classes evenly spread over ``known`` (the names of rows
    1..n-1).

    Raises:
        UnknownClassError: a chosen name is not in ``known``; the message lists the known ones.
    """
    if chosen:
        unknown = [name for name in chosen if name not in known]
        if unknown:
            raise UnknownClassError(f"unknown class {unknown[0]!r}; the teacher's classes: "
                                    f"{_listed(list(known)) or 'none'}")
        return [list(known).index(name) + 1 for name in dict.fromkeys(chosen)]
    count = min(max_classes, len(known))
    return [1 + (i * len(known)) // count for i in range(count)]


def check_student(teacher: ArchSpec, student: ArchSpec) -> None:
    """Raise :class:`TruthError` if a student of spec ``student`` cannot be paired with a
    teacher of spec ``teacher``: another latent shape or condition width (another scale)."""
    mine, theirs = ((s.latent_channels, s.latent_size, s.unet.cross_attention_dim)
                    for s in (teacher, student))
    if mine != theirs:
        raise TruthError(f"student {student.spec_id} is not at the teacher's scale: latent "
                         f"{theirs[0]}x{theirs[1]}, condition width {theirs[2]}; the "
                         f"teacher's {mine[0]}x{mine[1]}, {mine[2]}")


def _unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


def _check_real(real: torch.Tensor) -> None:
    if real.ndim != 4 or real.shape[1] != 3 or real.shape[0] < 2:
        raise TruthError(f"real images of shape {list(real.shape)}: expected [M, 3, S, S] with "
                         "M at least 2")
    low, high = float(real.min()), float(real.max())
    if low < -1.001 or high > 1.001:
        raise TruthError(f"real images range over [{low:.3g}, {high:.3g}]: expected [-1, 1]")


class _Distances:
    """FID and KID against fixed real images, whose features are computed once."""

    def __init__(self, features: FeatureNet, real: torch.Tensor, fakes: int,
                 settings: TruthSettings) -> None:
        self.subset = min(settings.kid_subset, real.shape[0], fakes)
        self.seed = settings.seed
        self.batch = settings.batch
        self.fid = FrechetInceptionDistance(feature=features, normalize=True,
                                            reset_real_features=False)
        with warnings.catch_warnings():  # that it keeps the features: a few hundred here
            warnings.filterwarnings("ignore", message=".*save all extracted features")
            self.kid = KernelInceptionDistance(feature=features, normalize=True,
                                               reset_real_features=False,
                                               subset_size=self.subset)
        device = next(features.parameters()).device
        self.fid.to(device)
        self.kid.to(device)
        self._update(real, real=True)

    def _update(self, images: torch.Tensor, *, real: bool) -> None:
        device = self.fid.device
        for start in range(0, images.shape[0], self.batch):
            chunk = _unit(images[start:start + self.batch]).to(device)
            self.fid.update(chunk, real=real)
            self.kid.update(chunk, real=real)

    def __call__(self, fakes: torch.Tensor) -> dict[str, float]:
        self.fid.reset()
        self.kid.reset()
        self._update(fakes, real=False)
        with torch.random.fork_rng(devices=[]):  # KID draws its subsets from the global RNG
            torch.manual_seed(self.seed)
            kid, kid_std = self.kid.compute()
        return {"fid": float(self.fid.compute()), "kid": float(kid), "kid_std": float(kid_std)}


class TruthReference:
    """The teacher's side of ground truth, sampled once and scored against many students.

    Args:
        model: the teacher's U-Net and VAE.
        context: text conditions ``[n, tokens, D]``, row 0 the null prompt.
        classes: the names of rows 1..n-1.
        features: the feature network (``None``: no FID, KID or class accuracy).
        real: held-out real images ``[M, 3, S, S]`` in [-1, 1] (``None``: no FID or KID).
        settings: how to sample.
        on_progress: called as the teacher samples (phase ``teacher, N steps``).

    Raises:
        UnknownClassError: a class of ``settings.classes`` is not the teacher's.
        TruthError: the rest of what the class names.
    """

    def __init__(
        self, model: BuiltModel, context: torch.Tensor, classes: Sequence[str], *,
        features: FeatureNet | None = None, real: torch.Tensor | None = None,
        settings: TruthSettings | None = None, on_progress: Progress | None = None,
    ) -> None:
        self.settings = settings or TruthSettings()
        self.settings.check()
        if context.ndim != 3 or context.shape[0] != len(classes) + 1:
            raise TruthError(f"context of shape {list(context.shape)} for {len(classes)} "
                             "classes: expected one row per class after the null prompt")
        self.model, self.context, self.features = model, context.float(), features
        self.known = tuple(classes)
        rows = class_rows(self.known, self.settings.classes, self.settings.max_classes)
        self.class_rows = tuple(rows)
        self.classes = tuple(self.known[row - 1] for row in rows)
        self.rows = torch.tensor(rows).repeat_interleave(self.settings.per_class)
        self.notes: list[str] = []
        self.targets = self._targets()
        self.distances = self._distances(real)
        self.samples = {steps: self._sample(model, steps, "teacher", on_progress)
                        for steps in self.settings.steps}
        self.figures = {steps: self._figures(steps, images)
                        for steps, images in self.samples.items()}

    @classmethod
    def of(cls, teacher: TeacherLike, **options: Any) -> TruthReference:
        """The reference of a loaded teacher (its model, context and class names); ``options``
        as the constructor takes them."""
        if teacher.context is None:
            raise TruthError("the teacher ships no context: ground truth samples its classes")
        return cls(teacher.model, teacher.context, teacher.classes, **options)

    def _targets(self) -> torch.Tensor | None:
        if self.features is None:
            self.notes.append("no feature network: FID, KID and class accuracy omitted")
            return None
        missing = [name for name in self.classes if name not in self.features.classes]
        if missing:
            raise TruthError(f"the feature network knows no class {missing[0]!r} (its classes: "
                             f"{_listed(self.features.classes)})")
        return torch.tensor([self.features.classes.index(self.known[row - 1])
                             for row in self.rows.tolist()])

    def _distances(self, real: torch.Tensor | None) -> _Distances | None:
        if self.features is None:
            return None
        if real is None:
            self.notes.append("no real images: FID and KID omitted")
            return None
        _check_real(real)
        distances = _Distances(self.features, real, self.rows.shape[0], self.settings)
        if distances.subset < 2:
            self.notes.append("fewer than 2 samples: FID and KID omitted")
            return None
        return distances

    def _sample(self, model: BuiltModel, steps: int, who: str,
                on_progress: Progress | None) -> torch.Tensor:
        phase = f"{who}, {steps} steps"
        s = self.settings
        return sample(model, self.context, self.rows, steps=steps, seed=s.seed,
                      guidance=s.guidance, sampler=s.sampler, batch=s.batch,
                      on_progress=None if on_progress is None else (
                          lambda done, total: on_progress(phase, done, total)))

    @torch.no_grad()
    def _correct(self, images: torch.Tensor) -> torch.Tensor | None:
        if self.features is None or self.targets is None:
            return None
        device = next(self.features.parameters()).device
        found = torch.cat([self.features.logits(_unit(images[i:i + self.settings.batch])
                                                .to(device)).argmax(dim=1).cpu()
                           for i in range(0, images.shape[0], self.settings.batch)])
        return (found == self.targets).float()

    @torch.no_grad()
    def _figures(self, steps: int, images: torch.Tensor,
                 paired: torch.Tensor | None = None) -> StepFigures:
        psnr, ssim = (None, None) if paired is None else _paired(images, paired)
        correct = self._correct(images)
        distances = {} if self.distances is None else self.distances(images)
        by_class = {name: {key: _mean(values, self.rows == row)
                           for key, values in (("psnr_db", psnr), ("ssim", ssim),
                                               ("class_accuracy", correct))}
                    for name, row in zip(self.classes, self.class_rows, strict=True)}
        everything = torch.ones_like(self.rows, dtype=torch.bool)
        return StepFigures(steps=steps, psnr_db=_mean(psnr, everything),
                           ssim=_mean(ssim, everything), fid=distances.get("fid"),
                           kid=distances.get("kid"), kid_std=distances.get("kid_std"),
                           class_accuracy=_mean(correct, everything), by_class=by_class)

    def score(self, student: BuiltModel, *, keep_samples: bool = False,
              on_progress: Progress | None = None) -> TruthReport:
        """Sample ``student`` at every step setting and score it (see the module's docstring).

        Args:
            student: the student's U-Net and VAE (sampled on the device of its weights).
            keep_samples: keep the student's samples in the report (for a grid).
            on_progress: called as the student samples (phase ``student, N steps``).
        """
        check_student(self.model.spec, student.spec)
        samples = {steps: self._sample(student, steps, "student", on_progress)
                   for steps in self.settings.steps}
        figures = {steps: self._figures(steps, images, self.samples[steps])
                   for steps, images in samples.items()}
        return TruthReport(settings=self.describe(), student=figures, teacher=self.figures,
                           notes=tuple(self.notes), samples=samples if keep_samples else {})

    def describe(self) -> dict[str, Any]:
        """The settings as a report gives them: steps, sampler, guidance, seed, samples per
        class, the classes, how PSNR and SSIM are taken."""
        s = self.settings
        return {"steps": list(s.steps), "sampler": s.sampler, "guidance": s.guidance,
                "seed": s.seed, "per_class": s.per_class, "classes": list(self.classes),
                "samples": int(self.rows.shape[0]), "kid_subset": (
                    None if self.distances is None else self.distances.subset),
                "paired_metrics": f"images mapped to [0, 1], data range 1; PSNR capped at "
                                  f"{IDENTICAL_DB:g} dB"}


def _paired(images: torch.Tensor, paired: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's PSNR (capped) and SSIM against its pair, in [0, 1] with data range 1."""
    ours, theirs = _unit(images), _unit(paired)
    psnr = peak_signal_noise_ratio(ours, theirs, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(ours, theirs, data_range=1.0, reduction="none")
    return psnr.clamp(max=IDENTICAL_DB), ssim[0] if isinstance(ssim, tuple) else ssim


def _mean(values: torch.Tensor | None, where: torch.Tensor) -> float | None:
    if values is None or not bool(where.any()):
        return None
    return float(values[where].double().mean())
