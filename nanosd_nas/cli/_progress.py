"""A Rich progress display driven by the library's ``on_progress(phase, done, total)`` calls."""

from __future__ import annotations

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
           "measure": "measuring trials on the device"}


@contextmanager
def phase_progress(enabled: bool = True) -> Iterator[ProgressCallback]:
    """Yield a callback that shows one bar per phase on stderr (nothing if not ``enabled``)."""
    if not enabled:
        yield lambda phase, done, total: None
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
