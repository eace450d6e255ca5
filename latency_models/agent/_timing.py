"""The measurement protocol, shared by the local profiler and the device agent.

Needs only onnxruntime and numpy, so that the agent runs on an edge device without PyTorch.
Protocol: create the session (fixed intra-op threads, spinning off, sequential execution), run
``warmup`` times, then time ``runs`` single inferences with ``time.perf_counter``.
"""

from __future__ import annotations

import functools
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

#: The most elements the inputs of one model may have together (1 GiB of float32): a model or
#: a request that declares more would exhaust the device's memory before it ran once.
MAX_INPUT_ELEMENTS = 2**28


class InvalidParameter(ValueError):
    """A measurement or an agent client was asked for with a value it cannot take (protocol
    numbers, execution provider, input shapes, agent URL); the message shows the value."""


@dataclass(frozen=True)
class Protocol:
    """How a model is timed.

    Attributes:
        threads: ONNX Runtime intra-op threads.
        warmup: untimed runs after each session's creation.
        runs: timed runs, spread over ``sessions``.
        sessions: inference sessions the runs are split between, each created afresh and
            warmed up (at most one per run). A session's speed depends on how it was laid out
            in memory: on this project's 2-core host an INT8 U-Net's ratio to the reference
            varied 1.4% (median CV) between sessions created one after another, and 60 runs
            in three sessions repeated across rounds within 1.6% against 2.2% for 60 runs in
            one.
        provider: execution provider (``CPUExecutionProvider`` by default).
        graph_optimization: ONNX Runtime's graph optimisations (fusions, constant folding) on,
            as deployed; off measures the graph as exported.
    """

    threads: int = 1
    warmup: int = 5
    runs: int = 30
    provider: str = "CPUExecutionProvider"
    graph_optimization: bool = True
    sessions: int = 1

    def __post_init__(self) -> None:
        for name in ("threads", "runs", "sessions"):
            if getattr(self, name) < 1:
                raise InvalidParameter(f"{name}={getattr(self, name)} must be at least 1")
        if self.warmup < 0:
            raise InvalidParameter(f"warmup={self.warmup} must not be negative")


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics of one model on one device, in milliseconds.

    ``normalised_ms`` is set when the model was timed against a reference (see
    :class:`Reference`): the median ratio of paired runs, times the reference's nominal latency.
    """

    min_ms: float
    p10_ms: float
    median_ms: float
    p90_ms: float
    n: int
    fingerprint: dict[str, Any] = field(default_factory=dict)
    normalised_ms: float | None = None

    @classmethod
    def from_samples(cls, samples_ms: list[float], fingerprint: dict[str, Any],
                     normalised_ms: float | None = None) -> LatencyStats:
        a = np.asarray(samples_ms, dtype=np.float64)
        return cls(
            min_ms=float(a.min()), p10_ms=float(np.percentile(a, 10)),
            median_ms=float(np.median(a)), p90_ms=float(np.percentile(a, 90)), n=int(a.size),
            fingerprint=dict(fingerprint), normalised_ms=normalised_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> LatencyStats:
        return cls(**{k: document[k] for k in ("min_ms", "p10_ms", "median_ms", "p90_ms", "n")},
                   fingerprint=dict(document.get("fingerprint", {})),
                   normalised_ms=document.get("normalised_ms"))


#: The instruction-set extensions ONNX Runtime's CPU kernels choose between (x86 and Arm
#: names as ``/proc/cpuinfo`` spells them). Two hosts whose model names read the same (virtual
#: machines often show just "AMD EPYC") can differ here, and INT8 runs ~4x faster with VNNI.
KERNEL_ISA = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "sve", "sve2", "bf16",
)


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's entries in ``/proc/cpuinfo`` (empty where there is none), read
    once per process (every measurement's fingerprint asks). Not to be changed by callers."""
    entries: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:  # noqa: PTH123 - no pathlib needed on device
            for line in cpuinfo:
                if not line.strip():
                    if entries:
                        break
                    continue
                key, _, value = line.partition(":")
                entries.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return entries


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what the platform says)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_identity() -> dict[str, str]:
    """The CPU as a fingerprint records it: ``cpu`` (:func:`cpu_model`) and what tells two
    CPUs of one model name apart, ``cpu_id`` (vendor, family and model numbers, or Arm's
    implementer and part) and ``cpu_isa`` (the :data:`KERNEL_ISA` extensions present), these
    two only where ``/proc/cpuinfo`` says them."""
    entries = _cpuinfo()
    identity = {"cpu": cpu_model()}
    if all(k in entries for k in ("vendor_id", "cpu family", "model")):
        identity["cpu_id"] = (f"{entries['vendor_id']} family {entries['cpu family']} "
                              f"model {entries['model']}")
    elif all(k in entries for k in ("CPU implementer", "CPU part")):
        identity["cpu_id"] = (f"arm implementer {entries['CPU implementer']} "
                              f"part {entries['CPU part']}")
    flags = set((entries.get("flags") or entries.get("Features") or "").split())
    isa = " ".join(f for f in KERNEL_ISA if f in flags)
    if isa:
        identity["cpu_isa"] = isa
    return identity


