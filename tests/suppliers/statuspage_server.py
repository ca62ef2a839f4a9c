"""A Statuspage-format site for the tests: a real HTTP server on 127.0.0.1 (a free port).

It serves ``/api/v2/summary.json`` from whatever the test puts in it: a summary document
(:func:`summary` builds one), raw bytes (garbage), an HTTP status, a delay before the
answer (slower than the poller's timeout), and it can stop (the port then refuses
connections) and start again on the same port.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import free_port

SUMMARY_PATH = "/api/v2/summary.json"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def incident(
    incident_id: str,
    name: str,
    *,
    status: str = "investigating",
    impact: str = "major",
    created_at: dt.datetime,
    updates: list[tuple[str, str, str, dt.datetime]] = (),  # (id, status, body, at)
) -> dict[str, Any]:
    """One entry of the summary's ``incidents`` (Statuspage's field names)."""
    return {
        "id": incident_id,
        "name": name,
        "status": status,
        "impact": impact,
        "created_at": _iso(created_at),
        "updated_at": _iso(max([created_at, *(u[3] for u in updates)])),
        "shortlink": f"https://stspg.io/{incident_id}",
        "incident_updates": [
            {
                "id": update_id,
                "status": update_status,
                "body": body,
                "created_at": _iso(at),
                "incident_id": incident_id,
            }
            for update_id, update_status, body, at in reversed(updates)  # newest first
        ],
    }


def summary(
    indicator: str = "none",
    description: str = "All Systems Operational",
    *,
    components: dict[str, str] | None = None,
    incidents: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A ``summary.json`` document as Statuspage writes it."""
    return {
        "page": {"id": "abc123", "name": "Example", "url": "https://status.example.com"},
        "status": {"indicator": indicator, "description": description},
        "components": [
            {"id": f"c{i}", "name": name, "status": status, "position": i}
            for i, (name, status) in enumerate((components or {"API": "operational"}).items())
        ],
        "incidents": list(incidents),
        "scheduled_maintenances": [],
    }


class StatuspageServer:
    """Start with :meth:`start`; set :attr:`document` (a dict, or bytes for garbage),
    :attr:`status` and :attr:`delay`; :meth:`stop` makes the port refuse connections."""

    def __init__(self) -> None:
        self.port = free_port()
        self.document: dict[str, Any] | bytes = summary()
        self.status = 200
        self.delay = 0.0
        self.requests = 0
        #: Called (in the server's thread) before each answer, e.g. to write to the database.
        self.on_request: Callable[[], None] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()  # ends a delayed answer early, at stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StatuspageServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.requests += 1
                if owner.on_request is not None:
                    owner.on_request()
                if owner.delay:
                    owner._release.wait(owner.delay)
                if self.path != SUMMARY_PATH:
                    self.send_error(404)
                    return
                document = owner.document
                body = document if isinstance(document, bytes) else json.dumps(document).encode()
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the poller gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> StatuspageServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
