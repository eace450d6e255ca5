"""What stands between the network and the handlers: the host check (DNS rebinding), the
same-origin check on writes of a server without a token (cross-site forms), and the body limit.

Each is a plain ASGI middleware, so a refusal never reaches a handler and never reads more of
the request than it must.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Requests that change nothing: never refused for where they come from.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: What an HTML form can send without a script: a cross-site page can post these anywhere
#: without the browser asking the server first (no CORS preflight).
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
#: A refused body is read and dropped up to this much (or twice the limit, if more) before the
#: 413 goes out, so that the client reads the answer instead of a reset connection; a larger
#: body is answered at once and its connection closed.
DRAIN_BYTES = 1024 * 1024
#: ... and for at most this long: a client that stops sending cannot hold the answer back.
DRAIN_TIMEOUT_S = 2.0


def host_guard(app: ASGIApp, allowed_hosts: Sequence[str] | None) -> ASGIApp:
    """``app`` answering 400 to a ``Host`` header not in ``allowed_hosts`` (None: any host).

    A page on another site whose name an attacker re-points at this server's address (DNS
    rebinding) sends its own name as the host, so it is refused here before it can read or
    write anything.
    """
    if allowed_hosts is None:
        return app
    return TrustedHostMiddleware(app, allowed_hosts=list(allowed_hosts), www_redirect=False)


class SameOriginWrites:
    """A write (any method but GET, HEAD, OPTIONS) from a browser page of another origin is
    refused with 403, and so is a form-encoded body sent to the JSON API.

    For a server without a token, where nothing else tells the user's own requests from those
    a hostile page makes the user's browser send. A browser names the page behind a request in
    ``Origin`` (and ``Sec-Fetch-Site``); a client that is not a browser sends neither and
    passes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        reason = _cross_site_reason(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        await _drain(receive, 0, DRAIN_BYTES)  # a form's body: read out, so the 403 is read
        await _send_json(send, 403, f"{reason}; this server has no API token, so it takes "
                                    "writes only from its own pages and from clients that are "
                                    "not browsers", close=True)


def _cross_site_reason(scope: Scope) -> str | None:
    headers = Headers(scope=scope)
    fetch_site = headers.get("sec-fetch-site", "").lower()
    if fetch_site in ("cross-site", "same-site"):
        return f"a {fetch_site} request was refused"
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, headers.get("host", ""), scope):
        return f"a request from the page at {origin[:100]!r} was refused"
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if scope["path"].startswith("/api/") and content_type in FORM_TYPES:
        return (f"the API takes JSON or YAML, not {content_type} (what a form on another "
                "site can send)")
    return None


def _same_origin(origin: str, host: str, scope: Scope) -> bool:
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null": a sandboxed page, a local file
    default = {"http": 80, "https": 443}

    def canonical(scheme: str, netloc: str) -> str:
        netloc = netloc.lower()
        return netloc.removesuffix(f":{default.get(scheme, 0)}")

    # Behind a proxy that ends TLS the server sees http while the page is https: the host and
    # port are what tell two origins apart here.
    return canonical(parts.scheme, parts.netloc) in {canonical(parts.scheme, host),
                                                     canonical(scope.get("scheme", "http"),
                                                               host)}


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether or not the client sent a
    Content-Length (a chunked body is counted as it arrives, and reading stops at the limit).

    The 413 is sent from here the moment the limit is passed: a handler that parses its body
    (a form) would otherwise turn the interruption into its own 400. Whatever the handler sends
    after that is dropped. Before answering, up to :data:`DRAIN_BYTES` (or twice the limit) of
    the rest of the body is read and dropped, for up to :data:`DRAIN_TIMEOUT_S`: a server that
    closes a connection with unread input makes the kernel reset it, and the client would see
    the reset instead of the 413. A body declared larger than that is answered at once.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.drain_bytes = max(DRAIN_BYTES, 2 * limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            # A client waiting for "100 Continue" has sent nothing: nothing to read out.
            if (length.isdigit() and int(length) <= self.drain_bytes
                    and headers.get(b"expect", b"").lower() != b"100-continue"):
                await _drain(receive, 0, self.drain_bytes)
            await self._refuse(send)
            return
        seen, started, refused = 0, False, False

        async def counted() -> Message:
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                if not started and not refused:
                    refused = True
                    if message.get("more_body", False):
                        await _drain(receive, seen, self.drain_bytes)
                    await self._refuse(send)
                raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(_TooLarge):  # answered in counted, unless the answer had begun
            await self.app(scope, counted, guarded)

    async def _refuse(self, send: Send) -> None:
        await _send_json(send, 413, f"the request body is larger than this server accepts "
                                    f"({self.limit} bytes)", close=True)


async def _drain(receive: Receive, seen: int, most: int) -> None:
    """Read and drop the request body until it ends, ``most`` bytes have come (``seen``
    already), or :data:`DRAIN_TIMEOUT_S` have passed: a server that closes a connection with
    unread input makes the kernel reset it, and the client would see the reset instead of the
    answer."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    with contextlib.suppress(TimeoutError):
        while seen <= most:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            message = await asyncio.wait_for(receive(), timeout=left)
            seen += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


async def _send_json(send: Send, status: int, detail: str, *, close: bool = False) -> None:
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


__all__ = ["BodyLimit", "SameOriginWrites", "host_guard"]
