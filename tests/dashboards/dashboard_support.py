"""What the dashboard tests share: the seeded study's documents, seeding, a live server."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from nanosd_nas.dashboards import Settings, create_app
from nanosd_nas.latency_models import CalibrationPlan, DeviceRegistry
from nanosd_nas.search import StudyRunner
from nanosd_nas.search.store import Store

SEEDED = "seeded"
SEEDED_TRIALS = 10
TINY_PLAN = CalibrationPlan(initial=6, rounds=1, per_round=2, held_out=4)


def seeded_document(name: str = SEEDED, trials: int = SEEDED_TRIALS) -> dict:
    return {
        "name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
        "pipeline": {"steps": 1},
        "objectives": [{"name": "fidelity", "direction": "maximize"},
                       {"name": "latency_ms", "direction": "minimize"},
                       {"name": "params_m", "direction": "minimize"}],
        "constraints": {"params_m": {"max": 6.0}},
        "sampler": "tpe", "n_trials": trials, "parallelism": 2,
        "latency": {"source": "predictor", "verify_front": True},
        "accuracy": {"evaluator": "surgery", "teacher": "demo"}, "seed": 0,
    }


def quick_document(name: str, trials: int = 4) -> dict:
    """A study a worker runs in seconds: size objectives only (no Ray, no measurement)."""
    return {"name": name, "space": "nanosd", "scale": "mini", "device": "local-cpu",
            "objectives": [{"name": "params_m", "direction": "minimize"},
                           {"name": "macs_g", "direction": "minimize"}],
            "n_trials": trials, "sampler": "random", "seed": 1}


@dataclass(frozen=True)
class Seeded:
    """A database holding the seeded study."""

    url: str
    backend: str
    home: Path


def seed(url: str) -> None:
    with Store.open(url, upgrade=True) as store:
        store.upsert_device(DeviceRegistry().get("local-cpu"))
        store.create_study(SEEDED, seeded_document(), device="local-cpu")
        StudyRunner(store, SEEDED, calibration=TINY_PLAN).run()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """``create_app`` served by uvicorn in a thread on a loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
