"""Rate limits that hold across processes, and the client address they count by.

* **Storage.** Flask-Limiter counts in Redis (``PORTAL_REDIS_URL``), so every
  gunicorn worker and every machine sees the same counts. Production refuses to
  start without Redis unless ``PORTAL_SINGLE_PROCESS=1`` says exactly one process
  serves (:func:`portal.config.rate_limit_settings` reads every setting used here).
  When Redis cannot be reached the limits fall back to counting in the process
  (Flask-Limiter's in-memory fallback), one warning is logged, :func:`limits_degraded`
  says so, and sign-in keeps working; Flask-Limiter checks Redis again now and then
  and goes back to it when it answers.
* **The client address.** ``X-Forwarded-For`` is believed only when the peer is
  a configured proxy (``PORTAL_TRUSTED_PROXIES``, addresses or networks, default
  none): the client is then its right-most hop that is not a trusted proxy
  (:class:`TrustedProxies`, a WSGI middleware). Everything downstream, the limits
  and the audit log, reads ``request.remote_addr``.
* **Sign-in.** Failed sign-ins count per (email, address) pair at
  ``PORTAL_LOGIN_RATE_LIMIT`` and per address at the much higher
  ``PORTAL_LOGIN_ADDRESS_RATE_LIMIT``, so someone mistyping other emails from the
  same office does not lock a person out. Password-reset requests likewise. Wrong
  codes at the second sign-in step count per person (:func:`second_factor_key`) at
  the same limit, and per address at the address's.
* **Tokens.** API and SCIM calls count per bearer token (``PORTAL_API_RATE_LIMIT``,
  ``PORTAL_SCIM_RATE_LIMIT``), a usage batch once. The entitlement-check fast path
  (:mod:`portal.api.fastpath`) counts in the same bucket (:func:`fast_path_allows`,
  handed to it by :func:`portal.create_app`) and hands the request to Flask when the
  limit is reached or Redis is in doubt.

A refused request gets 429 (problem+json, a SCIM error, or a page, by path) with
``Retry-After`` and the IETF draft's ``RateLimit-Limit``, ``RateLimit-Remaining``
and ``RateLimit-Reset`` (seconds). Answers under the limit carry no such headers,
so the fast path's answers are byte for byte Flask's.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, parse_many

from portal.api.framework import api
from portal.config import Network
from portal.extensions import limiter
from portal.identity.auth import pending_second_factor_user_id
from portal.identity.security import token_digest
from portal.kernel.i18n import _
from portal.scim.api import bp as scim

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

API_SCOPE = "api-token"
SCIM_SCOPE = "scim-token"


# ---------------------------------------------------------------- settings


def setting(name: str) -> Callable[[], str]:
    """A limit read from the app's config at each request (a Flask-Limiter limit provider)."""
    return lambda: current_app.config[name]


# ---------------------------------------------------------------- the client's address


def _address(hop: str) -> Address | None:
    """An address as a proxy writes it (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80``), or None."""
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1 : hop.find("]")] if "]" in hop else ""
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        return ipaddress.ip_address(hop)
    except ValueError:
        return None


def _trusted(address: Address, proxies: Iterable[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, proxies: tuple[Network, ...]
) -> str | None:
    """The client's address: the peer, unless the peer is a trusted proxy.

    Then ``X-Forwarded-For`` is read from the right (each hop was written by the
    proxy after it): the first hop that is not itself a trusted proxy is the client.
    A hop that is not an address ends the walk at the last proxy trusted.
    """
    if not proxies or not peer:
        return peer
    current = _address(peer)
    if current is None or not _trusted(current, proxies):
        return peer
    for hop in reversed((forwarded_for or "").split(",")):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, proxies):
            break
    return str(current)


