"""A user's own accuracy evaluators, imported by ``module:name`` reference in the tests."""

from __future__ import annotations

from nanosd_nas.search.evaluators import AccuracyEvaluator, AccuracyResult
from nanosd_nas.spaces import ArchSpec


def transformer_share(spec: ArchSpec) -> float:
    layers = [layer for level in spec.unet.levels for layer in (*level.down, *level.up)]
    return sum(layer.has_transformer for layer in layers) / len(layers)


def two_objectives(spec: ArchSpec) -> dict[str, float]:
    return {"fidelity": transformer_share(spec), "task_score": 0.5}


def not_a_number(spec: ArchSpec) -> float:
    return float("nan")


class WidthScore(AccuracyEvaluator):
    """Scores by the first level's width times a factor given in the study's options."""

    def __init__(self, *, factor: float) -> None:
        self.factor = factor

    def evaluate(self, spec: ArchSpec) -> AccuracyResult:
        return AccuracyResult(objectives={"fidelity": self.factor * spec.unet.levels[0].channels})


NOT_CALLABLE = 3


def slow_share(spec: ArchSpec) -> float:
    """``transformer_share``, a third of a second later (so a runner can be killed mid-trial)."""
    import time

    time.sleep(0.3)
    return transformer_share(spec)


def fails_without_attention_in_e1(spec: ArchSpec) -> float:
    if not any(layer.has_transformer for layer in spec.unet.levels[0].down):
        raise RuntimeError("no attention in E1: this evaluator cannot score it")
    return transformer_share(spec)


def announces_then_sleeps(spec: ArchSpec) -> float:
    """``transformer_share`` after 2 s; the first call anywhere first writes its process id to
    the file named by ``NAS_TEST_PID_FILE`` (so a test can kill that worker mid-evaluation)."""
    import os
    import time

    marker = os.environ.get("NAS_TEST_PID_FILE")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, f"{os.getpid()}\n".encode())
            os.close(fd)
            time.sleep(2.0)
    return transformer_share(spec)


def dies_on_full_attention(spec: ArchSpec) -> float:
    """``transformer_share``, but the worker process dies (SIGKILL) on a candidate with
    attention in every layer: a candidate that kills every worker it meets."""
    import os
    import signal

    share = transformer_share(spec)
    if share == 1.0:
        os.kill(os.getpid(), signal.SIGKILL)
    return share
