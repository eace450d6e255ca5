"""Export a trial's architecture: the spec alone, or a model with weights from the study's
teacher (distilled: assembled from the block bank; teacher: initialised by surgery)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from nanosd_nas import spaces
from nanosd_nas.search._accuracy_config import BUILTIN, AccuracyConfig

if TYPE_CHECKING:
    from nanosd_nas.search.evaluators import BankEvaluator
    from nanosd_nas.search.store import Store


class ExportRequestError(ValueError):
    """An export that cannot be made as asked: an unknown format or weights choice, or a trial
    without an architecture."""


#: Where a model's weights come from, for the formats that carry weights.
WEIGHTS = ("distilled", "teacher")
_WITH_WEIGHTS = ("safetensors", "onnx", "diffusers")


def export_trial(store: Store, study: str, number: int, fmt: str, out: Path, *,
                 weights: str | None = None,
                 onnx: spaces.OnnxOptions | None = None) -> spaces.ExportResult:
    """Write trial ``number`` of ``study`` as ``fmt`` into ``out``.

    Args:
        store: the database holding the study.
        study: the study's name.
        number: the trial's number.
        fmt: ``spec``, ``diffusers``, ``onnx`` or ``safetensors``.
        out: the folder to write into (created; written atomically by :func:`spaces.export`).
        weights: ``distilled`` or ``teacher``; by default what the study's evaluator scored.
            Studies scored by a plugin evaluator export the builder's seeded weights.
        onnx: layout, precision and exporter of an ``onnx`` export.

    Raises:
        ExportRequestError: an unknown format or weights choice, ONNX options given to another
            format, or a trial without an architecture.
        StoreError: the study or trial does not exist.
    """
    if fmt not in spaces.FORMATS:
        raise ExportRequestError(f"format {fmt!r} does not exist; known: "
                                 f"{', '.join(spaces.FORMATS)}")
    if weights is not None and weights not in WEIGHTS:
        raise ExportRequestError(f"weights {weights!r} must be one of {', '.join(WEIGHTS)}")
    if onnx is not None and fmt != "onnx" and onnx != spaces.OnnxOptions():
        raise ExportRequestError(f"layout, precision and exporter apply to the onnx format, "
                                 f"not {fmt!r}")
    record = store.get_trial(study, number)
    if record.spec_id is None:
        raise ExportRequestError(f"trial {number} of study {study!r} has no architecture")
    spec = store.get_architecture(record.spec_id)
    accuracy = AccuracyConfig(**store.get_study(study).config.get("accuracy", {}))
    objectives = tuple(spaces.ObjectiveValue(v.name, v.value, v.provenance)
                       for v in record.values)
    source = spaces.ExportSource(study=study, trial=number, objectives=objectives)
    model = None
    if fmt in _WITH_WEIGHTS and accuracy.evaluator in BUILTIN:
        from nanosd_nas.search.evaluators import BankEvaluator, make_evaluator

        chosen = weights or ("distilled" if accuracy.evaluator == "distill" else "teacher")
        mode = "distill" if chosen == "distilled" else "surgery"
        evaluator = make_evaluator(accuracy.model_copy(update={"evaluator": mode}))
        if not isinstance(evaluator, BankEvaluator):
            raise TypeError(f"the {mode} evaluator is {type(evaluator).__name__}")
        model = evaluator.candidate(spec)
        teacher, bank = _bank_origin(evaluator, chosen)
        source = replace(source, weights=chosen, teacher=teacher, bank=bank)
    return spaces.export(spec, fmt, out, model=model, onnx=onnx, source=source)


def _bank_origin(evaluator: BankEvaluator, weights: str) -> tuple[str, str | None]:
    """The teacher and, for distilled weights, the block bank, as the model card names them."""
    bank = evaluator.bank
    teacher, settings = bank.teacher, bank.settings
    described = None if weights != "distilled" else (
        f"`{teacher.teacher_id}` distilled {settings.steps} steps per stage variant on "
        f"{settings.samples} samples of calibration data `{bank.data_id}`")
    return f"{teacher.label} (`{teacher.teacher_id}`)", described
