"""The exact Pareto front of a whole space on the cheap objectives: the reference that
``bench search`` measures samplers against and that a study page draws behind its trials.

A space is swept in chunks of :data:`CHUNK` members, decoded from their mixed-radix indices
(never listed), scored by :class:`search._search_tables.SpaceObjectives` and reduced to their
non-dominated members (moocore's ``O(n log n)`` sweep for three objectives) before the next
chunk; the front so far is merged with each chunk's. Memory is bounded by the chunk and the
front, not by the space (the sweep reports its peak, traced). A space above
:data:`MAX_MEMBERS` is refused before any work: the bound is on time (a larger space's sweep
grows past ten minutes here, README) and on the front, which is kept whole.
"""

from __future__ import annotations

import glob
import hashlib
import json
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import moocore
import numpy as np

from nanosd_nas.latency_models import ProgressCallback, project_home, write_json_atomic
from nanosd_nas.search._search_tables import Objectives, decode_rows
from nanosd_nas.spaces import Space

#: Members scored at a time (the sweep's traced peak was 382 MB on ``nanosd-scaled``, README).
CHUNK = 1 << 18
#: The largest space swept whole: ~134 M members, about ten minutes here at the pace of
#: ``nanosd-scaled`` (221 k members/s, README).
MAX_MEMBERS = 1 << 27


class SpaceTooLarge(ValueError):
    """A space with more members than a sweep takes."""


@dataclass(frozen=True)
class SpaceFront:
    """The exhaustive front of a space: its members' rows (mixed-radix indices), their values,
    each objective's range over the whole space, and what the sweep cost."""

    rows: np.ndarray
    values: np.ndarray
    low: np.ndarray
    high: np.ndarray
    size: int
    seconds: float
    peak_mb: float
    chunk: int

    def hypervolume(self, reference: np.ndarray, directions: Sequence[str]) -> float:
        """The front's hypervolume under ``reference`` (exact)."""
        signs = _signs(directions)
        return float(moocore.hypervolume(self.values * signs, ref=np.asarray(reference) * signs))


def _signs(directions: Sequence[str]) -> np.ndarray:
    return np.array([1.0 if d == "minimize" else -1.0 for d in directions])


def check_sweepable(space: Space, limit: int = MAX_MEMBERS) -> None:
    """:class:`SpaceTooLarge` (one line: the size and the bound) if ``space`` has more than
    ``limit`` members."""
    if space.size > limit:
        raise SpaceTooLarge(f"space {space.name!r} has {space.size:,} members; the exhaustive "
                            f"reference sweeps at most {limit:,} (memory stays bounded by "
                            f"chunks of {CHUNK:,}, but time grows with the size)")


def sweep_front(objectives: Objectives, directions: Sequence[str], *, chunk: int = CHUNK,
                limit: int = MAX_MEMBERS, on_progress: ProgressCallback | None = None,
                ) -> SpaceFront:
    """Every member of ``objectives.space`` scored, chunk by chunk, and its exact Pareto front
    kept (every copy of a front value, as :func:`search._front.pareto_mask` keeps them).

    Args:
        objectives: the space and its objectives.
        directions: ``minimize``/``maximize`` per objective column.
        chunk: members scored at a time.
        limit: the largest space swept (:class:`SpaceTooLarge` above it).
        on_progress: ``("space sweep", members done, members)``.
    """
    space = objectives.space
    check_sweepable(space, limit)
    signs = _signs(directions)
    rows = np.empty(0, dtype=np.int64)
    losses = np.empty((0, len(signs)))
    low, high = np.full(len(signs), np.inf), np.full(len(signs), -np.inf)
    tracing = not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    try:
        for start in range(0, space.size, chunk):
            stop = min(start + chunk, space.size)
            values = objectives.values(decode_rows(space, start, stop))
            low, high = np.minimum(low, values.min(axis=0)), np.maximum(high, values.max(axis=0))
            keep = moocore.is_nondominated(values * signs, keep_weakly=True)
            rows = np.concatenate([rows, np.arange(start, stop, dtype=np.int64)[keep]])
            losses = np.concatenate([losses, values[keep] * signs])
            merged = moocore.is_nondominated(losses, keep_weakly=True)
            rows, losses = rows[merged], losses[merged]
            if on_progress is not None:
                on_progress("space sweep", stop, space.size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if tracing:
            tracemalloc.stop()
    return SpaceFront(rows=rows, values=losses * signs, low=low, high=high, size=space.size,
                      seconds=time.perf_counter() - started, peak_mb=peak / 2**20, chunk=chunk)


# -- the backdrop: a space's front, kept for the study page -----------------------------------
#: Where ``bench search`` keeps each space's front in the project home, one JSON file per space,
#: scale, device, predictor and bank.
BACKDROP_FOLDER = "space-fronts"


def write_backdrop(front: SpaceFront, *, space: Space, scale: str, device: str,
                   objectives: Sequence[tuple[str, str]], about: dict[str, Any],
                   home: Path | None = None) -> Path:
    """Keep ``front`` for the study page (:func:`find_backdrop`); ``about`` says which
    predictor and bank made the values (it is part of the file's key)."""
    key = json.dumps({"digest": space.digest, **about}, sort_keys=True, default=str)
    folder = project_home(home) / BACKDROP_FOLDER
    path = folder / (f"{space.name}-{scale}-{device}-"
                     f"{hashlib.sha256(key.encode()).hexdigest()[:12]}.json")
    document = {"space": space.name, "digest": space.digest, "scale": scale, "device": device,
                "size": front.size, **about,
                "objectives": [{"name": n, "direction": d} for n, d in objectives],
                "front": front.values.tolist(),
                "made_at": datetime.now(UTC).isoformat(timespec="seconds")}
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, document)
    return path


def find_backdrop(space: str, scale: str, device: str, *, steps: int = 1,
                  home: Path | None = None) -> dict[str, Any] | None:
    """The newest front ``bench search`` kept for ``space`` at ``scale`` on ``device`` with
    ``steps`` U-Net evaluations in its latency, or None (unreadable files are passed over)."""
    folder = project_home(home) / BACKDROP_FOLDER
    found = []
    for path in folder.glob(f"{glob.escape(space)}-{glob.escape(scale)}-"
                            f"{glob.escape(device)}-*.json"):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (isinstance(document, dict) and document.get("space") == space
                and document.get("scale") == scale and document.get("device") == device
                and document.get("steps", 1) == steps):
            found.append(document)
    return max(found, key=lambda d: str(d.get("made_at", "")), default=None)
