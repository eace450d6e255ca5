"""Profilers (local ONNX Runtime, remote device agent), block latency tables, learned predictor,
and the latency store that is the one home of a device's measurements, predictors and
reference timings."""

from nanosd_nas.latency_models._bench import bench_predictor
from nanosd_nas.latency_models._bench_transfer import (
    TRANSFER_KS,
    TRANSFER_TARGETS,
    bench_transfer,
    transfer_targets,
)
from nanosd_nas.latency_models._calibrate import (
    Calibration,
    CalibrationPlan,
    ProgressCallback,
    calibrate,
)
from nanosd_nas.latency_models._devices import (
    BUILTIN_DEVICES,
    DEVICE_KINDS,
    KIND_PRECISIONS,
    LOCAL_CPU,
    Device,
    DeviceError,
    DeviceExists,
    DeviceNotFound,
    DeviceRegistry,
    profiler_for,
)
from nanosd_nas.latency_models._features import FEATURES, SpaceFeatures
from nanosd_nas.latency_models._file_store import (
    FileLatencyStore,
    MeasurementStore,
    MeasurementStoreError,
    predictor_folder,
)
from nanosd_nas.latency_models._files import HOME_ENV, project_home, write_json_atomic
from nanosd_nas.latency_models._load_or_calibrate import (
    PredictorOutcome,
    load_or_calibrate,
    load_predictor,
    require_usable,
)
from nanosd_nas.latency_models._measure import (
    ComponentMeasurer,
    measure_components,
    statistic_of,
)
from nanosd_nas.latency_models._precision import PRECISIONS, ConversionError, check_precision
from nanosd_nas.latency_models._predictor import (
    LatencyPredictor,
    Prediction,
    PredictorArtifact,
    pipeline_latency,
)
from nanosd_nas.latency_models._profiler import LocalProfiler, Profiler
from nanosd_nas.latency_models._records import (
    MEASUREMENT_KINDS,
    DamagedArtifact,
    ForeignPredictor,
    LatencyInputError,
    MeasurementRecord,
    PredictorIdentity,
    PredictorNotFound,
    ReferenceStore,
    ReferenceTiming,
    StoredPredictor,
    check_device_name,
    host_fingerprint,
)
from nanosd_nas.latency_models._remote import RemoteProfiler
from nanosd_nas.latency_models._store import LatencyStore
from nanosd_nas.latency_models._table import BlockLatencyTable
from nanosd_nas.latency_models._torch_profiler import TORCH_DTYPES, TORCH_TARGETS, TorchProfiler
from nanosd_nas.latency_models._transfer import transfer_calibrate
from nanosd_nas.latency_models.agent import (
    AgentBadRequest,
    AgentError,
    AgentInvalidModel,
    DeviceUnreachable,
    InvalidModel,
    InvalidParameter,
    LatencyStats,
    Protocol,
)

__all__ = [
    "FEATURES", "BlockLatencyTable", "Calibration", "CalibrationPlan", "ComponentMeasurer",
    "LatencyPredictor", "Prediction", "PredictorArtifact", "PredictorNotFound",
    "ProgressCallback", "SpaceFeatures", "bench_predictor", "calibrate", "load_predictor",
    "measure_components", "pipeline_latency", "statistic_of", "predictor_folder",
    "BUILTIN_DEVICES", "DEVICE_KINDS", "KIND_PRECISIONS", "PRECISIONS", "TORCH_DTYPES",
    "TORCH_TARGETS", "TorchProfiler", "check_precision", "HOME_ENV", "TRANSFER_KS",
    "TRANSFER_TARGETS", "bench_transfer", "transfer_calibrate", "transfer_targets", "LOCAL_CPU",
    "MEASUREMENT_KINDS",
    "AgentBadRequest", "AgentError", "AgentInvalidModel", "ConversionError", "DamagedArtifact",
    "Device", "DeviceError", "DeviceExists", "DeviceNotFound", "DeviceRegistry",
    "DeviceUnreachable",
    "FileLatencyStore", "ForeignPredictor", "InvalidModel", "InvalidParameter",
    "LatencyInputError", "LatencyStats", "LatencyStore", "LocalProfiler", "MeasurementRecord",
    "MeasurementStore", "MeasurementStoreError", "PredictorIdentity", "PredictorOutcome",
    "Profiler", "Protocol", "ReferenceStore", "ReferenceTiming", "RemoteProfiler",
    "StoredPredictor", "check_device_name", "host_fingerprint", "load_or_calibrate",
    "profiler_for", "project_home", "require_usable", "write_json_atomic",
]
