"""Progress driven by the library's ``on_progress(phase, done, total)`` calls: Rich bars on a
terminal, plain lines on a pipe or in a log (where a live display shows nothing until the end)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from nanosd_nas.cli._output import err_console
from nanosd_nas.latency_models import ProgressCallback

_PHASES = {"blocks": "profiling blocks", "train": "measuring training models",
           "held-out": "measuring held-out models", "test": "measuring test models",
           "vae": "training the VAE", "features": "training the feature network",
           "encode": "encoding training images", "unet": "training the U-Net",
           "measure": "measuring trials on the device", "block bank": "distilling the block bank",
           "trials": "trials", "verify front": "measuring the front on the device"}


@contextmanager
def phase_progress(enabled: bool = True) -> Iterator[ProgressCallback]:
    """Yield a callback that shows one bar per phase on stderr (:class:`PhaseLines` when
    stderr is not a terminal; nothing if not ``enabled``)."""
    if not enabled:
        yield lambda phase, done, total: None
        return
    if not err_console.is_terminal:
        yield PhaseLines()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(_PHASES.get(phase, phase), total=total)
            progress.update(tasks[phase], completed=done, total=total)

        yield update


def describe(phase: str) -> str:
    """What a phase is called on screen (``calibrate: train`` is a calibration's ``train``)."""
    prefix, _, name = phase.rpartition(": ")
    return f"{prefix}: {_PHASES.get(name, name)}" if prefix else _PHASES.get(phase, phase)


class PhaseLines:
    """Plain progress lines on stderr: one when a phase starts, one when it ends (with its
    seconds), and one at most every ``every_s`` seconds within a long phase.

    Call it as ``on_progress(phase, done, total)``, or with a fourth argument, one line of the
    latest figures (a search's front), printed with the line.
    """

    def __init__(self, *, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self.started = time.monotonic()
        self.phases: list[str] = []  # every phase seen, in order
        self._phase: str | None = None
        self._since = self._printed = self.started
        self._ended = False

    def __call__(self, phase: str, done: int, total: int, facts: str = "") -> None:
        now = time.monotonic()
        if phase != self._phase:
            self.phases.append(phase)
            self._phase, self._since, self._ended = phase, now, done >= total
            self._line(f"{describe(phase)}: {'done' if self._ended else 'started'}, "
                       f"{done}/{total}", facts)
        elif done >= total and not self._ended:
            self._ended = True
            self._line(f"{describe(phase)}: done, {done}/{total} in {now - self._since:.0f} s",
                       facts)
        elif now - self._printed >= self.every_s and not self._ended:
            self._line(f"{describe(phase)}: {done}/{total}", facts)

    def _line(self, text: str, facts: str) -> None:
        self._printed = time.monotonic()
        err_console.print(f"[{self._printed - self.started:4.0f} s] {text}"
                          + (f" ({facts})" if facts else ""), markup=False, highlight=False)
