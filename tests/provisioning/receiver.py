"""A real Standard Webhooks receiver for the tests: an HTTP server on 127.0.0.1 (a thread)
that verifies each request's signature with the ``standardwebhooks`` library.

The library checks the ``webhook-timestamp`` against its own clock (within five minutes);
the tests run the portal on a frozen clock (years from the machine's), so the receiver's
clock is the portal's: :class:`PortalClockWebhook` overrides only that check.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from portal.kernel.clock import now_utc

TOLERANCE = dt.timedelta(minutes=5)


class PortalClockWebhook(Webhook):
    """The library's verification, with "now" read from the portal's (test) clock."""

    def _Webhook__verify_timestamp(self, timestamp_header: str) -> dt.datetime:  # noqa: N802
        try:
            timestamp = dt.datetime.fromtimestamp(float(timestamp_header), tz=dt.UTC)
        except Exception as error:
            raise WebhookVerificationError("Invalid Signature Headers") from error
        now = now_utc()
        if timestamp < now - TOLERANCE:
            raise WebhookVerificationError("Message timestamp too old")
        if timestamp > now + TOLERANCE:
            raise WebhookVerificationError("Message timestamp too new")
        return timestamp


@dataclass
class Received:
    webhook_id: str
    type: str
    body: dict[str, Any]
    headers: dict[str, str]
    verified_with: list[str]  # which of the receiver's secrets verified it


@dataclass
class Receiver:
    """What the server saw; ``answer`` is the status it replies with (503: "down")."""

    port: int = 0
    secrets: list[str] = field(default_factory=list)
    answer: int = 200
    retry_after: str | None = None  # a Retry-After header sent with an answer >= 300
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # ids that failed verification
    requests: int = 0
    #: Hold the first request of this type unanswered until ``release`` is set (a worker
    #: can be killed while it waits for the answer); ``held`` is set when it arrives.
    hold_type: str | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    held_ids: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def ids(self) -> list[str]:
        return [r.webhook_id for r in self.received]

    @property
    def types(self) -> list[str]:
        return [r.type for r in self.received]

    def unique(self) -> list[Received]:
        """What an idempotent receiver keeps: the first of each ``webhook-id``."""
        seen: set[str] = set()
        out = []
        for r in self.received:
            if r.webhook_id not in seen:
                seen.add(r.webhook_id)
                out.append(r)
        return out


def start(receiver: Receiver) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("content-length") or 0)
            data = self.rfile.read(length)
            receiver.requests += 1
            headers = {k.lower(): v for k, v in self.headers.items()}
            if receiver.hold_type and not receiver.held.is_set():
                try:
                    kind = json.loads(data).get("type")
                except ValueError:
                    kind = None
                if kind == receiver.hold_type:
                    receiver.held_ids.append(headers.get("webhook-id", ""))
                    receiver.held.set()
                    receiver.release.wait(120)
                    return  # never answered: the sender died waiting
            if receiver.answer >= 300:
                self._reply(receiver.answer, b'{"error":"down"}', receiver.retry_after)
                return
            verified = []
            body: Any = None
            for secret in receiver.secrets:
                try:
                    body = PortalClockWebhook(secret).verify(data, headers)
                except WebhookVerificationError:
                    continue
                verified.append(secret)
            if not verified:
                receiver.refused.append(headers.get("webhook-id", ""))
                self._reply(400, b'{"error":"bad signature"}')
                return
            receiver.received.append(
                Received(headers["webhook-id"], body["type"], body, headers, verified)
            )
            self._reply(200, json.dumps({"ok": True}).encode())

        def _reply(self, status: int, payload: bytes, retry_after: str | None = None) -> None:
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
