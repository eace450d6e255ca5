"""TLS for the agent (and ``nanosd-nas serve``): a server's context from PEM files, checked
before anything listens."""

from __future__ import annotations

import os
import ssl


def one_line(error: BaseException | None) -> str:
    """``error``'s message on one line, at most 300 characters."""
    return " ".join(str(error).split())[:300] or type(error).__name__


def tls_context(certfile: str | os.PathLike[str], keyfile: str | os.PathLike[str]
                ) -> ssl.SSLContext:
    """A server's TLS context from a PEM certificate (chain) and its private key.

    Raises:
        ValueError: a file cannot be read, is not PEM, or the key does not match the
            certificate (one line, naming the files).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except OSError as error:  # ssl.SSLError is an OSError
        reason = ("they are not a PEM certificate and its matching private key"
                  if isinstance(error, ssl.SSLError) else error.strerror or one_line(error))
        raise ValueError(f"cannot load the TLS certificate {os.fspath(certfile)} with the key "
                         f"{os.fspath(keyfile)}: {reason}") from None
    return context
