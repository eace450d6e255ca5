"""The study files in ``examples/`` are studies ``study create`` accepts as they are, the demo's
is the study ``nanosd-nas demo`` runs, and the fixed choices options offer are the library's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import yaml

from nanosd_nas import latency_models, spaces
from nanosd_nas.cli import _choices
from nanosd_nas.cli.run import DEMO_STUDY
from nanosd_nas.latency_models import Device, DeviceRegistry

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_every_example_study_is_created_as_it_is(tmp_path):
    home = tmp_path / "home"
    # The remote example's device, registered as 'device add phone --kind remote' registers it
    # (without an agent to answer here: the study only names it).
    DeviceRegistry(home=home).add(Device(name="phone", kind="remote",
                                         url="http://127.0.0.1:8765", token="t0k"), check=False)
    env = {**os.environ, "NANOSD_NAS_HOME": str(home),
           "NANOSD_NAS_DATABASE_URL": f"sqlite:///{tmp_path / 'nas.db'}"}
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert [f.name for f in files] == ["demo.yaml", "nanosd-scaled-constrained.yaml",
                                       "remote-agent.yaml"]
    created = {}
    for path in files:
        result = subprocess.run([sys.executable, "-m", "nanosd_nas", "study", "create",
                                 str(path), "--json"], capture_output=True, text=True,
                                timeout=120, env=env, check=False)
        assert result.returncode == 0, (path.name, result.stderr)
        record = json.loads(result.stdout)
        created[record["name"]] = record["config"]
    assert created["scaled-4m-30ms"]["space"] == "nanosd-scaled"
    assert created["scaled-4m-30ms"]["constraints"] == {"params_m": {"max": 4.0},
                                                        "latency_ms": {"max": 30.0}}
    assert created["phone-nanosd"]["device"] == "phone"
    # The demo's file is the demo's study, field for field.
    assert yaml.safe_load((EXAMPLES / "demo.yaml").read_text()) == DEMO_STUDY


def test_the_choices_options_offer_are_the_librarys():
    from nanosd_nas.search import ENCODINGS
    from nanosd_nas.search.teacher import SAMPLERS

    assert get_args(_choices.ExportFormat) == spaces.FORMATS
    assert get_args(_choices.DeviceKind) == latency_models.DEVICE_KINDS
    assert get_args(_choices.TorchDtype) == latency_models.TORCH_DTYPES
    assert get_args(_choices.TorchTarget) == latency_models.TORCH_TARGETS
    assert get_args(_choices.Encoding) == ENCODINGS
    assert get_args(_choices.Scheduler) == tuple(SAMPLERS)
