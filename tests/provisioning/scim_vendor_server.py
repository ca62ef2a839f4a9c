"""A vendor's SCIM 2.0 service for the tests: ``scim2-server`` (python-scim) on 127.0.0.1.

The real server of the ``scim2-server`` command (its in-memory storage, its bearer-token
application, RFC 7643's User and Group), served by a threading WSGI server on a free
port in a thread of the test process, so a test can read what the vendor holds and
change it behind the portal's back (drift) over plain HTTP, like a vendor's staff would.

* :func:`start` / :meth:`VendorServer.stop`, and the pytest fixture ``scim_vendor``
  (tests/provisioning/conftest.py);
* :meth:`VendorServer.down` / :meth:`VendorServer.up`: the vendor is away (connections
  refused) and back on the same port with the same users;
* :meth:`VendorServer.fail_next`: the next requests are answered with an error status
  (503 with ``Retry-After``, 429, 400…) before the SCIM application sees them;
* :attr:`VendorServer.requests`: every request that reached the SCIM application, in
  order (method and path).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx2
from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.testserver.cli import ThreadingWSGIServer
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass
class _Failures:
    remaining: int = 0
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[int, dict[str, str]] | None:
        with self.lock:
            if self.remaining <= 0:
                return None
            self.remaining -= 1
            return self.status, dict(self.headers)


class VendorServer:
    """One vendor's SCIM service; ``base_url`` ends in ``/v2``."""

    def __init__(self, token: str | None = None, *, port: int = 0) -> None:
        self.token = token if token is not None else secrets.token_urlsafe(24)
        config = load_default_service_provider_config()
        config.authentication_schemes = [BEARER_TOKEN_SCHEME]
        self.provider = ScimProvider.from_discovery(
            load_default_schemas().values(),
            load_default_resource_types().values(),
            config=config,
        )
        self.storage = InMemoryStorage()
        self.application = BearerTokenApplication(
            self.storage,
            self.provider,
            service=ScimService(self.provider, secret=secrets.token_urlsafe(16)),
            bearer_tokens=[self.token],
        )
        self.failures = _Failures()
        self.requests: list[tuple[str, str]] = []
        self._requests_lock = threading.Lock()
        self.port = port
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ serving

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        failure = self.failures.take()
        if failure is not None:
            status, headers = failure
            body = json.dumps(
                {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                    "status": str(status),
                    "detail": "the test made the vendor fail",
                }
            ).encode()
            start_response(
                f"{status} Failing",
                [("Content-Type", "application/scim+json"), *headers.items()],
            )
            return [body]
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        with self._requests_lock:
            self.requests.append((environ["REQUEST_METHOD"], path + ("?" + query if query else "")))
        return self.application(environ, start_response)

    def up(self) -> VendorServer:
        """Serve (again, on the same port once it had one)."""
        assert self._server is None, "already up"
        self._server = make_server(
            "127.0.0.1",
            self.port,
            self._wsgi,
            server_class=ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"scim-vendor-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop serving and close the socket: connections are refused until :meth:`up`."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    stop = down

    def fail_next(self, count: int, status: int = 503, **headers: str) -> None:
        """Answer the next ``count`` requests with ``status`` (``Retry_After="2"``...)."""
        with self.failures.lock:
            self.failures.remaining = count
            self.failures.status = status
            self.failures.headers = {k.replace("_", "-"): v for k, v in headers.items()}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2"

    # ------------------------------------------------------------ what the vendor holds

    def http(self) -> httpx2.Client:
        """A plain HTTP client with the vendor's token: the vendor's own staff."""
        return httpx2.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )

    def users(self) -> list[dict[str, Any]]:
        """Every user the vendor holds, as SCIM JSON, read over HTTP (all pages)."""
        out: list[dict[str, Any]] = []
        with self.http() as client:
            start = 1
            while True:
                page = client.get("/Users", params={"startIndex": start, "count": 500}).json()
                resources = page.get("Resources", [])
                out.extend(resources)
                start += len(resources)
                if not resources or start > page.get("totalResults", 0):
                    return out

    def user(self, user_name: str) -> dict[str, Any] | None:
        """The vendor's user named ``user_name`` (case-insensitive), or None."""
        wanted = user_name.lower()
        for user in self.users():
            if user.get("userName", "").lower() == wanted:
                return user
        return None

    def count_users(self) -> int:
        with self.http() as client:
            return int(client.get("/Users", params={"count": 0}).json()["totalResults"])

    def groups(self) -> list[dict[str, Any]]:
        with self.http() as client:
            return list(client.get("/Groups", params={"count": 1000}).json().get("Resources", []))

    def add_user(self, user_name: str, *, active: bool = True) -> dict[str, Any]:
        """A user created by the vendor's staff, not by the portal."""
        with self.http() as client:
            answer = client.post(
                "/Users",
                json={
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "active": active,
                },
            )
            assert answer.status_code == 201, answer.text
            return dict(answer.json())

    def delete_user(self, resource_id: str) -> None:
        with self.http() as client:
            answer = client.delete(f"/Users/{resource_id}")
            assert answer.status_code == 204, answer.text


def start(token: str | None = None) -> VendorServer:
    """A vendor's SCIM service, up on a free port."""
    return VendorServer(token).up()
