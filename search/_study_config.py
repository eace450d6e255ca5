"""A study's document: what to search, on which device, for which objectives.

    config = StudyConfig.load("study.yaml")     # StudyConfigError: one line, file + field
    device = config.check_device()              # is the device registered here?
    store.create_study(config.name, config.to_document(), device=device.name)

Parsing needs no project home, no database and no PyTorch: the space is loaded (it is data),
the device's existence is checked separately by :meth:`StudyConfig.check_device`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nanosd_nas import spaces
from nanosd_nas.latency_models import (
    LOCAL_CPU,
    Device,
    DeviceError,
    DeviceRegistry,
    check_device_name,
)
from nanosd_nas.search._accuracy_config import (
    BUILTIN,
    AccuracyConfig,
    default_scale,
    scale_conflict,
)
from nanosd_nas.search._objectives import PHOTO_LATENCY_OBJECTIVE
from nanosd_nas.search._study_document import (
    StudyConfigError,
    describe_kind,
    find_beside,
    parse_document,
    validation_message,
)
from nanosd_nas.search._study_sections import (
    ACCURACY_OBJECTIVES,
    DEFAULT_ENCODING,
    KNOWN_OBJECTIVES,
    LATENCY_OBJECTIVES,
    NATURAL_DIRECTIONS,
    SAMPLERS,
    SIZE_OBJECTIVES,
    Bound,
    Direction,
    EncodingName,
    InitialDesign,
    LatencyConfig,
    Objective,
    PipelineConfig,
    Sampler,
    Section,
    Source,
    default_initial_design,
    default_objectives,
    objective_source,
    removed_field,
)
from nanosd_nas.search.store import check_study_name

__all__ = [
    "ACCURACY_OBJECTIVES", "KNOWN_OBJECTIVES", "LATENCY_OBJECTIVES", "NATURAL_DIRECTIONS",
    "SAMPLERS", "SIZE_OBJECTIVES", "Bound", "LatencyConfig", "Objective", "PipelineConfig",
    "StudyConfig", "StudyConfigError", "default_initial_design",
]

_REFERENCE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_SEED_LIMIT = 2**32  # NumPy's seeds, which Optuna's samplers pass on



class StudyConfig(Section):
    """A study as submitted (YAML file, or JSON through the API).

    Build it with :meth:`load` (a file) or :meth:`from_document` (a mapping), which raise
    :class:`StudyConfigError`; :meth:`to_document` is what the store keeps.
    """

    name: str
    space: str
    #: Unset: the scale of the teacher where its name tells it (:func:`default_scale`).
    scale: str = "full"
    device: str = LOCAL_CPU
    pipeline: PipelineConfig = PipelineConfig()
    objectives: Annotated[tuple[Objective, ...], Field(min_length=1)] = Field(
        default_factory=default_objectives)
    constraints: dict[str, Bound] = Field(default_factory=dict)
    sampler: Sampler = "tpe"
    #: Trials asked before the sampler's own: the space's corners (see
    #: :func:`search._samplers.initial_design`). Unset: ``corners``, but ``none`` for random
    #: search, which stays the plain baseline.
    initial_design: InitialDesign | None = None
    #: How choices are presented to the sampler (:mod:`search._encoding`); a study keeps the
    #: encoding its first trials were asked in, whatever this says later.
    encoding: EncodingName = DEFAULT_ENCODING
    n_trials: Annotated[StrictInt, Field(ge=1, le=100_000)] = 100
    parallelism: Annotated[StrictInt, Field(ge=1, le=256)] = 2
    latency: LatencyConfig = LatencyConfig()
    accuracy: AccuracyConfig = AccuracyConfig()
    seed: Annotated[StrictInt, Field(ge=0, lt=_SEED_LIMIT)] = 0

    # -- reading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> StudyConfig:
        """Read a study file, YAML or JSON (told apart by content). A relative ``space`` path
        is looked up beside the file first."""
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise StudyConfigError(f"{source}: not a UTF-8 text file") from None
        except OSError as error:
            raise StudyConfigError(f"{source}: cannot be read ({error.strerror or error})"
                                   ) from None
        if not text.strip():
            raise StudyConfigError(f"{source}: the file is empty; a study is a YAML or JSON "
                                   "mapping")
        return cls.from_document(parse_document(text, source), source=source,
                                 base_dir=path.parent)

    @classmethod
    def from_document(cls, document: Any, *, source: str = "study",
                      base_dir: str | Path | None = None) -> StudyConfig:
        """Validate a parsed study document.

        Args:
            document: the mapping (from YAML, JSON or the store).
            source: what the messages call it (a file name, ``request body``).
            base_dir: where a relative ``space`` path is looked up before the working folder.

        Raises:
            StudyConfigError: the first problem, e.g.
                ``study.yaml: objectives.1.direction: 'fastest' is not one of maximize, minimize``.
        """
        if not isinstance(document, Mapping):
            raise StudyConfigError(f"{source}: a study must be a mapping of fields, not "
                                   f"{describe_kind(document)}")
        try:
            return cls.model_validate(dict(document), context={"base_dir": base_dir})
        except ValidationError as error:
            raise StudyConfigError(validation_message(source, error, root=cls, items=_ITEMS)
                                   ) from None

    def to_document(self) -> dict[str, Any]:
        """The study as a JSON document (every default written out): what the store keeps and
        what :meth:`from_document` reads back to an equal config."""
        return self.model_dump(mode="json", exclude_none=True)

    # -- what a trial computes --------------------------------------------------------------
    @property
    def design(self) -> InitialDesign:
        """The initial design this study uses (``initial_design``, or its default)."""
        return self.initial_design or default_initial_design(self.sampler)

    @property
    def objective_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objectives)

    @property
    def directions(self) -> tuple[Direction, ...]:
        """Optuna's ``directions``, in objective order."""
        return tuple(o.direction for o in self.objectives)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every value a trial must compute: the objectives, then constrained values that are
        not objectives."""
        names = self.objective_names
        return names + tuple(n for n in self.constraints if n not in names)

    @property
    def accuracy_objectives(self) -> tuple[str, ...]:
        """Values the accuracy evaluator gives (objectives and constrained values)."""
        return tuple(n for n in self.metric_names if self.source_of(n) == "accuracy")

    @property
    def latency_objectives(self) -> tuple[str, ...]:
        """Values the device's predictor or profiler gives."""
        return tuple(n for n in self.metric_names if self.source_of(n) == "latency")

    @property
    def size_objectives(self) -> tuple[str, ...]:
        """Values counted exactly from the spec (parameters, MACs)."""
        return tuple(n for n in self.metric_names if self.source_of(n) == "size")

    @staticmethod
    def source_of(name: str) -> Source:
        """Where a value comes from (:func:`search._study_sections.objective_source`)."""
        return objective_source(name)

    @property
    def needs_accuracy(self) -> bool:
        """Whether a trial needs the accuracy evaluator (on Ray workers): sizes and latency
        are computed by the runner itself."""
        return bool(self.accuracy_objectives)

    @property
    def measures_latency(self) -> bool:
        """Whether every trial's latency is measured on the device rather than predicted."""
        return bool(self.latency_objectives) and self.latency.source == "measured"

    @property
    def predicts_latency(self) -> bool:
        """Whether trials take their latency from the device's predictor."""
        return bool(self.latency_objectives) and self.latency.source == "predictor"

    @property
    def uses_plugin(self) -> bool:
        """Whether the accuracy evaluator is a user's ``module:name`` reference."""
        return self.accuracy.evaluator not in BUILTIN

    def constraint_values(self, values: Mapping[str, float]) -> dict[str, float]:
        """Optuna's constraint values (``<= 0`` is satisfied) of a trial's ``values``, one per
        bound, keyed ``NAME.min`` / ``NAME.max`` in the order of :attr:`constraints`.

        Raises:
            KeyError: a constrained value is missing from ``values``.
        """
        violations = {}
        for name, bound in self.constraints.items():
            if bound.min is not None:
                violations[f"{name}.min"] = bound.min - float(values[name])
            if bound.max is not None:
                violations[f"{name}.max"] = float(values[name]) - bound.max
        return violations

    # -- checks against this host -----------------------------------------------------------
    def load_space(self) -> spaces.Space:
        """The study's search space."""
        return spaces.load_space(self.space)

    def check_device(self, *, home: str | Path | None = None,
                     source: str | None = None) -> Device:
        """The registered device the study runs on.

        Args:
            home: the project home holding the device registry (default: as
                :func:`latency_models.project_home` resolves it).
            source: the file name to put in the message.

        Raises:
            StudyConfigError: the device is not registered (or its file is unreadable), or it
                measures at another precision than ``latency.precision``.
        """
        where = f"{source}: " if source else ""
        try:
            device = DeviceRegistry(home=home).get(self.device)
        except DeviceError as error:
            raise StudyConfigError(f"{where}device: {error}") from None
        wanted = self.latency.precision
        option = "--dtype" if device.kind == "torch" else "--precision"
        if wanted is not None and wanted != device.precision:
            raise StudyConfigError(
                f"{where}latency.precision: {wanted} but device {device.name!r} measures at "
                f"{device.precision} (register one with 'nanosd-nas device add NAME --kind "
                f"{device.kind} {option} {wanted}')")
        return device

    # -- validation -------------------------------------------------------------------------
    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_study_name(name)

    @field_validator("device")
    @classmethod
    def _device_name(cls, name: str) -> str:
        return check_device_name(name)

    @field_validator("scale")
    @classmethod
    def _scale(cls, scale: str) -> str:
        if scale not in spaces.SCALES:
            raise ValueError(f"{scale!r} is not one of {', '.join(spaces.SCALES)}")
        return scale

    @field_validator("space")
    @classmethod
    def _space(cls, space: str, info: ValidationInfo) -> str:
        shipped = spaces.list_spaces()
        if space in shipped:
            return space
        path = _space_path(space, (info.context or {}).get("base_dir"))
        if path is None:
            raise ValueError(f"{space!r} is neither a shipped space ({', '.join(shipped)}) "
                             "nor a space file")
        try:
            spaces.load_space(str(path))
        # A malformed space file can fail in the space parser in several ways; each is the
        # user's to fix, so each is reported as this field's problem.
        except (ValueError, OSError, TypeError, KeyError) as error:
            raise ValueError(f"space file {path}: {error}") from None
        return str(path)

    @model_validator(mode="before")
    @classmethod
    def _no_removed_field(cls, data: Any) -> Any:
        problem = removed_field(data) if isinstance(data, Mapping) else None
        if problem is not None:
            raise ValueError(problem)
        return data

    @model_validator(mode="before")
    @classmethod
    def _teachers_scale(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "scale" not in data:
            return {**data, "scale": default_scale(data.get("accuracy"))}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        evaluator = self.accuracy.evaluator
        if evaluator not in BUILTIN and not _REFERENCE.fullmatch(evaluator):
            raise ValueError(f"accuracy.evaluator: {evaluator!r} is neither "
                             f"{' nor '.join(BUILTIN)} nor a 'package.module:name' reference")
        known = ", ".join(KNOWN_OBJECTIVES)
        first: dict[str, int] = {}
        for i, objective in enumerate(self.objectives):
            if objective.name in first:
                raise ValueError(f"objectives.{i}.name: {objective.name!r} is listed twice "
                                 f"(also objectives.{first[objective.name]})")
            first[objective.name] = i
            if objective.name not in KNOWN_OBJECTIVES and not self.uses_plugin:
                raise ValueError(f"objectives.{i}.name: {objective.name!r} is not a known "
                                 f"objective ({known}); only a 'module:name' accuracy "
                                 "evaluator defines others")
        for name in self.constraints:
            if name not in KNOWN_OBJECTIVES and not self.uses_plugin:
                raise ValueError(f"constraints.{name}: {name!r} is not a known objective "
                                 f"({known})")
        for part in ("distill", "options"):
            _check_json(f"accuracy.{part}", getattr(self.accuracy, part))
        # A built-in evaluator scores at its teacher's scale: every trial would fail.
        conflict = scale_conflict(self.scale, self.accuracy.teacher)
        if conflict and self.needs_accuracy and not self.uses_plugin:
            raise ValueError(conflict)
        self._check_photo()
        return self

    def _check_photo(self) -> None:
        """``photo_latency_ms`` needs a photo, and tiles must overlap by less than a tile."""
        if self.pipeline.photo is None:
            asked = [f"objectives.{i}.name" for i, o in enumerate(self.objectives)
                     if o.name == PHOTO_LATENCY_OBJECTIVE]
            asked += [f"constraints.{n}" for n in self.constraints if n == PHOTO_LATENCY_OBJECTIVE]
            if asked:
                raise ValueError(f"{asked[0]}: {PHOTO_LATENCY_OBJECTIVE} needs pipeline.photo, "
                                 "the photo's [width, height] in px (e.g. [4000, 3000])")
        overlap = self.pipeline.tile_overlap
        if overlap is not None:
            tile = self.tile_size
            if overlap >= tile:
                raise ValueError(f"pipeline.tile_overlap: {overlap} px is not less than a tile "
                                 f"({tile} px, the image size at {self.scale})")

    @property
    def latency_scale(self) -> str:
        """The scale latency is measured and predicted at: the study's, at
        ``pipeline.image_size`` when it is set (``mini@256``)."""
        return spaces.scale_at(self.scale, self.pipeline.image_size)

    @property
    def tile_size(self) -> int:
        """The side of one tile of ``pipeline.photo``, in px: ``pipeline.image_size``, or the
        image size of the space's members at the study's scale."""
        return spaces.to_scale(self.load_space().base, self.latency_scale).image_size


# -- helpers ---------------------------------------------------------------------------------
#: Sections that hold several items: the model of one item.
_ITEMS: dict[str, type[BaseModel]] = {"objectives": Objective, "constraints": Bound}


def _space_path(space: str, base_dir: str | Path | None) -> Path | None:
    """The space file ``space`` names (:func:`find_beside`)."""
    return find_beside(space, base_dir, Path.is_file)


def _check_json(where: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: not a JSON document ({error})") from None
