"""Teachers, calibration data and the NanoSD block bank (feature-wise stage distillation).

Importing this package loads PyTorch and diffusers.
"""

from __future__ import annotations

from nanosd_nas.search.distill._bank import (
    BANK_FORMAT,
    BankError,
    BlockBank,
    BuildReport,
    EntryInfo,
)
from nanosd_nas.search.distill._data import (
    CalibrationData,
    CalibrationDataError,
    CalibrationSet,
    calibration_data,
    image_pool,
    sd15_noise_schedule,
)
from nanosd_nas.search.distill._distill import DistillSettings
from nanosd_nas.search.distill._stages import (
    StageFeatures,
    StageRef,
    Trace,
    trace,
    trace_batched,
    unet_stages,
)
from nanosd_nas.search.distill._teacher import (
    DEMO_SEED,
    DEMO_TEACHER,
    Teacher,
    TeacherError,
    load_teacher,
)
from nanosd_nas.search.distill._variants import (
    VAE_PARTS,
    StageVariant,
    space_variants,
    stage_variants,
)

__all__ = [
    "BANK_FORMAT", "DEMO_SEED", "DEMO_TEACHER", "VAE_PARTS", "BankError", "BlockBank",
    "BuildReport", "CalibrationData", "CalibrationDataError", "CalibrationSet", "DistillSettings",
    "EntryInfo", "StageFeatures", "StageRef", "StageVariant", "Teacher", "TeacherError", "Trace",
    "calibration_data", "image_pool", "load_teacher", "sd15_noise_schedule", "space_variants",
    "stage_variants", "trace", "trace_batched", "unet_stages",
]
