"""Profilers (local ONNX Runtime, remote device agent), block latency tables, learned predictor."""

from nanosd_nas.latency_models._bench import bench_predictor
from nanosd_nas.latency_models._calibrate import (
    Calibration,
    CalibrationPlan,
    ProgressCallback,
    calibrate,
)
from nanosd_nas.latency_models._devices import (
    BUILTIN_DEVICES,
    DEVICE_KINDS,
    LOCAL_CPU,
    Device,
    DeviceError,
    DeviceExists,
    DeviceNotFound,
    DeviceRegistry,
    check_device_name,
    profiler_for,
)
from nanosd_nas.latency_models._features import FEATURES, SpaceFeatures
from nanosd_nas.latency_models._files import HOME_ENV, project_home, write_json_atomic
from nanosd_nas.latency_models._predictor import (
    LatencyPredictor,
    Prediction,
    PredictorNotFound,
    device_predictors,
    load_predictor,
    pipeline_latency,
    predictor_folder,
)
from nanosd_nas.latency_models._profiler import LocalProfiler, Profiler
from nanosd_nas.latency_models._remote import RemoteProfiler
from nanosd_nas.latency_models._store import (
    MEASUREMENT_KINDS,
    MeasurementRecord,
    MeasurementStore,
    MeasurementStoreError,
)
from nanosd_nas.latency_models._table import BlockLatencyTable
from nanosd_nas.latency_models.agent import (
    AgentBadRequest,
    AgentError,
    AgentInvalidModel,
    DeviceUnreachable,
    InvalidModel,
    LatencyStats,
    Protocol,
)

__all__ = [
    "FEATURES", "BlockLatencyTable", "Calibration", "CalibrationPlan", "LatencyPredictor",
    "Prediction", "PredictorNotFound", "ProgressCallback", "SpaceFeatures", "bench_predictor",
    "calibrate", "device_predictors", "load_predictor", "pipeline_latency", "predictor_folder",
    "BUILTIN_DEVICES", "DEVICE_KINDS", "HOME_ENV", "LOCAL_CPU", "MEASUREMENT_KINDS",
    "AgentBadRequest", "AgentError", "AgentInvalidModel", "Device", "DeviceError", "DeviceExists",
    "DeviceNotFound", "DeviceRegistry", "DeviceUnreachable", "InvalidModel", "LatencyStats",
    "LocalProfiler", "MeasurementRecord", "MeasurementStore", "MeasurementStoreError",
    "Profiler", "Protocol", "RemoteProfiler", "check_device_name", "profiler_for",
    "project_home", "write_json_atomic",
]
