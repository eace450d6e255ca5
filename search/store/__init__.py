"""The service's database (SQLAlchemy 2 + Alembic): devices, architectures, predictors,
measurements, studies, trials with provenance, Pareto fronts, hypervolume history and values
rescored for other devices.
:class:`Store` is also the database backend of :class:`latency_models.LatencyStore`.

SQLite by default (``nanosd-nas.db`` in the project home), PostgreSQL with
``postgresql+psycopg://...`` from ``NANOSD_NAS_DATABASE_URL`` or an explicit URL. Optuna's RDB
storage can share the database: every table here is named ``nas_*`` and the migrations keep
their own version table (:data:`VERSION_TABLE`).

    store = Store.open(url, upgrade=True)
    store.create_study("phone-sr", config)
    trial = store.add_trial("phone-sr", params={"E1": 0}, spec_id=store.upsert_architecture(spec))
    store.complete_trial(trial.id, {"latency_ms": ObjectiveValue(21.5, "predicted", p.id)})
"""

from nanosd_nas.search.store._errors import (
    ArchitectureNotFound,
    SchemaOutdated,
    StoreError,
    StoreUnavailable,
    StudyExists,
    StudyNotFound,
    StudyStateError,
    TrialNotFound,
    TrialStateError,
    UnknownDevice,
)
from nanosd_nas.search.store._migrate import VERSION_TABLE
from nanosd_nas.search.store._models import (
    MEASUREMENT_KINDS,
    PROVENANCES,
    STUDY_STATUSES,
    TRIAL_STATES,
)
from nanosd_nas.search.store._records import (
    DeviceRecord,
    HypervolumePoint,
    ObjectiveValue,
    PredictorRecord,
    RescoredValue,
    StudyRecord,
    TrialRecord,
    TrialValue,
    check_study_name,
    json_details,
)
from nanosd_nas.search.store._repository import Store
from nanosd_nas.search.store._trials import STALE_TRIAL_REASON
from nanosd_nas.search.store._url import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_FILE,
    default_database_url,
    redact,
    resolve_database_url,
)

__all__ = [
    "DATABASE_URL_ENV", "DEFAULT_DATABASE_FILE", "MEASUREMENT_KINDS", "PROVENANCES",
    "STALE_TRIAL_REASON", "STUDY_STATUSES", "TRIAL_STATES", "VERSION_TABLE",
    "ArchitectureNotFound", "DeviceRecord", "HypervolumePoint", "ObjectiveValue",
    "PredictorRecord", "RescoredValue", "SchemaOutdated", "Store", "StoreError", "StoreUnavailable",
    "StudyExists", "StudyNotFound", "StudyRecord", "StudyStateError", "TrialNotFound",
    "TrialRecord", "TrialStateError", "TrialValue", "UnknownDevice", "check_study_name",
    "default_database_url", "json_details", "redact", "resolve_database_url",
]
