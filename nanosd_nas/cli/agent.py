"""``nanosd-nas agent``: the remote device agent, run on the edge device itself."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from nanosd_nas.cli._output import UserError
from nanosd_nas.latency_models.agent import DEFAULT_MAX_UPLOAD_BYTES, TOKEN_ENV, run_agent


def agent(
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on; 0.0.0.0 accepts connections from the network.",
    )] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port to listen on; 0 picks a free one.")] = 8765,
    token: Annotated[str | None, typer.Option(
        "--token", envvar=TOKEN_ENV, show_envvar=True,
        help="Bearer token clients must send; generated and printed once if not given.",
    )] = None,
    max_upload_mb: Annotated[float, typer.Option(
        "--max-upload-mb", min=0.001, help="Largest ONNX model accepted, in MiB.",
    )] = DEFAULT_MAX_UPLOAD_BYTES / 2**20,
) -> None:
    """Serve latency measurements of ONNX models over HTTP (token-protected).

    Prints 'listening on http://HOST:PORT' once ready. Prefer NANOSD_NAS_AGENT_TOKEN to --token
    (a command line is visible to every user of the device). Register it from the search host
    with 'nanosd-nas device add NAME --kind remote --url URL --token TOKEN'.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        run_agent(host=host, port=port, token=token,
                  max_upload_bytes=max(1, int(max_upload_mb * 2**20)), announce=typer.echo)
    except ValueError as error:
        raise UserError(str(error)) from None
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
