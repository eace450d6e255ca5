"""The study's device during a run: measuring a trial's model on it, and telling a device that
went away from a model it could not run."""

from __future__ import annotations

from nanosd_nas.latency_models import (
    AgentError,
    DeviceRegistry,
    Profiler,
    measure_components,
    pipeline_latency,
    profiler_for,
    statistic_of,
)
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.run._trials import StartedTrial, TrialLifecycle, one_line
from nanosd_nas.search.store import Store
from nanosd_nas.spaces import ArchSpec, at_image_size

#: How the fail reason of a failed measurement begins.
DEVICE_FAILED = "measuring it on device"
#: Consecutive failed measurements on the study's device before the run stops: the device is
#: taken for gone rather than failing the rest of the budget one trial at a time.
MAX_DEVICE_FAILURES = 3


class DeviceLost(ConnectionError):
    """The study's device stopped answering measurements (its agent killed, the network down)."""


class StudyDevice:
    """The device a study measures on.

    Args:
        store: the service's database; every whole measurement is stored there.
        study: the study's name.
        config: the study.
    """

    def __init__(self, *, store: Store, study: str, config: StudyConfig) -> None:
        self.store = store
        self.study = study
        self.config = config
        self.name = config.device
        #: Measurements that failed on the device in a row.
        self.failures = 0
        self._profiler: Profiler | None = None

    @property
    def profiler(self) -> Profiler:
        """The device's profiler, made once per run (for a local device, making it reads and
        checks the reference timing)."""
        if self._profiler is None:
            self._profiler = profiler_for(self.name, store=self.store)
        return self._profiler

    def is_local(self) -> bool:
        """Whether the device is this host (then nothing else may run while it measures)."""
        return DeviceRegistry().get(self.name).kind in ("local", "torch")

    def measure(self, spec: ArchSpec) -> float:
        """The pipeline latency of ``spec`` measured on the device, in its statistic. The
        model's records are stored only once every component is measured."""
        size = self.config.pipeline.image_size
        if size is not None:  # the tile latency is measured at (the weights are the same)
            spec = at_image_size(spec, size)
        measured = measure_components(spec, self.profiler, scale=self.config.latency_scale,
                                      store=self.store)
        per = {c: statistic_of(stats, self.profiler.statistic) for c, stats in measured.items()}
        return float(pipeline_latency(per, self.config.pipeline.steps))

    def is_gone(self, error: Exception) -> bool:
        """The device, not the model, failed the measurement: it did not answer, or it failed
        with a 5xx and does not answer now either (a model it cannot run fails with a 5xx
        while the agent stays up)."""
        if isinstance(error, ConnectionError | TimeoutError):
            return True
        if not (isinstance(error, AgentError) and error.status >= 500):
            return False
        try:
            self.profiler.fingerprint()
        except (ConnectionError, TimeoutError, AgentError):
            return True
        return False

    def measured(self) -> None:
        """A measurement succeeded: the run of failures is over."""
        self.failures = 0

    def failed(self, trials: TrialLifecycle, started: StartedTrial, error: Exception) -> bool:
        """Fail a trial whose measurement raised; True if it is asked again.

        A model the device refused or could not run fails for good; a device that went away
        (its agent killed, the network down) fails the trial and asks it again, and
        :data:`MAX_DEVICE_FAILURES` of those in a row stop the run; a refused token stops it
        at once. Nothing of the failed measurement is stored.

        Raises:
            AgentError: the device refused the token.
            DeviceLost: the device failed too many measurements in a row.
        """
        reason = f"{DEVICE_FAILED} {self.name!r} failed: {one_line(error)}"
        if isinstance(error, AgentError) and error.status in (401, 403):
            raise error  # the device's token: nothing any trial can do about it
        if not self.is_gone(error):  # the device answers: the model was the trouble
            return trials.fail(started, reason)
        self.failures += 1
        # A run stops after MAX_DEVICE_FAILURES in a row: a candidate cut off that often (a
        # run's worth) is failed for good, in case it is what brings the agent down.
        trials.fail(started, reason, again=trials.may_ask_again(started.record, DEVICE_FAILED,
                                                                 MAX_DEVICE_FAILURES))
        if self.failures >= MAX_DEVICE_FAILURES:
            raise DeviceLost(
                f"device {self.name!r} failed {self.failures} measurements in a row (last: "
                f"{error}); completed trials are kept: run 'nanosd-nas study run "
                f"{self.study}' again once the device answers")
        return True
