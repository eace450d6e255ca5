"""Teachers, calibration data and the NanoSD block bank (feature-wise stage distillation).

Calibration data is made from the user's pictures (or the pool shipped with scikit-image) and a
text condition (the user's context file, the teacher's own, or the demo's synthetic one).

Importing this package loads PyTorch and diffusers.
"""

from __future__ import annotations

from nanosd_nas.search.distill._assembly import Origins
from nanosd_nas.search.distill._bank import (
    BANK_FORMAT,
    BankError,
    BlockBank,
    BuildReport,
    EntryInfo,
)
from nanosd_nas.search.distill._bench_distill import bench_distill, seeded_teacher
from nanosd_nas.search.distill._context import (
    CONTEXT_FILE,
    ContextError,
    demo_context,
    load_context,
)
from nanosd_nas.search.distill._data import (
    SHIPPED_POOL_ID,
    CalibrationData,
    CalibrationPlan,
    CalibrationSet,
    calibration_data,
    calibration_plan,
    data_identity,
    sd15_noise_schedule,
)
from nanosd_nas.search.distill._distill import DistillSettings
from nanosd_nas.search.distill._images import (
    CalibrationDataError,
    Crop,
    ImagePool,
    ImageSource,
    image_pool,
)
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
    "Origins",
    "bench_distill", "seeded_teacher",
    "BANK_FORMAT", "CONTEXT_FILE", "DEMO_SEED", "DEMO_TEACHER", "SHIPPED_POOL_ID", "VAE_PARTS",
    "BankError", "BlockBank", "BuildReport", "CalibrationData", "CalibrationDataError",
    "CalibrationPlan", "CalibrationSet", "ContextError", "Crop", "DistillSettings", "EntryInfo",
    "ImagePool", "ImageSource", "StageFeatures", "StageRef", "StageVariant", "Teacher",
    "TeacherError", "Trace", "calibration_data", "calibration_plan", "data_identity",
    "demo_context", "image_pool", "load_context", "load_teacher", "sd15_noise_schedule",
    "space_variants", "stage_variants", "trace", "trace_batched", "unet_stages",
]
