"""The bare baseline: a minimal WSGI app, no framework, no authentication.

Served by the same gunicorn settings as the portal (``gunicorn.conf.py``) against
the same database (``BARE_DATABASE_URL``, a SQLAlchemy-style URL), it does the
least a request of each kind can do, so the portal's figures can be read as a
ratio to it:

* ``POST /seats/<subscription>`` with ``{"user_email": …}``: one INSERT of a row;
* ``DELETE /seats/<subscription>/<email>``: one DELETE of that row (indexed);
* ``GET /check?organisation=…&user_email=…&product=…``: one indexed SELECT,
  the entitlement query written by hand;
* ``GET /healthz``.

Each statement is its own transaction (autocommit). One connection per worker
thread, opened on first use (after gunicorn forks).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from typing import Any
from urllib.parse import parse_qs, unquote

_local = threading.local()
_URL = os.environ.get("BARE_DATABASE_URL", "")
_SQLITE = _URL.startswith("sqlite")

CHECK_SQL = (
    "SELECT s.subscription_id, s.assigned_at, p.vendor_id FROM seat_assignments s "
    "JOIN users u ON u.id = s.user_id "
    "JOIN organisations o ON o.id = s.organisation_id "
    "JOIN products p ON p.id = s.product_id "
    "WHERE o.slug = {p} AND o.status = 'active' AND u.email = {p} AND u.is_active "
    "AND p.sku = {p} AND s.released_at IS NULL LIMIT 1"
)


def _connection() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is not None:
        return conn
    if _SQLITE:
        conn = sqlite3.connect(_URL[len("sqlite:///") :], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
    else:
        import psycopg

        conn = psycopg.connect("postgresql://" + _URL.split("://", 1)[1], autocommit=True)
    _local.conn = conn
    return conn


def _sql(statement: str) -> str:
    return statement.replace("{p}", "?" if _SQLITE else "%s")


INSERT = _sql(
    "INSERT INTO bench_seats (subscription_id, user_email, assigned_at) "
    "VALUES ({p}, {p}, CURRENT_TIMESTAMP)"
)
DELETE = _sql("DELETE FROM bench_seats WHERE subscription_id = {p} AND user_email = {p}")
CHECK = _sql(CHECK_SQL)


def _reply(start_response: Any, status: str, data: Any) -> list[bytes]:
    payload = json.dumps(data).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    )
    return [payload]


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    method = environ["REQUEST_METHOD"]
    parts = environ.get("PATH_INFO", "").strip("/").split("/")
    if parts == ["healthz"]:
        return _reply(start_response, "200 OK", {"status": "ok"})
    if parts[0] == "seats" and method == "POST" and len(parts) == 2:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        email = json.loads(environ["wsgi.input"].read(length))["user_email"]
        _connection().execute(INSERT, (int(parts[1]), email))
        return _reply(
            start_response, "201 Created", {"subscription": parts[1], "user_email": email}
        )
    if parts[0] == "seats" and method == "DELETE" and len(parts) == 3:
        email = unquote(parts[2])
        _connection().execute(DELETE, (int(parts[1]), email))
        return _reply(start_response, "200 OK", {"subscription": parts[1], "user_email": email})
    if parts == ["check"] and method == "GET":
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        row = (
            _connection()
            .execute(CHECK, (query["organisation"], query["user_email"], query["product"]))
            .fetchone()
        )
        seat = {"subscription": row[0], "assigned_at": str(row[1])} if row else None
        return _reply(start_response, "200 OK", {"entitled": row is not None, "seat": seat})
    return _reply(start_response, "404 Not Found", {"error": "not found"})
