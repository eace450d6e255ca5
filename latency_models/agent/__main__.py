"""``python -m latency_models.agent``: the device agent without the rest of the project.

The same service as ``nanosd-nas agent``, for an edge device that has only onnxruntime, onnx and
numpy. Give the token through ``NANOSD_NAS_AGENT_TOKEN`` rather than ``--token``: a command line
is visible to every user of the device.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._server import DEFAULT_MAX_UPLOAD_BYTES, TOKEN_ENV, run_agent


def _announce(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, start the agent, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="agent", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"bearer token (default: ${TOKEN_ENV}, else a generated one)")
    parser.add_argument("--max-upload-mb", type=float,
                        default=DEFAULT_MAX_UPLOAD_BYTES / 2**20, help="largest model accepted")
    parser.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS (with --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    if args.max_upload_mb <= 0:
        parser.error(f"--max-upload-mb {args.max_upload_mb} must be positive")
    try:
        run_agent(host=args.host, port=args.port, token=args.token,
                  max_upload_bytes=int(args.max_upload_mb * 2**20), tls_cert=args.tls_cert,
                  tls_key=args.tls_key, announce=_announce)
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}: {error.strerror or error}")


if __name__ == "__main__":
    main()