def fingerprint(protocol: Protocol) -> dict[str, Any]:
    """What a figure was measured on: CPU (model name, identity, kernel ISA), runtime,
    provider, threads."""
    info: dict[str, Any] = {
        **cpu_identity(),
        "machine": platform.machine(),
        "runtime": f"onnxruntime {ort.__version__}",
        "provider": protocol.provider,
        "threads": protocol.threads,
    }
    if not protocol.graph_optimization:  # named only when off: older figures keep their own
        info["graph_optimization"] = False
    return info


class InvalidModel(ValueError):
    """The bytes are not an ONNX model that the runtime can load; the message says why."""


def open_session(model: bytes | str, protocol: Protocol) -> ort.InferenceSession:
    """An inference session set up as the protocol says; :class:`InvalidModel` if it fails."""
    if protocol.provider not in ort.get_available_providers():
        raise InvalidParameter(
            f"execution provider {protocol.provider!r} is not installed; available: "
            f"{', '.join(ort.get_available_providers())}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = protocol.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads would steal the CPU from whatever shares it and inflate the spread.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    if not protocol.graph_optimization:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(model, options, providers=[protocol.provider])
    except Exception as error:  # onnxruntime raises several unrelated types here
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidModel(f"not a loadable ONNX model: {reason[:300]}") from None


def input_feeds(
    session: ort.InferenceSession, shapes: dict[str, list[int]] | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded inputs for every model input; ``shapes`` fills in dynamic dimensions.

    Raises:
        ValueError: an input's shape is still dynamic, or the inputs would have more than
            :data:`MAX_INPUT_ELEMENTS` elements together.
    """
    rng = np.random.default_rng(seed)
    inputs = []
    for spec in session.get_inputs():
        shape = (shapes or {}).get(spec.name) or spec.shape
        if any(not isinstance(d, int) for d in shape):
            raise InvalidParameter(
                f"input {spec.name!r} has a dynamic shape {spec.shape}; give its shape"
            )
        inputs.append((spec, shape))
    total = sum(math.prod(shape) for _, shape in inputs)
    if total > MAX_INPUT_ELEMENTS:  # before any input is allocated
        shown = ", ".join(f"{spec.name!r}: {shape}" for spec, shape in inputs)
        raise InvalidParameter(f"inputs of {total} elements ({shown[:300]}); at most "
                               f"{MAX_INPUT_ELEMENTS} are allocated")
    feeds = {}
    for spec, shape in inputs:
        dtype = np.int64 if "int64" in spec.type else np.float16 if "float16" in spec.type \
            else np.float32
        feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _timed(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> float:
    start = time.perf_counter()
    session.run(None, feeds)
    return (time.perf_counter() - start) * 1000.0


class Reference:
    """A fixed reference model timed in alternation with each measured model.

    On a shared host the CPU's speed drifts by tens of percent within minutes; two models run
    alternately see the same drift, so their ratio repeats where either time alone does not.
    ``nominal_ms`` (the reference's p10 in its fastest of ``rounds`` windows) turns the ratio
    back into milliseconds.
    """

    def __init__(self, model: bytes, protocol: Protocol, *, rounds: int = 5) -> None:
        self.session = open_session(model, protocol)
        self.feeds = input_feeds(self.session)
        windows = []
        for _ in range(rounds):
            for _ in range(protocol.warmup):
                _timed(self.session, self.feeds)
            window = [_timed(self.session, self.feeds) for _ in range(protocol.runs)]
            windows.append(float(np.percentile(window, 10)))
        self.nominal_ms = min(windows)

    def time(self) -> float:
        return _timed(self.session, self.feeds)


def time_model(
    model: bytes | str, protocol: Protocol, shapes: dict[str, list[int]] | None = None,
    reference: Reference | None = None,
) -> LatencyStats:
    """Measure ``model`` (ONNX bytes or a path) with ``protocol``; with a ``reference``, every
    timed run is paired with a reference run and ``normalised_ms`` is reported too. The runs
    are split between ``protocol.sessions`` sessions and their statistics pooled."""
    sessions = min(protocol.sessions, protocol.runs)
    samples, ratios = [], []
    for index in range(sessions):
        session = open_session(model, protocol)
        feeds = input_feeds(session, shapes)
        for _ in range(protocol.warmup):
            _timed(session, feeds)
            if reference is not None:
                reference.time()
        for _ in range(protocol.runs // sessions + (index < protocol.runs % sessions)):
            samples.append(_timed(session, feeds))
            if reference is not None:
                ratios.append(samples[-1] / reference.time())
        del session  # one session's memory at a time
    info = fingerprint(protocol)
    if reference is None:
        return LatencyStats.from_samples(samples, info)
    info["reference_ms"] = round(reference.nominal_ms, 4)
    return LatencyStats.from_samples(samples, info,
                                     normalised_ms=float(np.median(ratios)) * reference.nominal_ms)
