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
    tls_cert: Annotated[str | None, typer.Option(
        "--tls-cert", help="PEM certificate (chain) to serve HTTPS with (with --tls-key).",
    )] = None,
    tls_key: Annotated[str | None, typer.Option(
        "--tls-key", help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Serve latency measurements of ONNX models over HTTP, or HTTPS with --tls-cert and
    --tls-key (token-protected).

    Prints 'listening on http://HOST:PORT' (https://) once ready. Prefer NANOSD_NAS_AGENT_TOKEN
    to --token (a command line is visible to every user of the device). Register it from the
    search host with 'nanosd-nas device add NAME --kind remote --url URL --token TOKEN'; a
    certificate that the system does not trust is named to the search host by
    NANOSD_NAS_AGENT_CA_FILE.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        run_agent(host=host, port=port, token=token,
                  max_upload_bytes=max(1, int(max_upload_mb * 2**20)), tls_cert=tls_cert,
                  tls_key=tls_key, announce=typer.echo)
    except ValueError as error:
        raise UserError(str(error)) from None
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
