"""The ``nanosd-nas`` command line: one Typer app, one module per command group."""

from __future__ import annotations

import sys

import typer

from nanosd_nas import __version__, latency_models, spaces
from nanosd_nas.cli import (
    accuracy,
    agent,
    bench,
    db,
    device,
    latency,
    run,
    serve,
    space,
    spec,
    study,
)
from nanosd_nas.cli._output import USAGE_ERROR, UserError, err_console

app = typer.Typer(
    name="nanosd-nas",
    help="Hardware-aware architecture search for edge diffusion models (SD-1.5 students).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo")(run.demo)
app.add_typer(space.app, name="space")
app.add_typer(spec.app, name="spec")
app.add_typer(device.app, name="device")
app.command("agent")(agent.agent)
app.add_typer(latency.app, name="latency")
app.add_typer(accuracy.app, name="accuracy")
app.add_typer(bench.app, name="bench")
app.add_typer(db.app, name="db")
study.app.command("run")(run.study_run)
app.add_typer(study.app, name="study")
app.command("export")(run.export)
app.command("serve")(serve.serve)
app.command("worker")(serve.worker)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nanosd-nas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Hardware-aware architecture search for edge diffusion models."""


#: Errors that are the user's to fix: one line on stderr, exit code 2, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    UserError, spaces.SpecError, spaces.PresetError, spaces.NotExpressible, ValueError,
    OSError,  # unwritable --out, a file where a folder should be, a full disk: one line too
    latency_models.DeviceError, latency_models.DeviceUnreachable, latency_models.AgentError,
    latency_models.MeasurementStoreError, latency_models.PredictorNotFound,
)


def user_errors() -> tuple[type[Exception], ...]:
    """:data:`USER_ERRORS`, and the store's errors (bad URL, unreachable database, unknown or
    duplicate study) once a command has loaded the store: it is imported only by the commands
    that use it, so that the others start without SQLAlchemy."""
    store = sys.modules.get("nanosd_nas.search.store")
    return USER_ERRORS if store is None else (*USER_ERRORS, store.StoreError)


def main() -> None:
    """Console entry point."""
    # Usage errors (unknown option, missing argument) are Typer's own: stderr, exit code 2.
    try:
        app()
    except spaces.ExportError as error:
        err_console.print(f"export failed: {error}", markup=False)
        sys.exit(1)
    except Exception as error:
        if not isinstance(error, user_errors()):
            raise
        err_console.print(f"error: {error}", markup=False)
        sys.exit(USAGE_ERROR)
