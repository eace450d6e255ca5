"""The trained teacher: its data, its training recipe, its feature network, and the ground truth of
generation quality a student is measured by.

Importing this package loads PyTorch, diffusers and torchmetrics.
"""

from __future__ import annotations

from nanosd_nas.search.teacher._dataset import CLASSES, heldout_set, training_batch
from nanosd_nas.search.teacher._features import (
    FEATURES_FILE,
    NUM_FEATURES,
    FeatureNet,
    FeatureNetError,
    load_features,
    save_features,
)
from nanosd_nas.search.teacher._grid import GRID_GAP, GridError, sample_grid, save_grid
from nanosd_nas.search.teacher._make import TrainedTeacher, train_teacher
from nanosd_nas.search.teacher._recipe import Recipe, TrainingError
from nanosd_nas.search.teacher._sampling import (
    DEFAULT_GUIDANCE,
    SAMPLERS,
    SD15_SCHEDULER,
    STEP_SETTINGS,
    SamplingError,
    initial_noise,
    sample,
    scheduler,
)
from nanosd_nas.search.teacher._truth import (
    IDENTICAL_DB,
    StepFigures,
    TeacherLike,
    TruthError,
    TruthReference,
    TruthReport,
    TruthSettings,
    UnknownClassError,
    check_student,
    class_rows,
)

__all__ = [
    "CLASSES", "Recipe", "TrainedTeacher", "TrainingError", "heldout_set", "train_teacher",
    "training_batch",
    "DEFAULT_GUIDANCE", "FEATURES_FILE", "GRID_GAP", "IDENTICAL_DB", "NUM_FEATURES", "SAMPLERS",
    "SD15_SCHEDULER", "STEP_SETTINGS",
    "FeatureNet", "FeatureNetError", "GridError", "SamplingError", "StepFigures", "TeacherLike",
    "TruthError", "TruthReference", "TruthReport", "TruthSettings", "UnknownClassError",
    "check_student", "class_rows", "initial_noise", "load_features", "sample", "sample_grid",
    "save_features", "save_grid", "scheduler",
]
