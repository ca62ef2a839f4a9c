"""Run the real OpenID provider (npm ``oidc-provider``, tests/oidc/provider.mjs) for tests.

:class:`OidcProvider` starts ``node provider.mjs <port>`` on 127.0.0.1 and a
free port, registers clients through Dynamic Client Registration (one per test
organisation), describes accounts, and signs a person in on the provider's
development login form with ``requests`` — the form a person would fill in,
POSTed as the browser would. Stop it with :meth:`stop`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

HERE = Path(__file__).resolve().parent
START_SECONDS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_install() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed for the SSO tests (the test identity provider).")
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(
            "The test identity provider is not installed: run `make oidc` (npm ci in tests/oidc).",
            pytrace=False,
        )
    return node


class OidcProvider:
    """A running oidc-provider on 127.0.0.1."""

    def __init__(self) -> None:
        node = _require_install()
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._output: list[str] = []
        self.process = subprocess.Popen(
            [node, str(HERE / "provider.mjs"), str(self.port)],
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NODE_ENV": "test"},
        )
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self._output.append(line.rstrip())
                if line.startswith("READY "):
                    ready.set()

        threading.Thread(target=read, name="oidc-provider-output", daemon=True).start()
        if not ready.wait(START_SECONDS):
            self.stop()
            pytest.fail("oidc-provider did not start:\n" + "\n".join(self._output[-20:]))

    @property
    def output(self) -> str:
        return "\n".join(self._output)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    # ------------------------------------------------------------ setup

    def register_client(self, redirect_uri: str) -> tuple[str, str]:
        """A new confidential client for ``redirect_uri``: (client_id, client_secret)."""
        response = requests.post(
            self.issuer + "/reg",
            json={
                "redirect_uris": [redirect_uri],
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic",
            },
            timeout=10,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return body["client_id"], body["client_secret"]

    def add_account(
        self,
        login: str,
        *,
        email: str | None = None,
        groups: list[str] | None = None,
        email_verified: bool = True,
        name: str | None = None,
    ) -> None:
        """Describe the account a login name signs in as (email, groups)."""
        body = {"login": login, "email": email or login, "email_verified": email_verified}
        if groups is not None:
            body["groups"] = groups
        if name:
            body["name"] = name
        response = requests.post(self.issuer + "/__test/accounts", json=body, timeout=10)
        assert response.status_code == 204, response.text

    # ------------------------------------------------------------ a person signing in

    def sign_in(self, authorize_url: str, login: str, password: str = "any") -> str:  # noqa: S107
        """Follow ``authorize_url`` through login and consent; the redirect back, in full.

        The provider's last redirect goes to the portal; it is returned, not
        followed, so the test can hand it to its own client.
        """
        assert authorize_url.startswith(self.issuer), authorize_url
        browser = requests.Session()
        response = browser.get(authorize_url, allow_redirects=False, timeout=10)
        for _ in range(12):
            if response.status_code in (301, 302, 303, 307):
                location = urljoin(response.url, response.headers["Location"])
                if not location.startswith(self.issuer):
                    return location
                response = browser.get(location, allow_redirects=False, timeout=10)
                continue
            html = response.text
            action = re.search(r'<form[^>]*action="([^"]+)"', html)
            prompt = re.search(r'name="prompt" value="(\w+)"', html)
            assert response.status_code == 200 and action and prompt, (
                f"unexpected provider page {response.status_code}: {html[:500]}"
            )
            data = {"prompt": prompt.group(1)}
            if prompt.group(1) == "login":
                data.update(login=login, password=password)
            response = browser.post(
                urljoin(response.url, action.group(1)),
                data=data,
                allow_redirects=False,
                timeout=10,
            )
        raise AssertionError("the provider never sent the browser back")


def wait_until_closed(port: int, seconds: float = 5) -> None:
    """Wait until nothing listens on ``port`` (a stopped provider)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
