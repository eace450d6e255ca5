"""The built-in evaluators: candidates assembled from the block bank (``distill``) or from
surgery alone (``surgery``, training-free, for quick scans)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from nanosd_nas.search.distill import BlockBank, DistillSettings, load_teacher, space_variants
from nanosd_nas.search.distill import stage_variants as candidate_variants
from nanosd_nas.search.evaluators._base import (
    AccuracyEvaluator,
    AccuracyResult,
    EvaluatorError,
    Progress,
)
from nanosd_nas.search.evaluators._fidelity import reconstructions, unet_fidelity, vae_psnr_db
from nanosd_nas.spaces import ArchSpec, BuiltModel, Space


class BankEvaluator(AccuracyEvaluator):
    """Noise-prediction fidelity (dB) of a candidate against its teacher on held-out data.

    Objectives: ``unet_fidelity_db`` (the U-Net's noise fidelity), ``vae_psnr_db`` (the VAE's
    reconstruction PSNR against the teacher VAE's, only when the candidate's VAE differs from
    the teacher's) and ``fidelity``, the lower of the two: the weaker part bounds the pipeline.

    Args:
        teacher: ``demo`` or the path of an SD-1.5 checkpoint.
        distilled: assemble from the block bank (distilling missing entries first); if false,
            score the surgery-initialised student as it is.
        settings: distillation and calibration-data settings.
        bank_folder: where the bank lives (default: the project home's ``banks/``).
        device: ``cpu`` or ``cuda`` (distillation and scoring).
    """

    def __init__(
        self, *, teacher: str | Path = "demo", distilled: bool = True,
        settings: DistillSettings | None = None, bank_folder: Path | None = None,
        device: str = "cpu",
    ) -> None:
        self.teacher_reference = teacher
        self.distilled = distilled
        self.settings = settings or DistillSettings()
        self.bank_folder = bank_folder
        self.device = device
        self.objective_names = ("fidelity", "unet_fidelity_db", "vae_psnr_db")

    @classmethod
    def on(cls, bank: BlockBank, *, distilled: bool = True) -> BankEvaluator:
        """An evaluator over an existing bank (its teacher, settings and folder)."""
        evaluator = cls(teacher=bank.teacher.label, distilled=distilled,
                        settings=bank.settings, bank_folder=bank.folder.parent,
                        device=bank.device)
        evaluator.__dict__["bank"] = bank  # fills the cached property
        return evaluator

    @cached_property
    def bank(self) -> BlockBank:
        teacher = load_teacher(self.teacher_reference, device=self.device)
        return BlockBank(teacher, settings=self.settings, folder=self.bank_folder,
                         device=self.device)

    @cached_property
    def _teacher_reconstructions(self) -> torch.Tensor:
        return reconstructions(self.bank.teacher.model, self.bank.data.heldout.images)

    def prepare(self, space: Space, scale: str, progress: Progress | None = None) -> None:
        """Distil every stage variant of ``space`` that the bank lacks (distilled mode)."""
        if not self.distilled:
            return
        self.bank.build(space_variants(space, scale), on_progress=progress)

    def candidate(self, spec: ArchSpec) -> BuiltModel:
        """The student as this evaluator scores it."""
        if not self.distilled:
            return self.bank.surgery(spec)
        self.bank.build(candidate_variants(spec).values())
        return self.bank.assemble(spec)

    def evaluate(self, spec: ArchSpec) -> AccuracyResult:
        bank = self.bank
        teacher_spec = bank.teacher.spec
        if spec.latent_size != teacher_spec.latent_size or spec.unet.cross_attention_dim != (
                teacher_spec.unet.cross_attention_dim):
            raise EvaluatorError(f"candidate {spec.spec_id} is not at the teacher's scale "
                                 f"({bank.teacher.scale}): latent {spec.latent_size}, "
                                 f"teacher {teacher_spec.latent_size}")
        model = self.candidate(spec)
        objectives: dict[str, float] = {}
        details: dict[str, Any] = {"teacher": bank.teacher.label,
                                   "mode": "distilled" if self.distilled else "surgery"}
        fidelity, errors = unet_fidelity(model, bank.data.heldout, bank.teacher_trace("heldout"))
        objectives["unet_fidelity_db"] = fidelity
        details["stage_errors"] = errors
        if spec.vae != teacher_spec.vae:
            objectives["vae_psnr_db"] = vae_psnr_db(model, bank.data.heldout.images,
                                                    self._teacher_reconstructions)
        objectives["fidelity"] = min(objectives.values())
        return AccuracyResult(objectives=objectives, details=details)
