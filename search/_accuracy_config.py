"""A study's ``accuracy`` section, importable without PyTorch.

It lives apart from ``search.evaluators`` because importing that package loads PyTorch and
diffusers, and parsing a study (``study create``, the API) must not.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationInfo,
    field_validator,
)
from pydantic_core import core_schema

from nanosd_nas.search._study_document import find_beside

#: The evaluators every install has: the distilled block bank and the training-free surgery.
BUILTIN = ("distill", "surgery")
AccuracyDevice = Literal["auto", "cpu", "cuda"]
#: Where bank entries are distilled (scoring stays on the CPU): ``auto`` is ``cuda`` when
#: PyTorch sees a GPU.
ACCURACY_DEVICES: tuple[str, ...] = get_args(AccuracyDevice)

#: The teachers known by name and their scale (both are SD 1.5 at mini scale): ``demo``, seeded,
#: and ``trained``, shipped. A teacher given by path is one of either scale.
NAMED_TEACHER_SCALES = {"demo": "mini", "trained": "mini"}
DEFAULT_TEACHER = "trained"


def default_scale(accuracy: Any) -> str:
    """A study's scale when it sets none: its teacher's where the name tells it (``mini`` for
    ``demo`` and the default ``trained``), else ``full``. ``accuracy`` is the section as given
    (a mapping, a config or nothing; anything else is validation's to refuse)."""
    teacher: Any = DEFAULT_TEACHER
    if isinstance(accuracy, AccuracyConfig):
        teacher = accuracy.teacher
    elif isinstance(accuracy, Mapping):
        teacher = accuracy.get("teacher", DEFAULT_TEACHER)
    return NAMED_TEACHER_SCALES.get(teacher, "full") if isinstance(teacher, str) else "full"


def scale_conflict(scale: str, teacher: str) -> str | None:
    """Why a study at ``scale`` cannot score against ``teacher`` (a built-in evaluator needs
    them at one scale), or ``None`` when it can or the teacher's scale is known only once it
    is loaded (a path)."""
    own = NAMED_TEACHER_SCALES.get(teacher)
    if own is None or own == scale:
        return None
    return (f"scale: {scale} conflicts with accuracy.teacher: {teacher} (SD 1.5 at {own} "
            f"scale); set scale: {own}, or give a teacher at {scale} scale (a diffusers folder "
            "or .safetensors file)")


class DistillSettings(BaseModel):
    """How every bank entry is distilled: the budget of a stage variant and the calibration
    data's size and seed (all of it is part of a bank entry's key).

    ``lr_schedule`` is ``constant`` or ``cosine`` (from ``learning_rate`` down to 0 over
    ``steps``), after ``warmup_steps`` of linear warm-up.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=150, ge=0, le=1_000_000)
    batch_size: int = Field(default=16, ge=1, le=4096)
    learning_rate: float = Field(default=3e-4, gt=0, le=1.0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0, le=1_000_000)
    output_weight: float = Field(default=0.0, ge=0)
    task_weight: float = Field(default=0.0, ge=0)
    samples: int = Field(default=160, ge=4, le=100_000)
    holdout: float = Field(default=0.33, gt=0, lt=1)
    data_seed: int = 0


class ValidatedAs:
    """Marks a mapping field that is validated as ``model`` (its errors at
    ``FIELD.KEY``, e.g. ``accuracy.distill.steps``) and kept as the mapping of the keys given,
    with their validated values: ``DistillSettings(**config.distill)`` makes the settings."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            _given, handler.generate_schema(self.model),
            serialization=core_schema.plain_serializer_function_ser_schema(dict))


def _given(settings: BaseModel) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude_unset=True)


class AccuracyConfig(BaseModel):
    """A study's ``accuracy`` section.

    ``evaluator`` is ``distill`` (block bank), ``surgery`` (training-free) or a reference
    ``package.module:name`` to an :class:`AccuracyEvaluator` subclass (made with ``options``
    as keyword arguments) or to a function ``f(spec) -> float | dict[str, float]``.

    ``distill`` holds the :class:`DistillSettings` the study changes (a mapping of the keys
    given). ``images`` (a folder of the user's calibration images) and ``context`` (a
    safetensors file of conditioning embeddings) are paths: read from a study file, a relative
    one is looked up beside the file first, then in the working folder, and kept absolute; a
    missing one is an error. ``device`` is where bank entries are distilled.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    evaluator: str = "distill"
    teacher: str = DEFAULT_TEACHER
    distill: Annotated[dict[str, Any], ValidatedAs(DistillSettings)] = Field(
        default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    images: Annotated[str, Field(min_length=1)] | None = None
    context: Annotated[str, Field(min_length=1)] | None = None
    device: AccuracyDevice = "auto"

    @field_validator("images", "context")
    @classmethod
    def _user_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Found and made absolute while a study document is read (its validation context
        has ``base_dir``); taken as it is otherwise (a stored section on a worker)."""
        if value is None or not isinstance(info.context, dict) or "base_dir" not in info.context:
            return value
        folder = info.field_name == "images"
        base_dir = info.context["base_dir"]
        found = find_beside(value, base_dir, Path.is_dir if folder else Path.is_file)
        if found is not None:
            return str(found)
        wanted = "folder of images" if folder else "safetensors file"
        other = find_beside(value, base_dir, Path.is_file if folder else Path.is_dir)
        if other is not None:
            raise ValueError(f"{other} is a {'file' if folder else 'folder'}, not a {wanted}")
        where = ("" if base_dir is None or Path(value).is_absolute()
                 else " (looked beside the study file and in the working folder)")
        raise ValueError(f"no {wanted} {value!r}{where}")
