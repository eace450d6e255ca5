"""The project's home folder and how files in it are written (whole, or not at all)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: Environment variable naming the project home (devices, block banks, file-stored latency facts).
HOME_ENV = "NANOSD_NAS_HOME"
#: The project home's folder in the user's cache directory, its default place.
HOME_FOLDER = "nanosd-nas"


def project_home(home: Path | str | None = None) -> Path:
    """The folder that holds devices and measurements (and the default database).

    ``home`` if given, else ``$NANOSD_NAS_HOME``, else ``nanosd-nas`` in the user's cache
    directory (:func:`user_cache_dir`): one home per user, whatever the working directory, so
    calibrations and block banks are made once. Nothing is created here.
    """
    if home is not None:
        return Path(home)
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured)
    return user_cache_dir() / HOME_FOLDER


def user_cache_dir() -> Path:
    """The user's cache directory by the XDG rules: ``$XDG_CACHE_HOME`` if set to an absolute
    path (a relative one is ignored, as the specification says), else ``~/.cache``."""
    configured = os.environ.get("XDG_CACHE_HOME")
    if configured and Path(configured).is_absolute():
        return Path(configured)
    return Path.home() / ".cache"


def write_json_atomic(path: Path, document: Any, *, private: bool = False,
                      exclusive: bool = False) -> None:
    """Write ``document`` as JSON to ``path``: a reader sees the old file or the new one.

    Args:
        path: the destination; its folder is created if needed.
        document: anything ``json.dumps`` takes.
        private: readable by the owner only (0600), for files that hold a secret.
        exclusive: fail with ``FileExistsError`` if ``path`` exists (checked atomically).
    """
    payload = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
    write_bytes_atomic(path, payload, private=private, exclusive=exclusive)


def write_bytes_atomic(path: Path, payload: bytes, *, private: bool = False,
                       exclusive: bool = False) -> None:
    """Write ``payload`` to ``path``: a reader sees the old file or the new one, never a part.

    Args:
        path: the destination; its folder is created if needed.
        payload: the file's bytes.
        private: readable by the owner only (0600), for files that hold a secret.
        exclusive: fail with ``FileExistsError`` if ``path`` exists (checked atomically).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600, so a secret is never readable by others, not even briefly.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        if not private:
            os.chmod(temporary, 0o644)  # noqa: PTH101 - same call for a str path
        if exclusive:
            os.link(temporary, path)  # fails if path exists, unlike os.replace
            os.unlink(temporary)  # noqa: PTH108
        else:
            os.replace(temporary, path)  # noqa: PTH105
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)  # noqa: PTH108
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
