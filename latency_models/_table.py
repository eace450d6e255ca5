"""Block latency tables: every distinct block of a space, profiled once per device.

A block is measured as the very module the builder makes, fed with the inputs it receives inside
its model (captured by a forward hook), exported to ONNX on its own and timed by the device's
profiler.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanosd_nas.latency_models._files import write_json_atomic
from nanosd_nas.latency_models._precision import ConversionError
from nanosd_nas.latency_models._profiler import Profiler
from nanosd_nas.latency_models.agent import LatencyStats
from nanosd_nas.spaces import ArchSpec, Block

#: Statistics a predictor may learn; ``normalised_ms`` (local profilers) repeats best on a
#: shared host, ``p10_ms`` is the plain choice for an exclusive device (see README).
STATISTICS: tuple[str, ...] = ("normalised_ms", "min_ms", "p10_ms", "median_ms")


@dataclass
class BlockLatencyTable:
    """Measured latency of each distinct block (by :attr:`Block.key`) on one device."""

    device: str
    scale: str
    statistic: str = "p10_ms"
    entries: dict[str, LatencyStats] = field(default_factory=dict)

    def latency(self, block: Block) -> float:
        """The block's measured latency in ms; ``KeyError`` naming the block if unmeasured."""
        stats = self.entries.get(block.key)
        if stats is None:
            raise KeyError(f"block {block.key} is not in the {self.device} table")
        value = getattr(stats, self.statistic)
        if value is None:
            raise KeyError(f"block {block.key} has no {self.statistic} in the {self.device} table")
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "scale": self.scale, "statistic": self.statistic,
                "entries": {key: stats.to_dict() for key, stats in sorted(self.entries.items())}}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> BlockLatencyTable:
        return cls(device=document["device"], scale=document["scale"],
                   statistic=document["statistic"],
                   entries={k: LatencyStats.from_dict(v) for k, v in document["entries"].items()})

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> BlockLatencyTable:
        return cls.from_dict(json.loads(path.read_text()))


def measure_blocks(
    spec: ArchSpec, blocks: list[Block], profiler: Profiler,
    on_measured: Callable[[Block, LatencyStats], None] | None = None,
) -> dict[str, LatencyStats]:
    """Measure ``blocks`` (all of ``spec``) as standalone ONNX models on ``profiler``'s device.

    Raises:
        ConversionError: a block could not be converted to the profiler's precision; the
            message names the block (its component and module path).
    """
    from nanosd_nas.latency_models._block_calls import block_calls

    measured = {}
    for block, (module, inputs) in zip(blocks, block_calls(spec, blocks), strict=True):
        try:
            stats = profiler.measure_module(module, inputs, "block", check_output=False)
        except ConversionError as error:  # name the block, not "block"
            raise ConversionError(f"{block.component} block {block.path}", error.precision,
                                  error.reason) from error.__cause__
        measured[block.key] = stats
        if on_measured is not None:
            on_measured(block, stats)
    return measured
