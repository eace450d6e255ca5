"""Ctrl-C and SIGTERM on a command that runs studies: the first stops the run gracefully (the
trials in flight land, the study is left ``stopped`` and resumable), the second aborts."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from nanosd_nas.cli._output import err_console

#: The exit code of a command aborted by a second interruption (as a shell reports SIGINT).
ABORTED = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(stop: Callable[[str], None], *, finishing: str) -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM calls ``stop`` with the reason (it must
    only set a flag: it runs in a signal handler) and prints ``finishing``; the next raises
    :class:`KeyboardInterrupt` at once.

    Args:
        stop: asks the run to stop, e.g. ``StudyRunner.interrupt``.
        finishing: what the command does before it exits, for the message.
    """
    previous = {number: signal.getsignal(number) for number in _SIGNALS}

    def abort(number: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def first(number: int, frame: FrameType | None) -> None:
        for each in _SIGNALS:
            signal.signal(each, abort)
        name = signal.Signals(number).name
        stop(f"interrupted ({name})")
        err_console.print(f"{name}: {finishing}; interrupt again to abort at once",
                          markup=False)

    for number in _SIGNALS:
        signal.signal(number, first)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
