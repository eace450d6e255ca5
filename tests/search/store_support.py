"""Runners in other processes, for the store's concurrency tests.

Run as a script (``python store_support.py URL STUDY``) it is a runner that adds and completes
trials until it is killed.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from nanosd_nas.search.store import ObjectiveValue, Store


def add_trials(url: str, study: str, count: int, barrier: Any, numbers: Any) -> None:
    """Add ``count`` trials to ``study`` once every runner is ready; report their numbers."""
    with Store.open(url) as store:
        barrier.wait(timeout=60)
        taken = [store.add_trial(study, params={"i": i}, worker=f"pid-{os.getpid()}").number
                 for i in range(count)]
    numbers.put(taken)


def run_forever(url: str, study: str) -> None:
    """Add a trial, complete it with ``fidelity`` = its ``i`` parameter, again and again."""
    with Store.open(url) as store:
        i = 0
        while True:
            trial = store.add_trial(study, params={"i": i}, worker=f"pid-{os.getpid()}")
            store.complete_trial(trial.id, {"fidelity": ObjectiveValue(float(i))})
            i += 1


if __name__ == "__main__":
    run_forever(sys.argv[1], sys.argv[2])
