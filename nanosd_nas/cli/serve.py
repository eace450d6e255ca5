"""``nanosd-nas serve`` (the API and dashboard) and ``nanosd-nas worker`` (runs queued
studies)."""

from __future__ import annotations

import ipaddress
import signal
from typing import Annotated, Any

import typer

from nanosd_nas.cli._options import DbOption, RayOption, open_store
from nanosd_nas.cli._output import UserError, console, emit_json, err_console


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 8000,
    db: DbOption = None,
    token: Annotated[str | None, typer.Option(
        envvar="NANOSD_NAS_API_TOKEN", show_default=False,
        help="Bearer token that write endpoints (submit, stop) require; needed to bind "
             "beyond loopback.")] = None,
) -> None:
    """Serve the API (/api, docs at /docs) and the dashboard pages."""
    import uvicorn

    from nanosd_nas.dashboards import Settings, create_app

    if token is not None and (not token or token != token.strip()):
        raise UserError("--token (or NANOSD_NAS_API_TOKEN) must be non-empty, without "
                        "surrounding spaces")
    if token is None and not _loopback(host):
        raise UserError(f"serving on {host} (beyond loopback) needs --token or "
                        "NANOSD_NAS_API_TOKEN: anyone who reaches the address could submit "
                        "and stop studies")
    with open_store(db, upgrade=True) as store:
        settings = Settings(database_url=store.url, api_token=token)
        app = create_app(settings, store=store)
        console.print(f"nanosd-nas dashboard on http://{host}:{port}/ (API docs at /docs)")
        uvicorn.run(app, host=host, port=port, log_level="warning")


def worker(
    db: DbOption = None, ray_address: RayOption = None,
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
    taken over by the next free worker. SIGTERM or Ctrl-C ends the worker after its current
    study."""
    from nanosd_nas.search import StudyWorker

    stopping = {"asked": False}

    def ask_to_stop(*_: Any) -> None:
        stopping["asked"] = True
        err_console.print("worker: finishing the current study, then exiting")

    previous = signal.signal(signal.SIGTERM, ask_to_stop)
    try:
        with open_store(db, upgrade=True) as store:
            outcomes = StudyWorker(
                store, ray_address=ray_address,
                on_claim=lambda record: err_console.print(f"worker: running {record.name}"),
                orphaned_after_s=reclaim_after,
            ).serve(once=once, poll_s=poll, should_stop=lambda: stopping["asked"])
    except KeyboardInterrupt:
        raise UserError("worker interrupted") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    documents = [{"study": o.study, "status": o.status, "reason": o.reason,
                  "complete": o.summary.complete if o.summary else None} for o in outcomes]
    if json_output:
        emit_json(documents)
        return
    for document in documents:
        console.print(f"{document['study']}: {document['status']}"
                      + (f" ({document['reason']})" if document["reason"] else ""))
