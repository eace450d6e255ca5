"""The latency store: the one home of a device's latency facts (measurements, predictors,
reference timings), with a file backend here and a database backend in ``search.store``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from nanosd_nas.latency_models._predictor import LatencyPredictor
from nanosd_nas.latency_models._records import (
    MeasurementRecord,
    ReferenceTiming,
    StoredPredictor,
)
from nanosd_nas.spaces import Space


class LatencyStore(ABC):
    """Keeps the latency facts of devices: measurements, predictors and reference timings.

    The contract every backend keeps (one test suite, ``tests/latency_models/
    test_latency_store_contract.py``, holds each backend to it):

    - **Whole or nothing.** A reader never sees half a measurement, half a batch of
      measurements, or a predictor whose parts come from two saves. A failed write stores
      nothing.
    - **Given back as given.** Records read back equal the records written (fingerprints,
      times and all); a predictor loaded back predicts exactly as the one saved.
    - **No judgement.** A store keeps what it is given, whichever host made it: deciding
      whether a predictor or reference timing fits this host is
      :func:`latency_models.load_or_calibrate`'s (and the profiler's) job, from the identities
      a store hands out.
    - **Damage is named.** A stored artifact that cannot be read back whole raises
      :class:`DamagedArtifact` naming where it is; it is never half-used.
    - **Devices.** A store may refuse facts of a device it was not told about: the database
      store knows the devices stored with ``Store.upsert_device`` (and raises
      ``UnknownDevice``); the file store takes any valid device name.
    - **Threads and processes.** Every method may be called from several threads and
      processes at once; each call is its own transaction.

    Records are plain frozen values (:class:`MeasurementRecord`, :class:`StoredPredictor`,
    :class:`ReferenceTiming`); nothing handed out is tied to the store.
    """

    # -- measurements ---------------------------------------------------------------------
    @abstractmethod
    def add_measurements(self, records: Iterable[MeasurementRecord]) -> int:
        """Store ``records`` together, all or none (a file store keeps each device's records
        in a file of its own, and writes each device's together); returns how many. An
        iterable that raises half-way stores nothing."""

    @abstractmethod
    def measurements(self, device: str | None = None, *, kind: str | None = None,
                     key: str | None = None) -> list[MeasurementRecord]:
        """Stored measurements, optionally of one device, kind (``model`` or ``block``) or key:
        each device's in the order added (devices in no promised order)."""

    # -- predictors -----------------------------------------------------------------------
    @abstractmethod
    def save_predictor(self, predictor: LatencyPredictor) -> StoredPredictor:
        """Store ``predictor`` whole; from now on it is the one :meth:`find_predictor` gives
        for its device, space and scale (a database keeps the earlier ones, which trial
        values may cite; a file store replaces them)."""

    @abstractmethod
    def find_predictor(self, device: str, space: Space, scale: str) -> StoredPredictor | None:
        """The newest predictor of ``device`` for ``space`` (by name and digest) at ``scale``,
        without its model; ``None`` if there is none.

        Raises:
            DamagedArtifact: its identity cannot be read.
        """

    @abstractmethod
    def list_predictors(self, device: str | None = None) -> list[StoredPredictor]:
        """The predictors :meth:`find_predictor` would give (the newest of each device, space
        and scale), optionally of one device, oldest first."""

    @abstractmethod
    def load_predictor(self, stored: StoredPredictor) -> LatencyPredictor:
        """The whole predictor ``stored`` names.

        Raises:
            PredictorNotFound: it is no longer stored.
            DamagedArtifact: it cannot be read back whole.
        """

    # -- reference timings ----------------------------------------------------------------
    @abstractmethod
    def save_reference(self, timing: ReferenceTiming) -> None:
        """Store ``timing`` as its device's reference timing, replacing any other."""

    @abstractmethod
    def load_reference(self, device: str) -> ReferenceTiming | None:
        """The stored reference timing of ``device`` (with its ``location``), whatever host
        it was timed on; ``None`` if there is none.

        Raises:
            DamagedArtifact: it cannot be read.
        """
