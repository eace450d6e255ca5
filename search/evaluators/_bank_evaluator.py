"""The built-in evaluators: candidates assembled from the block bank (``distill``) or from
surgery alone (``surgery``, training-free, for quick scans)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from nanosd_nas.search.distill import (
    BlockBank,
    DistillSettings,
    Origins,
    load_teacher,
    space_variants,
)
from nanosd_nas.search.distill import stage_variants as candidate_variants
from nanosd_nas.search.evaluators._base import (
    AccuracyEvaluator,
    AccuracyResult,
    EvaluatorError,
    Progress,
)
from nanosd_nas.search.evaluators._fidelity import TeacherReference, fidelity_report
from nanosd_nas.spaces import ArchSpec, BuiltModel, Space


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when PyTorch sees a GPU, else ``cpu``; ``cuda`` needs a GPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EvaluatorError("accuracy device 'cuda': PyTorch sees no GPU here (use 'auto' or "
                             "'cpu', or install PyTorch's CUDA build)")
    if device not in ("cpu", "cuda"):
        raise EvaluatorError(f"accuracy device {device!r} is not auto, cpu or cuda")
    return device


class BankEvaluator(AccuracyEvaluator):
    """A candidate's pipeline fidelity (dB) against its teacher's on held-out data.

    Objectives: ``fidelity`` (the student pipeline's one-step denoised image against the
    teacher pipeline's, each with its own VAE), and its components ``unet_fidelity_db`` (the
    U-Net's noise prediction against the teacher's) and ``vae_psnr_db`` (the VAE's
    reconstruction against the teacher VAE's; the cap when it is the teacher's). Details: each
    figure's bootstrap 95% interval, the breakdown by timestep, the stage errors and the
    count of untrained parameters (a candidate with any is refused, not scored).

    Args:
        teacher: ``demo`` or the path of an SD-1.5 checkpoint.
        distilled: assemble from the block bank (distilling missing entries first); if false,
            score the surgery-initialised student as it is.
        settings: distillation and calibration-data settings.
        bank_folder: where the bank lives (default: the project home's ``banks/``).
        device: ``auto``, ``cpu`` or ``cuda``: where bank entries are distilled (scoring
            stays on the CPU, with the teacher).
        images: a folder of the user's calibration images (default: the shipped pool).
        context: a safetensors file of conditioning embeddings (default: the teacher's own).
    """

    def __init__(
        self, *, teacher: str | Path = "demo", distilled: bool = True,
        settings: DistillSettings | None = None, bank_folder: Path | None = None,
        device: str = "auto", images: Path | None = None, context: Path | None = None,
    ) -> None:
        self.teacher_reference = teacher
        self.distilled = distilled
        self.settings = settings or DistillSettings()
        self.bank_folder = bank_folder
        self.device = device
        self.images = images
        self.context = context
        self.objective_names = ("fidelity", "unet_fidelity_db", "vae_psnr_db")

    @classmethod
    def on(cls, bank: BlockBank, *, distilled: bool = True) -> BankEvaluator:
        """An evaluator over an existing bank (its teacher, settings, data and folder)."""
        evaluator = cls(teacher=bank.teacher.label, distilled=distilled,
                        settings=bank.settings, bank_folder=bank.folder.parent,
                        device=bank.device, images=bank.images, context=bank.context_file)
        evaluator.__dict__["bank"] = bank  # fills the cached property
        return evaluator

    @cached_property
    def bank(self) -> BlockBank:
        device = resolve_device(self.device)
        # The teacher stays on the CPU (data, traces and scoring); stages distil on ``device``.
        teacher = load_teacher(self.teacher_reference)
        return BlockBank(teacher, settings=self.settings, folder=self.bank_folder,
                         device=device, images=self.images, context=self.context)

    @cached_property
    def reference(self) -> TeacherReference:
        bank = self.bank
        return TeacherReference.of(bank.teacher.model, bank.data.heldout,
                                   bank.teacher_trace("heldout"))

    def prepare(self, space: Space, scale: str, progress: Progress | None = None) -> None:
        """Check that the teacher is at the study's scale, then distil every stage variant of
        ``space`` that the bank lacks (distilled mode)."""
        teacher = self.bank.teacher
        if scale != teacher.scale:
            raise EvaluatorError(f"teacher {teacher.label} is SD 1.5 at {teacher.scale} scale; "
                                 f"the study is at {scale}: give a teacher at {scale} or set "
                                 f"scale: {teacher.scale}")
        if not self.distilled:
            return
        self.bank.build(space_variants(space, scale), on_progress=progress)

    def candidate(self, spec: ArchSpec) -> BuiltModel:
        """The student as this evaluator scores (and exports) it.

        Raises:
            EvaluatorError: the student would carry untrained tensors (surgery alone, widths
                narrower than the teacher's).
        """
        return self._assembled(spec)[0]

    def _assembled(self, spec: ArchSpec) -> tuple[BuiltModel, Origins]:
        """The student, and where its tensors come from (none untrained, or an error)."""
        origins = self.bank.origins(spec, distilled=self.distilled)
        if origins.untrained:
            names = origins.untrained_names()
            raise EvaluatorError(
                f"candidate {spec.spec_id} would carry {origins.untrained:,} untrained "
                f"parameters ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}): "
                "its widths differ from the teacher's, and only the distill evaluator trains "
                "them")
        if not self.distilled:
            return self.bank.surgery(spec), origins
        self.bank.build(candidate_variants(spec).values())
        return self.bank.assemble(spec), origins

    def evaluate(self, spec: ArchSpec) -> AccuracyResult:
        bank = self.bank
        teacher_spec = bank.teacher.spec
        if spec.latent_size != teacher_spec.latent_size or spec.unet.cross_attention_dim != (
                teacher_spec.unet.cross_attention_dim):
            raise EvaluatorError(f"candidate {spec.spec_id} is not at the teacher's scale "
                                 f"({bank.teacher.scale}): latent {spec.latent_size}, "
                                 f"teacher {teacher_spec.latent_size}")
        model, origins = self._assembled(spec)
        report = fidelity_report(model, bank.data.heldout,
                                 self.reference, same_vae=spec.vae == teacher_spec.vae)
        figures = {"fidelity": report.pipeline, "unet_fidelity_db": report.unet,
                   "vae_psnr_db": report.vae}
        details: dict[str, Any] = {
            "teacher": bank.teacher.label,
            "mode": "distilled" if self.distilled else "surgery",
            "untrained_parameters": origins.untrained,
            "parameter_origins": origins.summary(),
            "fidelity_ci95": report.pipeline.ci95(),
            "fidelity_by_t": report.pipeline.by_t(),
            "unet_fidelity_db_ci95": report.unet.ci95(),
            "unet_fidelity_db_by_t": report.unet.by_t(),
            "vae_psnr_db_ci95": report.vae.ci95(),
            "stage_errors": report.stage_errors,
        }
        return AccuracyResult(objectives={name: errors.db for name, errors in figures.items()},
                              details=details)
