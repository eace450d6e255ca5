"""Talking to a device agent over HTTP (standard library only)."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any
from urllib.parse import urlencode, urlsplit

from ._timing import InvalidModel, InvalidParameter, LatencyStats, Protocol

#: Environment variable naming a PEM file of the certificates (or their authority) that an
#: ``https://`` agent may present, besides those the system trusts: a self-signed agent's.
CA_FILE_ENV = "NANOSD_NAS_AGENT_CA_FILE"


class DeviceUnreachable(ConnectionError):
    """The agent did not answer: refused, timed out, unknown host, connection dropped."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"device agent at {url} is unreachable: {reason}")
        self.url = url
        self.reason = reason


class AgentError(Exception):
    """The agent answered with an error.

    Attributes:
        status: the HTTP status (401: the token was refused; 413: the upload is too large).
        reason: what the agent said.
        code: the agent's machine-readable error code (``unauthorized``, ``invalid_model`` ...).
        url: the agent's base URL.
    """

    def __init__(self, url: str, status: int, reason: str, code: str = "") -> None:
        reason = " ".join(reason.split())[:500]  # one line, whatever the server sent
        if status == 401:
            message = f"device agent at {url} refused the token ({reason})"
        else:
            message = f"device agent at {url} answered {status}: {reason}"
        super().__init__(message)
        self.url = url
        self.status = status
        self.reason = reason
        self.code = code


class AgentBadRequest(AgentError, ValueError):
    """The agent refused a value of the request (HTTP 400): a parameter, the input shapes."""


class AgentInvalidModel(AgentBadRequest, InvalidModel):
    """The agent's runtime could not load the uploaded model (HTTP 400)."""


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameter(f"agent URL {url!r} must look like http://HOST:PORT")
    if parts.path.strip("/") or parts.query:
        raise InvalidParameter(f"agent URL {url!r} must be the agent's root, without a path")
    return f"{parts.scheme}://{parts.netloc}"


def _tls_context(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ValueError) as error:
            raise InvalidParameter(f"cannot load the agent's CA file {os.fspath(ca_file)}: "
                                   f"{getattr(error, 'strerror', None) or 'not PEM'}") from None
    return context


class AgentClient:
    """A device agent's API: :meth:`info` and :meth:`measure`.

    Args:
        url: the agent's root, ``http://HOST:PORT`` or ``https://HOST:PORT``.
        token: the agent's bearer token.
        timeout: seconds to wait for an answer (a measurement waits for the device).
        ca_file: PEM certificates an ``https`` agent's certificate may be signed by (or be),
            besides the system's; :data:`CA_FILE_ENV` if None.
    """

    def __init__(self, *, url: str, token: str, timeout: float = 600.0,
                 ca_file: str | os.PathLike[str] | None = None) -> None:
        if not token:
            raise InvalidParameter("a device agent needs its token")
        if timeout <= 0:
            raise InvalidParameter(f"timeout={timeout} must be positive")
        self.url = _check_url(url)
        self.token = token
        self.timeout = timeout
        # Agents sit on the local network: an HTTP proxy from the environment would only be
        # in the way (and would see the token).
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self.url.startswith("https://"):
            handlers.append(urllib.request.HTTPSHandler(
                context=_tls_context(ca_file or os.environ.get(CA_FILE_ENV) or None)))
        self._opener = urllib.request.build_opener(*handlers)

    def info(self) -> dict[str, Any]:
        """Device fingerprint, execution providers, agent version, ``max_upload_bytes``."""
        info = self._request("GET", "/v1/info")
        if info.get("api") != "v1" or not isinstance(info.get("fingerprint"), dict):
            raise AgentError(self.url, 200, "the answer to /v1/info is not a nanosd-nas agent's")
        return info

    def measure(self, model: bytes, protocol: Protocol,
                shapes: dict[str, list[int]] | None = None) -> LatencyStats:
        """Upload ``model`` and measure it on the device with ``protocol``.

        Raises:
            AgentInvalidModel: the device's runtime cannot load the model.
            AgentBadRequest: a parameter or the input shapes were refused.
            AgentError: any other refusal (token, size).
            DeviceUnreachable: no answer.
        """
        query: dict[str, Any] = {"threads": protocol.threads, "warmup": protocol.warmup,
                                 "runs": protocol.runs, "provider": protocol.provider}
        if not protocol.graph_optimization:
            query["graph_optimization"] = "off"
        if protocol.sessions != 1:  # named only when asked for: older agents know no sessions
            query["sessions"] = protocol.sessions
        if shapes:
            query["shapes"] = json.dumps(shapes, separators=(",", ":"))
        document = self._request("POST", f"/v1/measure?{urlencode(query)}", model)
        try:
            return LatencyStats.from_dict(document)
        except (KeyError, TypeError) as error:
            raise AgentError(self.url, 200, f"malformed statistics ({error!r})") from None

    def _request(self, method: str, path: str, body: bytes | None = None) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if body is not None:
            request.add_header("Content-Type", "application/octet-stream")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return self._json(response.read(), 200)
        except urllib.error.HTTPError as error:
            document = self._json(error.read(), error.code)
            message = document.get("error")
            reason = message if isinstance(message, str) else (
                f"{error.reason} (not a nanosd-nas agent answer; is the URL right?)")
            code = str(document.get("code", ""))
            if error.code == 400:
                kind = AgentInvalidModel if code == "invalid_model" else AgentBadRequest
                raise kind(self.url, error.code, reason, code) from None
            raise AgentError(self.url, error.code, reason, code) from None
        except urllib.error.URLError as error:
            raise DeviceUnreachable(self.url, str(error.reason)) from None
        except TimeoutError:
            raise DeviceUnreachable(self.url, f"no answer within {self.timeout:g} s") from None
        except (OSError, HTTPException) as error:  # reset, dropped mid-answer
            raise DeviceUnreachable(self.url, f"{type(error).__name__}: {error}") from None

    def _json(self, payload: bytes, status: int) -> dict[str, Any]:
        try:
            document = json.loads(payload or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            if status == 200:
                raise AgentError(self.url, status, "the answer is not JSON; is this a "
                                 "nanosd-nas agent?") from None
            return {}
        if not isinstance(document, dict):
            raise AgentError(self.url, status, "the answer is not a JSON object")
        return document
