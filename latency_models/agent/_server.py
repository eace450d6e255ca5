"""The remote device agent: a small token-protected HTTP service that measures ONNX models.

It runs on the edge device itself, so it needs only the standard library, numpy, onnx,
onnxruntime and this package (imports inside the package are relative: the ``agent`` folder can
be copied to a device and run as ``python -m agent``).

API (every endpoint needs ``Authorization: Bearer TOKEN``; errors are ``{"error": reason}``):

- ``GET /v1/info``: device fingerprint, execution providers, agent version, upload limit.
- ``POST /v1/measure?threads=&warmup=&runs=&sessions=&provider=&shapes=&graph_optimization=``:
  the body is the ONNX model (``application/octet-stream``); ``shapes`` is a JSON object
  ``{"input": [1, 4, 8, 8]}``. Returns
  :meth:`LatencyStats.to_dict` measured with :func:`time_model` — the same protocol as the local
  profiler. One model is measured at a time; other requests wait for the device.

What a client sends is bounded before it costs anything: the body's ``Content-Length`` against
the upload limit before it is read (413), the query's numbers against fixed bounds, and the
model by :func:`check_onnx_upload` before the runtime loads it (400 ``invalid_model``: no
external data, standard operators only, inputs of a sane size).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import onnxruntime as ort

from ._model_check import check_onnx_upload
from ._timing import InvalidModel, Protocol, fingerprint, time_model
from ._tls import one_line, tls_context

logger = logging.getLogger(__name__)

#: Version of the agent and of its HTTP API (``/v1``).
AGENT_VERSION = "0.1.0"
#: Environment variable read for the token when none is given on the command line.
TOKEN_ENV = "NANOSD_NAS_AGENT_TOKEN"
DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024

# Bounds that keep one request from occupying the device for hours.
_LIMITS = {"threads": 256, "warmup": 1_000, "runs": 10_000, "sessions": 100}
# A rejected upload is read and discarded up to this many bytes so that the client sees the
# response instead of a reset connection; beyond it the connection is simply closed.
_DRAIN_LIMIT = 16 * 1024 * 1024
_DRAIN_TIMEOUT_S = 2.0

try:  # the runtime's own exception types; their module path is not public API
    from onnxruntime.capi.onnxruntime_pybind11_state import (
        InvalidArgument as _OrtInvalidArgument,
    )
except ImportError:  # pragma: no cover - other onnxruntime builds
    _OrtInvalidArgument = ValueError


class RequestError(Exception):
    """A client mistake: answered with ``status`` and ``reason``, never a 500."""

    def __init__(self, status: HTTPStatus, reason: str, code: str = "bad_request") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.code = code


def device_info(max_upload_bytes: int) -> dict[str, Any]:
    """What ``GET /v1/info`` answers: who this device is and what it accepts."""
    device = fingerprint(Protocol())
    for per_measurement in ("provider", "threads"):
        device.pop(per_measurement)
    return {
        "agent_version": AGENT_VERSION,
        "api": "v1",
        "fingerprint": device,
        "providers": list(ort.get_available_providers()),
        "cpu_count": os.cpu_count(),
        "max_upload_bytes": max_upload_bytes,
    }


def parse_measure_query(query: str) -> tuple[Protocol, dict[str, list[int]] | None]:
    """The protocol and input shapes of a ``/v1/measure`` query string.

    Raises:
        RequestError: an unknown, repeated or malformed parameter (400, naming it).
    """
    params = parse_qs(query, keep_blank_values=True)
    allowed = {"threads", "warmup", "runs", "sessions", "provider", "shapes",
               "graph_optimization"}
    for name, given in params.items():
        if name not in allowed:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"unknown parameter {name!r}; expected {sorted(allowed)}")
        if len(given) > 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"parameter {name!r} given twice")
    values = {name: given[0] for name, given in params.items()}
    numbers: dict[str, int] = {}
    for name, high in _LIMITS.items():
        if name not in values:
            continue
        try:
            numbers[name] = int(values[name])
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"parameter {name}={values[name]!r} is not an integer") from None
        low = 0 if name == "warmup" else 1
        if not low <= numbers[name] <= high:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"parameter {name}={numbers[name]} is outside {low}..{high}")
    provider = values.get("provider", Protocol.provider)
    available = ort.get_available_providers()
    if provider not in available:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"parameter provider={provider!r} is not "
                           f"available on this device; available: {', '.join(available)}")
    shapes = _parse_shapes(values["shapes"]) if "shapes" in values else None
    optimization = values.get("graph_optimization", "on")
    if optimization not in ("on", "off"):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"parameter graph_optimization="
                           f"{optimization!r} is not 'on' or 'off'")
    return Protocol(provider=provider, graph_optimization=optimization == "on",
                    **numbers), shapes


def _parse_shapes(text: str) -> dict[str, list[int]]:
    try:
        shapes = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           f"parameter shapes is not JSON: {error}") from None
    well_formed = isinstance(shapes, dict) and all(
        isinstance(dims, list) and all(type(d) is int and d > 0 for d in dims)
        for dims in shapes.values()
    )
    if not well_formed:
        raise RequestError(HTTPStatus.BAD_REQUEST, "parameter shapes must be a JSON object of "
                           f"input name -> list of positive integers, not {text[:200]!r}")
    checked: dict[str, list[int]] = shapes
    return checked


class AgentServer(ThreadingHTTPServer):
    """The agent's HTTP server: holds the token, the upload limit and the device lock."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, token: str,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                 tls: ssl.SSLContext | None = None) -> None:
        if not token or token != token.strip():
            raise ValueError("the agent's token must be non-empty, without surrounding spaces "
                             "(clients send it in a header, which strips them)")
        if max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes={max_upload_bytes} must be positive")
        self.token = token
        self.max_upload_bytes = max_upload_bytes
        #: One model at a time on the device: concurrent timings would disturb each other.
        self.device_lock = threading.Lock()
        self.tls = tls
        super().__init__(address, AgentHandler)
        if tls is not None:
            # The handshake is left to the request's own thread (AgentHandler.setup): done on
            # accept, one silent client would hold up every other.
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed before its request (a TLS handshake refused: a plain HTTP
        client, an untrusted certificate) is one line in the log, not a traceback."""
        logger.info("connection from %s failed: %s", client_address[0],
                    one_line(sys.exc_info()[1]))


class AgentHandler(BaseHTTPRequestHandler):
    """One request: authenticate, route, answer JSON."""

    server: AgentServer
    server_version = f"nanosd-nas-agent/{AGENT_VERSION}"
    # HTTP/1.0: one request per connection, so a rejected body never leaks into a next request.
    protocol_version = "HTTP/1.0"
    #: Seconds a client may stall while sending; a silent connection cannot hold a thread.
    timeout = 30

    def setup(self) -> None:
        super().setup()  # sets the timeout first: a stalled handshake cannot hold the thread
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        self._body_read = False
        try:
            self._authenticate()
            self._send(HTTPStatus.OK, self._route()())
        except RequestError as error:
            self._send(error.status, {"error": error.reason, "code": error.code})
        except Exception as error:  # the agent keeps serving whatever one request does
            logger.exception("request %s %s failed", self.command, self.path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                       {"error": f"internal error: {type(error).__name__}: {error}"[:500],
                        "code": "internal"})
        finally:
            self._discard_unread_body()

    def _route(self) -> Callable[[], dict[str, Any]]:
        routes: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {
            ("GET", "/v1/info"): self._info,
            ("POST", "/v1/measure"): self._measure,
        }
        path = urlsplit(self.path).path
        if (self.command, path) in routes:
            return routes[(self.command, path)]
        if any(path == known for _, known in routes):
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED,
                               f"{self.command} is not allowed on {path}", "not_allowed")
        raise RequestError(HTTPStatus.NOT_FOUND, f"no such endpoint {path!r}; endpoints: "
                           "GET /v1/info, POST /v1/measure", "not_found")

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise RequestError(HTTPStatus.UNAUTHORIZED,
                               "missing bearer token (send 'Authorization: Bearer TOKEN')",
                               "unauthorized")
        if not hmac.compare_digest(given.strip().encode(), self.server.token.encode()):
            raise RequestError(HTTPStatus.UNAUTHORIZED, "token refused", "unauthorized")

    def _info(self) -> dict[str, Any]:
        return device_info(self.server.max_upload_bytes)

    def _measure(self) -> dict[str, Any]:
        protocol, shapes = parse_measure_query(urlsplit(self.path).query)
        model = self._read_body()
        with self.server.device_lock:  # checking a large model would disturb a timing
            try:
                check_onnx_upload(model)
                stats = time_model(model, protocol, shapes)
            except InvalidModel as error:
                raise RequestError(HTTPStatus.BAD_REQUEST, str(error), "invalid_model") from None
            except (ValueError, _OrtInvalidArgument) as error:
                # Shapes missing for a dynamic input, or inputs the model does not accept.
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f"the model cannot run with these inputs: {reason[:300]}",
                                   "invalid_input") from None
        return stats.to_dict()

    def _read_body(self) -> bytes:
        text = self.headers.get("Content-Length")
        if text is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED,
                               "Content-Length is required (the ONNX model as the body)")
        try:
            length = int(text)
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"Content-Length {text!r} is not an integer") from None
        if length < 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"Content-Length {length} is negative")
        if length > self.server.max_upload_bytes:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"upload of {length} bytes exceeds this agent's limit of "
                               f"{self.server.max_upload_bytes} bytes", "too_large")
        if length == 0:
            self._body_read = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "empty body: send the ONNX model",
                               "invalid_model")
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) != length:
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"body ended after {len(body)} of {length} bytes")
        return body

    def _send(self, status: HTTPStatus, document: dict[str, Any]) -> None:
        payload = json.dumps(document, sort_keys=True).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Bearer realm="nanosd-nas-agent"')
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:  # the client went away; nothing left to tell it
            logger.info("client %s disconnected before the answer", self.address_string())

    def _discard_unread_body(self) -> None:
        """Read (and drop) a body that was refused, so the client reads our answer.

        Closing a socket with unread input makes the kernel reset the connection, and the
        client would see "connection reset" instead of the 401 or 413 it was sent.
        """
        if self._body_read or self.command != "POST":
            return
        try:
            remaining = min(int(self.headers.get("Content-Length") or 0), _DRAIN_LIMIT)
        except ValueError:
            return
        try:
            if not isinstance(self.connection, ssl.SSLSocket):  # (TLS would be cut short)
                self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_DRAIN_TIMEOUT_S)
            while remaining > 0:
                chunk = self.rfile.read1(min(remaining, 1 << 16))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass  # the client hung up or stalled: either way the connection is done


def make_server(host: str, port: int, *, token: str,
                max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                tls: ssl.SSLContext | None = None) -> AgentServer:
    """An agent bound to ``host:port`` (port 0 picks a free port; see :attr:`AgentServer.url`),
    speaking HTTPS when given a :func:`tls_context`."""
    return AgentServer((host, port), token=token, max_upload_bytes=max_upload_bytes, tls=tls)


def run_agent(*, host: str, port: int, token: str | None,
              max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
              tls_cert: str | None = None, tls_key: str | None = None,
              announce: Callable[[str], None]) -> None:
    """Start an agent and serve until interrupted (over HTTPS with ``tls_cert`` and
    ``tls_key``, PEM files).

    ``announce`` receives ``listening on http://HOST:PORT`` (``https://``) once the socket is
    bound (so a caller that passed port 0 learns the port), then, when no token was given, the
    token generated for this run — the only place it is ever shown.

    Raises:
        ValueError: a bad token, or TLS files that do not load (before anything listens).
        OSError: the address cannot be bound.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    generated = not token
    token = token or secrets.token_urlsafe(24)
    server = make_server(host, port, token=token, max_upload_bytes=max_upload_bytes, tls=tls)
    announce(f"listening on {server.url}")
    if generated:
        announce(f"token: {token}  (generated for this run; pass --token or set {TOKEN_ENV} "
                 "to choose one)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
