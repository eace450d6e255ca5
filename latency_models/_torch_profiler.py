"""The PyTorch profiler: latency of a module run in PyTorch on this host's CPU or GPU, for users
whose target is a GPU (or who deploy through PyTorch rather than ONNX Runtime)."""

from __future__ import annotations

import copy
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models._records import LatencyInputError
from nanosd_nas.latency_models.agent import LatencyStats, Protocol, cpu_identity

if TYPE_CHECKING:
    import torch

#: Where a ``torch`` device runs its modules.
TORCH_TARGETS = ("cpu", "cuda")
#: The dtypes a ``torch`` device runs at (its precision).
TORCH_DTYPES = ("fp32", "fp16", "bf16")


def _dtype(name: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


class TorchProfiler(Profiler):
    """Times a module in PyTorch: the module (a copy) and its floating inputs cast to
    ``dtype`` and moved to ``target``, ``protocol.warmup`` untimed runs (``torch.compile``
    compiles in the first), then ``protocol.runs`` timed runs under ``torch.inference_mode``.
    On a GPU each run is timed with CUDA events after a synchronisation; on the CPU with the
    wall clock, with ``protocol.threads`` intra-op threads. Reports ``p10_ms`` (there is no
    reference pairing: a GPU is an exclusive device).

    Args:
        device: the registered device name.
        protocol: threads (CPU), warm-up and runs; its execution provider is not used.
        target: ``cpu`` or ``cuda``.
        dtype: ``fp32``, ``fp16`` or ``bf16``.
        compile: run the module through ``torch.compile``.
    """

    def __init__(self, *, device: str, protocol: Protocol | None = None, target: str = "cpu",
                 dtype: str = "fp32", compile: bool = False) -> None:
        self.device = device
        self.protocol = protocol or Protocol()
        self.check_target(target, dtype)
        self.target = target
        self.precision = dtype
        self.compile = compile

    @staticmethod
    def check_target(target: str, dtype: str) -> None:
        """Refuse, in one line, a target or dtype this host cannot run."""
        import torch

        if target not in TORCH_TARGETS:
            raise LatencyInputError(f"torch device {target!r} does not exist; devices: "
                                    f"{', '.join(TORCH_TARGETS)}")
        if dtype not in TORCH_DTYPES:
            raise LatencyInputError(f"dtype {dtype!r} does not exist; dtypes: "
                                    f"{', '.join(TORCH_DTYPES)}")
        if target == "cuda" and not torch.cuda.is_available():
            raise LatencyInputError("torch device 'cuda' is not available on this host (this "
                                    "PyTorch build sees no GPU); use --torch-device cpu or a "
                                    "CUDA build of PyTorch")

    def fingerprint(self) -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {
            **cpu_identity(), "machine": platform.machine(),
            "runtime": f"torch {torch.__version__}", "provider": f"torch-{self.target}",
            "threads": self.protocol.threads, "precision": self.precision,
            "compile": self.compile,
        }
        if self.target == "cuda":
            info["gpu"] = torch.cuda.get_device_name()
        return info

    def measure_onnx(
        self, model: bytes | Path, shapes: dict[str, list[int]] | None = None
    ) -> LatencyStats:
        raise LatencyInputError(f"device {self.device!r} times PyTorch modules; it does not "
                                "run ONNX files (measure a spec or a space member instead)")

    def measure_module(
        self, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], component: str, *,
        check_output: bool = True,
    ) -> LatencyStats:
        import torch

        dtype, target = _dtype(self.precision), torch.device(self.target)
        model = copy.deepcopy(module).to(device=target, dtype=dtype).eval()
        args = tuple(t.to(device=target, dtype=dtype) if t.is_floating_point()
                     else t.to(device=target) for t in inputs)
        run: Callable[..., Any] = torch.compile(model) if self.compile else model
        threads = torch.get_num_threads()
        if self.target == "cpu":
            torch.set_num_threads(self.protocol.threads)
        try:
            with torch.inference_mode():
                for _ in range(max(1, self.protocol.warmup)):
                    run(*args)
                samples = [self._timed(run, args) for _ in range(self.protocol.runs)]
        finally:
            torch.set_num_threads(threads)
        return LatencyStats.from_samples(samples, self.fingerprint())

    def _timed(self, run: Callable[..., Any], args: tuple[torch.Tensor, ...]) -> float:
        import torch

        if self.target == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                          for _ in range(2))
            torch.cuda.synchronize()
            start.record()
            run(*args)
            end.record()
            torch.cuda.synchronize()
            return float(start.elapsed_time(end))
        begin = time.perf_counter()
        run(*args)
        return (time.perf_counter() - begin) * 1000.0
