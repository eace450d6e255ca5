"""The one way to get a device's predictor: load it from the store if it was made on this host,
else calibrate, save and register it; and say which, and why."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from nanosd_nas.latency_models._calibrate import (
    Calibration,
    CalibrationPlan,
    ProgressCallback,
    calibrate,
)
from nanosd_nas.latency_models._devices import DeviceRegistry
from nanosd_nas.latency_models._file_store import FileLatencyStore
from nanosd_nas.latency_models._predictor import LatencyPredictor
from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models._records import (
    DamagedArtifact,
    ForeignPredictor,
    PredictorNotFound,
    StoredPredictor,
    fingerprint_difference,
)
from nanosd_nas.latency_models._store import LatencyStore
from nanosd_nas.latency_models._transfer import transfer_calibrate
from nanosd_nas.spaces import Space

logger = logging.getLogger(__name__)

#: What :func:`load_or_calibrate` did.
ACTIONS = ("loaded", "calibrated", "recalibrated")


@dataclass(frozen=True)
class PredictorOutcome:
    """The predictor :func:`load_or_calibrate` hands back, and what it did to get it.

    Attributes:
        predictor: the device's predictor for the space and scale, made on this host.
        stored: where it is stored (with the database's id, which predicted values cite).
        action: ``loaded``, ``calibrated`` (there was none) or ``recalibrated`` (there was
            one that could not be used, or a new one was asked for).
        reason: why it was (re)calibrated, one line; empty when loaded.
        calibration: what the calibration measured; ``None`` when loaded.
        notices: lines the profiler had for the user (a foreign reference timing replaced).
        transferred_from: the device whose predictor was transferred, when it was made by
            few-shot transfer rather than calibrated from scratch.
    """

    predictor: LatencyPredictor
    stored: StoredPredictor
    action: str
    reason: str = ""
    calibration: Calibration | None = None
    notices: tuple[str, ...] = ()
    transferred_from: str | None = None

    @property
    def message(self) -> str:
        """One line for the user: what was done, and why."""
        identity = self.predictor.identity
        what = f"{identity.device} for {identity.space} at {identity.scale}"
        if self.action == "loaded":
            return f"loaded the predictor of {what} from {self.stored.location}"
        seconds = self.calibration.seconds if self.calibration else 0.0
        why = f" ({self.reason})" if self.reason else ""
        how = f" by transfer from {self.transferred_from}" if self.transferred_from else ""
        return (f"{self.action} {what}{how} in {seconds:.1f} s{why}; saved to "
                f"{self.stored.location}")


def unusable_reason(stored: StoredPredictor, profiler: Profiler, statistic: str) -> str | None:
    """Why the predictor ``stored`` may not be used with ``profiler`` (one line, naming it and
    both fingerprints), or ``None`` when it may."""
    identity = stored.identity
    here = profiler.host_fingerprint()
    if identity.host_fingerprint != here:
        return (f"the predictor at {stored.location} was "
                f"{fingerprint_difference(identity.host_fingerprint, here)}")
    if identity.statistic != statistic:
        return (f"the predictor at {stored.location} predicts {identity.statistic}, this "
                f"calibration asks for {statistic}")
    return None


def load_or_calibrate(
    space: Space, scale: str, profiler: Profiler, *, store: LatencyStore,
    plan: CalibrationPlan | None = None, on_progress: ProgressCallback | None = None,
    recalibrate: bool = False,
    exclusive: Callable[[], AbstractContextManager[object]] | None = None,
    source: LatencyPredictor | None = None, members: int = 10,
) -> PredictorOutcome:
    """The predictor of ``profiler``'s device for ``space`` at ``scale``.

    Loaded from ``store`` when it holds one made under this host's fingerprint in the
    statistic ``plan`` asks for (the profiler's own by default). Otherwise, or with
    ``recalibrate``, the device is calibrated with ``plan`` (every measurement kept in
    ``store``) and the new predictor saved there, which registers it (a database store lists
    it for the dashboard at once). A foreign, damaged or other-statistic predictor is named
    in :attr:`PredictorOutcome.reason`, never used.

    Args:
        space: the search space.
        scale: ``full`` or ``mini``.
        profiler: the device's profiler (give it ``store`` for its reference timing too).
        store: the home of the device's latency facts.
        plan: how to calibrate, if it comes to that.
        on_progress: ``on_progress(phase, done, total)`` while calibrating.
        recalibrate: calibrate even if a usable predictor is stored.
        exclusive: a lock shared by every process that may calibrate this device for this
            space (``Store.exclusive``), held while calibrating; once it is held the store is
            looked at again, so that what another process calibrated meanwhile is loaded.
        source: another device's predictor for the same space and scale: when it comes to
            calibrating, transfer it with the device's block table and ``members`` measured
            members (:func:`transfer_calibrate`) instead of calibrating from scratch.
        members: the members a transfer measures (``plan.held_out`` more are held out).

    Raises:
        LatencyInputError: the plan does not fit the space or the device.
        latency_models.agent.DeviceUnreachable: a remote device does not answer.
    """
    plan = plan or CalibrationPlan()
    statistic = plan.statistic or profiler.statistic
    found = _usable(store, space, scale, profiler, statistic, recalibrate)
    if isinstance(found, PredictorOutcome):
        return found
    with exclusive() if exclusive is not None else nullcontext():
        if exclusive is not None and not recalibrate:
            again = _usable(store, space, scale, profiler, statistic, recalibrate)
            if isinstance(again, PredictorOutcome):
                return again
        if found:
            logger.warning("%s: calibrating %s for %s at %s", found, profiler.device,
                           space.name, scale)
        if source is None:
            calibration = calibrate(space, scale, profiler,
                                    plan=replace(plan, statistic=statistic), store=store,
                                    on_progress=on_progress)
        else:
            calibration = transfer_calibrate(space, scale, profiler, source, members=members,
                                             held_out=plan.held_out, seed=plan.seed,
                                             store=store, on_progress=on_progress)
        saved = store.save_predictor(calibration.predictor)
    return PredictorOutcome(
        predictor=calibration.predictor, stored=saved,
        action="recalibrated" if found else "calibrated", reason=found,
        transferred_from=None if source is None else source.device,
        calibration=calibration, notices=tuple(profiler.notices()))


def _usable(store: LatencyStore, space: Space, scale: str, profiler: Profiler, statistic: str,
            recalibrate: bool) -> PredictorOutcome | str:
    """The stored predictor, loaded, if it may be used; else why not (empty: there is none)."""
    try:
        stored = store.find_predictor(profiler.device, space, scale)
    except DamagedArtifact as error:
        return str(error)
    if stored is None:
        return ""
    if recalibrate:
        return f"asked to; it replaces the predictor at {stored.location}"
    why = unusable_reason(stored, profiler, statistic)
    if why is not None:
        return why
    try:
        predictor = store.load_predictor(stored)
    except (DamagedArtifact, PredictorNotFound) as error:
        return str(error)
    return PredictorOutcome(predictor=predictor, stored=stored, action="loaded",
                            notices=tuple(profiler.notices()))


def require_usable(stored: StoredPredictor, profiler: Profiler) -> None:
    """Refuse the predictor ``stored`` unless it was made under ``profiler``'s host
    fingerprint (for commands that use a predictor but do not calibrate).

    Raises:
        ForeignPredictor: naming it, both fingerprints and the command that calibrates again.
    """
    identity = stored.identity
    why = unusable_reason(stored, profiler, identity.statistic)
    if why is not None:
        raise ForeignPredictor(f"{why}; calibrate it here with 'nanosd-nas device calibrate "
                               f"{identity.device} --space {identity.space} --scale "
                               f"{identity.scale}'")


def load_predictor(device: str, space: Space, scale: str, *,
                   home: Path | str | None = None) -> LatencyPredictor:
    """The predictor of ``device`` for ``space`` at ``scale`` in the file store of the project
    home; a local device's must have been made under this host's fingerprint.

    Raises:
        PredictorNotFound: there is none; the message says how to make one.
        ForeignPredictor: (a :class:`PredictorNotFound`) it was made on another host.
        DamagedArtifact: it cannot be read back whole.
    """
    store = FileLatencyStore(home=home)
    stored = store.find_predictor(device, space, scale)
    if stored is None:
        raise PredictorNotFound(
            f"device {device!r} has no predictor for space {space.name!r} at scale {scale!r}; "
            f"run 'nanosd-nas device calibrate {device} --space {space.name} --scale {scale}'"
        )
    registered = DeviceRegistry(home=home).get(device)
    if registered.kind == "local":  # its fingerprint is this host's, known without measuring
        require_usable(stored, registered.profiler(home=home, store=store))
    return store.load_predictor(stored)
