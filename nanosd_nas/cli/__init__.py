"""The ``nanosd-nas`` command line: one Typer app, one module per command group."""

from __future__ import annotations

import errno
import os
import sys

import typer
from typer.exceptions import TyperException

from nanosd_nas import __version__, spaces
from nanosd_nas.cli import (
    accuracy,
    agent,
    bench,
    bench_accuracy,
    bench_transfer,
    db,
    device,
    latency,
    run,
    serve,
    space,
    spec,
    study,
    teacher,
)
from nanosd_nas.cli._output import USAGE_ERROR, err_console

app = typer.Typer(
    name="nanosd-nas",
    help="Hardware-aware architecture search for edge diffusion models (SD-1.5 students).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("demo")(run.demo)
app.add_typer(space.app, name="space")
app.add_typer(spec.app, name="spec")
app.add_typer(device.app, name="device")
app.command("agent")(agent.agent)
app.add_typer(latency.app, name="latency")
app.add_typer(accuracy.app, name="accuracy")
app.add_typer(teacher.app, name="teacher")
bench.app.command("accuracy")(bench_accuracy.bench_accuracy)
bench.app.command("transfer")(bench_transfer.bench_transfer)
app.add_typer(bench.app, name="bench")
app.add_typer(db.app, name="db")
study.app.command("run")(run.study_run)
app.add_typer(study.app, name="study")
app.command("export")(run.export)
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)

#: Set to 1 for the traceback of every error, as ``--debug`` does.
DEBUG_ENV = "NANOSD_NAS_DEBUG"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nanosd-nas {__version__}")
        raise typer.Exit()


#: Set by ``--debug`` (or ``NANOSD_NAS_DEBUG=1``): every error shows its traceback.
_debug = {"on": os.environ.get(DEBUG_ENV, "") not in ("", "0")}


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug",
                               help=f"Show the traceback of any error (or set {DEBUG_ENV}=1)."),
) -> None:
    """Hardware-aware architecture search for edge diffusion models."""
    if debug:
        _debug["on"] = True


#: The user's own ``OSError``s: a path that is missing, of the wrong kind or not theirs to
#: write, and a disk that is full or read-only. Any other ``OSError`` is a fault to show whole.
USER_OS_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
)
_USER_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT})


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's to fix: one line on stderr, exit code 2, no traceback.

    Those are the project's own exception types (every class the project defines names a
    problem with the input, a file, a device or a database that the user can act on) and the
    user's ``OSError``s. A ``ValueError``, ``KeyError`` or ``RuntimeError`` of Python or a
    library is a fault of the project and prints its traceback.
    """
    if isinstance(error, USER_OS_ERRORS):
        return True
    if isinstance(error, OSError) and error.errno in _USER_ERRNOS:
        return True
    return any(cls.__module__.startswith("nanosd_nas.") for cls in type(error).__mro__)


def _usage_error(error: TyperException) -> int:
    """Show a usage error (unknown option, missing argument, a value not among an option's
    choices) as one line naming the command; returns its exit code (2)."""
    code = int(getattr(error, "exit_code", USAGE_ERROR))
    if type(error).__name__ == "NoArgsIsHelpError":  # Typer showed the help already
        return code
    param = getattr(error, "param", None)
    if param is not None and getattr(param, "opts", None):  # a bad value: the option first
        message = f"{param.opts[0]} {getattr(error, 'message', error)}"
    else:
        message = str(getattr(error, "format_message", error.__str__)())
    message = " ".join(message.replace("Value error, ", "").split())
    context = getattr(error, "ctx", None)
    where = f" (see '{context.command_path} --help')" if context is not None else ""
    err_console.print(f"error: {message}{where}", markup=False)
    return code


def main() -> None:
    """Console entry point."""
    try:
        code = app(standalone_mode=False)
    except TyperException as error:
        sys.exit(_usage_error(error))
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as error:
        if _debug["on"] or not is_user_error(error):
            raise
        if isinstance(error, spaces.ExportError):
            err_console.print(f"export failed: {error}", markup=False)
            sys.exit(1)
        err_console.print(f"error: {error}", markup=False)
        sys.exit(USAGE_ERROR)
    sys.exit(code if isinstance(code, int) else 0)
