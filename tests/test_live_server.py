"""The test suite's own live server (tests/conftest.py `serve`): a browser hanging up in the
middle of a response must not leave the response open for the garbage collector to warn about
in some later test (CI once failed a passkey test on an unclosed static file that way)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

from tests.conftest import serve


class _File:
    """A response body like a static file's, with a close() that must be called."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self) -> Any:
        yield b"x" * 1000

    def close(self) -> None:
        self.closed.set()


def test_a_response_is_closed_when_the_client_hangs_up_after_it() -> None:
    bodies: list[_File] = []

    def app(environ: dict[str, Any], start_response: Any) -> _File:
        start_response("200 OK", [("Content-Length", "1000")])
        body = _File()
        bodies.append(body)
        return body

    server = serve(app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = socket.create_connection(("127.0.0.1", server.server_port))
        # The request promises a body it sends only the start of, so that after answering, the
        # server waits in its drain of the request; the client then hangs up with a reset
        # (linger 0), as a browser navigating away does, and that drain fails.
        client.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nstart")
        client.recv(1)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        deadline = time.monotonic() + 10
        while not bodies and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bodies, "the server never called the app"
        assert bodies[0].closed.wait(10), "the response was left open"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
