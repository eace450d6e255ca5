"""Measuring a spec: each component exported to ONNX and timed on a device, the same way for
calibration, benchmarks, the command line and a study's verification."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models._records import LatencyInputError, MeasurementRecord
from nanosd_nas.latency_models._store import LatencyStore
from nanosd_nas.latency_models.agent import LatencyStats
from nanosd_nas.spaces import COMPONENTS, ArchSpec, Block, decompose


def with_scale(stats: LatencyStats, scale: str) -> LatencyStats:
    """``stats`` with the pipeline scale added to its device fingerprint."""
    return replace(stats, fingerprint={**stats.fingerprint, "scale": scale})


def statistic_of(stats: LatencyStats, statistic: str) -> float:
    """One statistic of a measurement; ``ValueError`` if the device did not report it."""
    value = getattr(stats, statistic, None)
    if value is None:
        raise LatencyInputError(f"the device did not report {statistic!r}; choose another "
                                "statistic")
    return float(value)


def component_key(blocks: list[Block], component: str) -> str:
    """Identity of a component's graph: the hash of its blocks' keys and paths in order."""
    text = "|".join(f"{b.path}={b.key}" for b in blocks if b.component == component)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure_components(
    spec: ArchSpec, profiler: Profiler, *, scale: str, store: LatencyStore | None = None,
    components: Iterable[str] = COMPONENTS, check_output: bool = True,
) -> dict[str, LatencyStats]:
    """Build ``spec``, export each of ``components`` to ONNX and measure it on ``profiler``'s
    device, one at a time.

    Every measurement is kept in ``store`` (kind ``model``, keyed by the spec id, with
    ``scale`` in its fingerprint), all of them together once all succeeded: a failed
    measurement raises and stores nothing.

    Args:
        spec: the architecture.
        profiler: the device's profiler.
        scale: the scale ``spec`` is at (``mini``, ``full``), recorded with each measurement.
        store: where the measurements are kept; ``None`` keeps none.
        components: which components (default: all three).
        check_output: record a converted model's output SNR against FP32 in the profiler's
            ``output_snr`` (see :meth:`Profiler.measure_module`).
    """
    from nanosd_nas.spaces import build

    wanted = list(components)
    unknown = [c for c in wanted if c not in COMPONENTS]
    if unknown:
        raise LatencyInputError(f"component {unknown[0]!r} is not one of {', '.join(COMPONENTS)}")
    model = build(spec)
    inputs, modules = model.example_inputs(), model.components()
    measured = {c: with_scale(profiler.measure_module(modules[c], inputs[c], c,
                                                      check_output=check_output), scale)
                for c in wanted}
    if store is not None:
        store.add_measurements(
            MeasurementRecord(device=profiler.device, kind="model", key=spec.spec_id,
                              component=c, scale=scale, stats=stats)
            for c, stats in measured.items())
    return measured


@dataclass
class ComponentMeasurer:
    """:func:`measure_components` for many specs, each distinct component measured once
    (a space whose VAE is fixed measures its VAE once). Converted models' output SNR is
    checked only with ``check_output`` (calibration reads latencies alone)."""

    profiler: Profiler
    statistic: str
    scale: str
    store: LatencyStore | None = None
    measured: dict[str, LatencyStats] = field(default_factory=dict)
    check_output: bool = False

    def measure(self, spec: ArchSpec) -> dict[str, float]:
        """The spec's latency per component (ms, in the chosen statistic)."""
        blocks = decompose(spec)
        keys = {c: component_key(blocks, c) for c in COMPONENTS}
        missing = [c for c in COMPONENTS if keys[c] not in self.measured]
        if missing:
            fresh = measure_components(spec, self.profiler, scale=self.scale, store=self.store,
                                       components=missing, check_output=self.check_output)
            self.measured.update({keys[c]: stats for c, stats in fresh.items()})
        return {c: statistic_of(self.measured[keys[c]], self.statistic) for c in COMPONENTS}
