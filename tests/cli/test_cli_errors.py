"""Which errors the command line shows as one line (the user's to fix) and which it shows whole
(a fault of the project), and ``--debug``."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from nanosd_nas import spaces
from nanosd_nas.cli import is_user_error


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nanosd_nas", *args], capture_output=True,
                          text=True, timeout=120, check=False, env=env)


@pytest.mark.parametrize("error", [
    spaces.SpecError("unet.levels", [], "a U-Net needs at least one level"),
    spaces.SpaceError("scale 'huge' does not exist"),
    FileNotFoundError(errno.ENOENT, "No such file or directory", "study.yaml"),
    PermissionError(errno.EACCES, "Permission denied", "/out"),
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_the_users_mistakes_are_one_line(error):
    assert is_user_error(error)


@pytest.mark.parametrize("error", [
    ValueError("operands could not be broadcast together"),
    KeyError("unet.conv_in.weight"),
    RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
    OSError(errno.ECONNRESET, "Connection reset by peer"),
])
def test_faults_of_the_project_are_not_hidden_as_the_users(error):
    assert not is_user_error(error)


def test_a_missing_file_is_one_line_and_debug_shows_the_traceback(tmp_path: Path):
    missing = tmp_path / "nowhere.json"
    plain = run("spec", "show", str(missing))
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr
    assert str(missing) in plain.stderr or "nowhere" in plain.stderr
    debug = run("--debug", "spec", "show", str(missing))
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


def test_debug_from_the_environment_shows_the_traceback_of_a_user_error():
    import os

    shown = run("space", "show", "nowhere", env={**os.environ, "NANOSD_NAS_DEBUG": "1"})
    assert shown.returncode == 1
    assert "Traceback" in shown.stderr and "PresetError" in shown.stderr