class TrustedProxies:
    """WSGI middleware: the client's address (and scheme) from trusted proxies only.

    When the peer is in ``PORTAL_TRUSTED_PROXIES``, ``REMOTE_ADDR`` becomes
    :func:`client_address` and ``X-Forwarded-Proto``'s last value (``http`` or
    ``https``) the URL scheme; the peer is kept as ``portal.peer_addr``. Otherwise,
    and by default, forwarded headers are ignored.
    """

    def __init__(self, app: Flask, wsgi_app: Callable[..., Any]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        proxies = self.app.config["PORTAL_TRUSTED_PROXIES"]
        peer = environ.get("REMOTE_ADDR")
        if proxies and peer and (address := _address(peer)) and _trusted(address, proxies):
            environ["portal.peer_addr"] = peer
            environ["REMOTE_ADDR"] = client_address(
                peer, environ.get("HTTP_X_FORWARDED_FOR"), proxies
            )
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").rpartition(",")[2].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
        return self.wsgi_app(environ, start_response)


# ---------------------------------------------------------------- keys


def _email_field() -> str:
    return (request.form.get("email") or "").strip().lower()[:320]


def email_address_key(purpose: str) -> Callable[[], str]:
    """A key for (the form's email, the client's address): one person at one place."""

    def key() -> str:
        return f"{purpose}:{token_digest(_email_field())}:{request.remote_addr or 'unknown'}"

    return key


def second_factor_key() -> str:
    """A key for the person at the second sign-in step (whatever their address): guessing
    codes for one account is limited however many addresses try."""
    return f"second-factor:{pending_second_factor_user_id() or 'none'}"


def failed_sign_in(response: Response) -> bool:
    """Only refused passwords count (401); a sign-in page or a bad form does not."""
    return response.status_code == 401


def reset_requested(response: Response) -> bool:
    """Only password-reset requests that went through count (the redirect after sending)."""
    return response.status_code == 302


def token_key(digest: str) -> str:
    """The limit key of a bearer token, by its SHA-256 digest (as stored)."""
    return "token:" + digest


def _bearer_key() -> str:
    """The bearer token's key, or "" when the request has none (then no token limit)."""
    cached = g.get("_ratelimit_token_key")
    if cached is not None:
        return cached
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    key = token_key(token_digest(credentials)) if scheme.lower() == "bearer" and credentials else ""
    g._ratelimit_token_key = key
    return key


def _no_bearer() -> bool:
    return not _bearer_key()


def _token_accepted(response: Response) -> bool:
    """Count calls whose token was accepted: a stream of made-up tokens (401) creates
    no keys in Redis. (Checked before the call, counted after it, as Flask-Limiter
    does with ``deduct_when``.)"""
    return response.status_code not in (401, 429)


# ---------------------------------------------------------------- outages


def limits_degraded() -> bool:
    """Whether the shared storage is unreachable and limits count in this process only.

    For readiness checks: true from the first failed call to Redis until
    Flask-Limiter finds it answering again.
    """
    return bool(getattr(limiter, "_storage_dead", False))


def status() -> dict[str, Any]:
    """The limits' storage for a readiness report: its kind, and whether it is degraded."""
    uri = current_app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
    return {
        "storage": uri.partition("://")[0],
        "shared": not uri.startswith("memory://"),
        "degraded": limits_degraded(),
    }


class _StorageEvents(logging.Filter):
    """Flask-Limiter's warnings, and its note that the storage recovered; not per-request info."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.getMessage().startswith(
            "Rate limit storage recovered"
        )


_logging_set_up = False


def _set_up_logging(*, own_handler: bool = True) -> None:
    """Flask-Limiter's storage warnings reach the server's log (it adds only a NullHandler).

    Without ``own_handler`` they go to the portal's log handler (``PORTAL_LOG_FORMAT``,
    :mod:`portal.observability`), filtered the same way.
    """
    global _logging_set_up
    if _logging_set_up:
        return
    _logging_set_up = True
    log = logging.getLogger("flask-limiter")
    log.setLevel(logging.INFO)
    if not own_handler:
        log.addFilter(_StorageEvents())
    elif not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("[%(asctime)s] %(levelname)s rate limits: %(message)s")
        )
        handler.addFilter(_StorageEvents())
        log.addHandler(handler)
        log.propagate = False


# ---------------------------------------------------------------- the fast path


@lru_cache(maxsize=16)
def _items(text: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(text))


def fast_path_allows(app: Flask, digest: str, *, cost: int = 1) -> bool:
    """Count ``cost`` API calls of the token with this digest; False: let Flask answer.

    ``cost`` above one reserves counts for the fast path's next checks of the token
    (:class:`portal.api.fastpath.Reservations`); it is refused whole when it does not fit.

    Flask answers when the limit is reached (its 429 carries the headers), when the
    shared storage is degraded (Flask's limiter checks whether Redis is back) and
    when the storage fails. The key, scope and items are those of the API's limit.
    """
    if limits_degraded():
        return False
    prefix = app.config.get("RATELIMIT_KEY_PREFIX") or ""
    args = [prefix, token_key(digest), API_SCOPE] if prefix else [token_key(digest), API_SCOPE]
    strategy = limiter.limiter
    items = _items(app.config["PORTAL_API_RATE_LIMIT"])
    try:  # one round trip per item: a sliding window counter is two counters per key
        return all(strategy.hit(item, *args, cost=cost) for item in items)
    except Exception:  # the storage failed: Flask's limiter falls back and logs it
        return False


# ---------------------------------------------------------------- the refusal


def _refusal_headers(response: Response) -> Response:
    """``Retry-After`` and ``RateLimit-*`` on a 429 from a limit (an after-request hook)."""
    if response.status_code != 429:
        return response
    breached = limiter.current_limit
    if breached is None or not breached.breached:
        return response
    try:
        window = breached.window
    except Exception:  # the storage failed meanwhile; the 429 stands without the detail
        return response
    delay = max(1, math.ceil(window.reset_time - time.time()))
    remaining = window.remaining
    response.headers["Retry-After"] = str(delay)
    response.headers["RateLimit-Limit"] = str(breached.limit.amount)
    response.headers["RateLimit-Remaining"] = str(remaining)
    response.headers["RateLimit-Reset"] = str(delay)
    return response


_token_limits_added = False


def _add_token_limits() -> None:
    """Per-token limits on the API and SCIM blueprints (once: the limiter is global)."""
    global _token_limits_added
    if _token_limits_added:
        return
    _token_limits_added = True
    limiter.shared_limit(
        setting("PORTAL_API_RATE_LIMIT"),
        scope=API_SCOPE,
        key_func=_bearer_key,
        exempt_when=_no_bearer,
        deduct_when=_token_accepted,
        error_message=lambda: _(
            "Too many requests with this token. Wait and try again (Retry-After)."
        ),
    )(api)
    limiter.shared_limit(
        setting("PORTAL_SCIM_RATE_LIMIT"),
        scope=SCIM_SCOPE,
        key_func=_bearer_key,
        exempt_when=_no_bearer,
        deduct_when=_token_accepted,
        error_message=lambda: _(
            "Too many requests with this token. Wait and try again (Retry-After)."
        ),
    )(scim)


def init_app(app: Flask) -> None:
    """Bind the limiter, the token limits, the 429 headers and the trusted-proxy middleware."""
    _set_up_logging(own_handler=not app.config.get("PORTAL_LOG_FORMAT"))
    limiter.init_app(app)
    _add_token_limits()
    app.after_request(_refusal_headers)
    app.wsgi_app = TrustedProxies(app, app.wsgi_app)  # type: ignore[method-assign]
