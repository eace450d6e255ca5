"""``nanosd-nas serve`` (the API and dashboard) and ``nanosd-nas worker`` (runs queued
studies)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from nanosd_nas.cli._options import DbOption, RayOption, open_store
from nanosd_nas.cli._output import UserError, console, emit_json, err_console
from nanosd_nas.cli._signals import ABORTED, stop_on_signals


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: The names a server bound to loopback answers to besides its address.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Addresses that bind every interface: the server cannot tell its names from them.
EVERY_INTERFACE = ("0.0.0.0", "::", "")


def served_hosts(host: str, allowed: list[str]) -> list[str] | None:
    """The ``Host`` names the server answers to: the address it binds (with the loopback
    names when that is loopback) and ``allowed``; None (any) for a server bound to every
    interface that was not told its names."""
    if host in EVERY_INTERFACE:
        return list(allowed) or None
    names = {host, *(LOOPBACK_NAMES if _loopback(host) else ()), *allowed}
    return sorted(names)


def _tls_files(cert: str | None, key: str | None) -> bool:
    """True when the server is to speak HTTPS; the files are loaded once here, so that one
    that does not load is a line at start rather than a traceback from the server."""
    from nanosd_nas.latency_models.agent import tls_context

    if cert is None and key is None:
        return False
    if cert is None or key is None:
        raise UserError("--tls-cert and --tls-key go together")
    try:
        tls_context(cert, key)
    except ValueError as error:
        raise UserError(str(error)) from None
    return True


def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 8000,
    db: DbOption = None,
    token: Annotated[str | None, typer.Option(
        envvar="NANOSD_NAS_API_TOKEN", show_default=False,
        help="Bearer token that write endpoints (submit, stop) require; needed to bind "
             "beyond loopback.")] = None,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", envvar="NANOSD_NAS_ALLOWED_HOSTS", show_default=False,
        help="A name clients reach the server by (repeatable; *.domain for its subdomains; "
             "the variable takes them separated by spaces). The bound address, and the "
             "loopback names on loopback, are always served; other names get 400. Bound to "
             "0.0.0.0 without any, every name is served.")] = None,
    tls_cert: Annotated[str | None, typer.Option(
        "--tls-cert", help="PEM certificate (chain) to serve HTTPS with (with --tls-key).",
    )] = None,
    tls_key: Annotated[str | None, typer.Option(
        "--tls-key", help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Serve the API (/api, docs at /docs) and the dashboard pages.

    Without a token, writes from another site's pages are refused (403)."""
    import uvicorn
    from pydantic import ValidationError

    from nanosd_nas.dashboards import Settings, create_app

    if token is not None and (not token or token != token.strip()):
        raise UserError("--token (or NANOSD_NAS_API_TOKEN) must be non-empty, without "
                        "surrounding spaces")
    if token is None and not _loopback(host):
        raise UserError(f"serving on {host} (beyond loopback) needs --token or "
                        "NANOSD_NAS_API_TOKEN: anyone who reaches the address could submit "
                        "and stop studies")
    try:
        hosts = Settings(allowed_hosts=served_hosts(host, allowed_host or [])).allowed_hosts
    except ValidationError as error:
        reason = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
        raise UserError(reason.replace("allowed host", "--allowed-host", 1)) from None
    https = _tls_files(tls_cert, tls_key)
    with open_store(db, upgrade=True) as store:
        settings = Settings(database_url=store.url, api_token=token, allowed_hosts=hosts)
        app = create_app(settings, store=store)
        shown = f"[{host}]" if ":" in host else host
        console.print(f"nanosd-nas dashboard on {'https' if https else 'http'}://{shown}:{port}/"
                      " (API docs at /docs)")
        uvicorn.run(app, host=host, port=port, log_level="warning", ssl_certfile=tls_cert,
                    ssl_keyfile=tls_key)


def worker(
    db: DbOption = None, ray_address: RayOption = None,
    join_ray: Annotated[str | None, typer.Option(
        "--join-ray", metavar="HOST:PORT", show_default=False,
        help="Start a Ray node here (no CPUs) joined to the cluster whose head is at HOST:PORT "
             "and run the studies through it: what a machine or container that runs no Ray "
             "node needs to use a cluster. Instead of --ray-address.")] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Run the studies queued now, then exit (instead of waiting for "
                       "more).")] = False,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between looks at an empty "
                                        "queue.")] = 2.0,
    reclaim_after: Annotated[float, typer.Option(
        min=30.0, help="Take over a running study whose runner has not been seen for this many "
                       "seconds (its worker died).")] = 300.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON (with --once).")
                           ] = False,
) -> None:
    """Run studies submitted through the API, one at a time, as they are queued. Start as many
    workers as you like: each queued study goes to exactly one. A study whose worker died is
    taken over by the next free worker. Each study's outcome is printed as it ends. Ctrl-C or
    SIGTERM lets the trials in flight land, leaves the study running now 'stopped' ('study run
    NAME' resumes it) and exits; a second one aborts at once."""
    from nanosd_nas.cli._ray_node import check_node, ray_node_for
    from nanosd_nas.search import StudyWorker

    if join_ray is not None and ray_address is not None:
        raise UserError("give --join-ray or --ray-address, not both")
    # With --json the outcomes are one document at the end; each line goes to stderr then.
    log = err_console if json_output else console
    try:
        with open_store(db, upgrade=True) as store, ray_node_for(join_ray) as node:
            study_worker = StudyWorker(
                store, ray_address=join_ray or ray_address,
                on_claim=lambda record: err_console.print(f"worker: running {record.name}"),
                on_outcome=lambda outcome: log.print(outcome.line(), markup=False),
                orphaned_after_s=reclaim_after)
            with stop_on_signals(study_worker.interrupt,
                                 finishing="worker: finishing the trials in flight; the study "
                                           "is left stopped, then the worker exits"):
                outcomes = study_worker.serve(
                    once=once, poll_s=poll,
                    should_stop=lambda: node is not None and not node.alive)
            check_node(node)
    except KeyboardInterrupt:
        err_console.print("worker aborted: the study it ran is left stopped")
        raise typer.Exit(ABORTED) from None
    if json_output:
        emit_json([{"study": o.study, "status": o.status, "reason": o.reason,
                    "complete": o.summary.complete if o.summary else None} for o in outcomes])
