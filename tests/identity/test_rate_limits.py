"""Sign-in and password-reset limits, and the client address they count by.

Failed sign-ins count per (email, address) pair and, at a much higher ceiling,
per address; ``X-Forwarded-For`` is believed only from ``PORTAL_TRUSTED_PROXIES``.
These run in the test process (memory storage); ``tests/test_multiworker.py``
proves the same limits across gunicorn workers sharing Redis.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.config import parse_proxies
from portal.db import db
from portal.identity.models import UserSession
from portal.ratelimit import client_address
from tests.conftest import login, post_form

# Each test counts hits up to a per-minute limit: not across the turn of a minute.
pytestmark = pytest.mark.usefixtures("whole_rate_window")

OFFICE = "198.51.100.7"


def _client(app, address: str = OFFICE, **headers: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    for name, value in headers.items():
        client.environ_base["HTTP_" + name.upper().replace("-", "_")] = value
    return client


def _wrong(app, email: str, address: str = OFFICE, **headers: str) -> int:
    client = _client(app, address, **headers)
    return post_form(client, "/login", {"email": email, "password": "not the password"}).status_code


def _assert_refused_with_headers(response, limit: int, window: int = 60) -> None:
    """429 with Retry-After and RateLimit-* (seconds until the window has room again)."""
    assert response.status_code == 429, response.get_data(as_text=True)
    assert 0 < int(response.headers["Retry-After"]) <= window
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Reset"] == response.headers["Retry-After"]


def test_the_sixth_wrong_password_for_an_email_from_an_address_is_refused(app, make_user):
    user = make_user("council_admin")
    other = make_user("council_admin")
    assert [_wrong(app, user.email) for _ in range(5)] == [401] * 5
    refused = login(_client(app), user, password="still not it")
    _assert_refused_with_headers(refused, 5)
    assert "Too many failed sign-ins for this email" in refused.get_data(as_text=True)
    # The right password waits too, for that email from that address ...
    assert login(_client(app), user).status_code == 429
    # ... but not another person's sign-in from the same address,
    assert login(_client(app), other).status_code == 302
    # ... nor the same person from elsewhere.
    assert login(_client(app, "203.0.113.9"), user).status_code == 302


def test_others_mistyping_from_the_same_address_lock_nobody_else_out(app, make_user):
    user = make_user("finance")
    for n in range(4):
        assert [_wrong(app, f"typo-{n}@x.example") for _ in range(5)] == [401] * 5
        assert _wrong(app, f"typo-{n}@x.example") == 429
    assert login(_client(app), user).status_code == 302


def test_an_address_spraying_many_emails_meets_the_address_ceiling(app, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_LOGIN_ADDRESS_RATE_LIMIT", "8 per minute")
    user = make_user("finance")
    assert [_wrong(app, f"spray-{n}@x.example") for n in range(8)] == [401] * 8
    refused = login(_client(app), user)
    _assert_refused_with_headers(refused, 8)
    assert "from your network address" in refused.get_data(as_text=True)
    assert login(_client(app, "203.0.113.9"), user).status_code == 302


def test_successful_sign_ins_and_bad_forms_do_not_count(app, make_user):
    user = make_user("finance")
    for _ in range(7):
        assert login(_client(app), user).status_code == 302
        no_password = post_form(_client(app), "/login", {"email": user.email, "password": ""})
        assert no_password.status_code == 400
    assert [_wrong(app, user.email) for _ in range(5)] == [401] * 5


def test_forwarded_for_from_an_untrusted_peer_is_ignored(app, make_user):
    user = make_user("finance")
    statuses = [_wrong(app, user.email, **{"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(6)]
    assert statuses == [401] * 5 + [429]


def test_a_trusted_proxy_names_the_client_for_limits_and_the_audit_log(app, make_user, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_TRUSTED_PROXIES", parse_proxies("10.0.0.0/8"))
    proxy = "10.0.0.5"
    user = make_user("finance")
    # Whatever a client writes to the left of the proxy's own hop is not believed.
    for n in range(5):
        spoofed = {"X-Forwarded-For": f"192.0.2.{n}, {OFFICE}"}
        assert _wrong(app, user.email, proxy, **spoofed) == 401
    from_office = login(_client(app, proxy, **{"X-Forwarded-For": OFFICE}), user)
    assert from_office.status_code == 429
    elsewhere = login(_client(app, proxy, **{"X-Forwarded-For": "203.0.113.50"}), user)
    assert elsewhere.status_code == 302
    with app.app_context():
        ips = db.session.scalars(sa.select(UserSession.ip).where(UserSession.user_id == user.id))
        assert list(ips) == ["203.0.113.50"]
    # An untrusted peer cannot pose as the proxy's client.
    direct = login(_client(app, "203.0.113.77", **{"X-Forwarded-For": OFFICE}), user)
    assert direct.status_code == 302


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "expected"),
    [
        ("198.51.100.1", "203.0.113.1", "", "198.51.100.1"),  # no proxies: the peer
        ("198.51.100.1", "203.0.113.1", "10.0.0.0/8", "198.51.100.1"),  # untrusted peer
        ("10.0.0.5", "203.0.113.1", "10.0.0.0/8", "203.0.113.1"),
        ("10.0.0.5", "6.6.6.6, 203.0.113.1", "10.0.0.0/8", "203.0.113.1"),  # right-most
        ("10.0.0.5", "203.0.113.1, 10.0.0.9", "10.0.0.0/8", "203.0.113.1"),  # two proxies
        ("10.0.0.5", "10.0.0.7, 10.0.0.9", "10.0.0.0/8", "10.0.0.7"),  # all trusted
        ("10.0.0.5", "", "10.0.0.0/8", "10.0.0.5"),  # nothing forwarded
        ("10.0.0.5", "203.0.113.1, junk", "10.0.0.0/8", "10.0.0.5"),  # garbage stops
        ("10.0.0.5", "203.0.113.1:4711", "10.0.0.5", "203.0.113.1"),  # with a port
        ("::1", "[2001:db8::7]:443", "::1", "2001:db8::7"),
        ("::ffff:10.0.0.5", "203.0.113.1", "10.0.0.0/8", "203.0.113.1"),  # v4-mapped
    ],
)
def test_client_address(peer, forwarded, proxies, expected):
    assert client_address(peer, forwarded, parse_proxies(proxies)) == expected


def test_password_reset_requests_are_limited_per_email_and_address(app, make_user, mailbox):
    user = make_user("finance")
    other = make_user("finance")

    def ask(email: str, address: str = OFFICE):
        return post_form(_client(app, address), "/password/forgot", {"email": email})

    assert [ask(user.email).status_code for _ in range(5)] == [302] * 5
    _assert_refused_with_headers(ask(user.email), 5, window=3600)
    assert len(mailbox) == 5  # the refused request sent nothing
    assert ask(other.email).status_code == 302
    assert ask(user.email, "203.0.113.9").status_code == 302
    assert len(mailbox) == 7
    # A form that does not validate sends nothing and is not counted.
    assert post_form(_client(app), "/password/forgot", {"email": ""}).status_code == 400


def test_password_reset_requests_meet_the_address_ceiling(app, make_user, monkeypatch, mailbox):
    monkeypatch.setitem(app.config, "PORTAL_RESET_ADDRESS_RATE_LIMIT", "3 per hour")
    for n in range(3):
        response = post_form(_client(app), "/password/forgot", {"email": f"p{n}@x.example"})
        assert response.status_code == 302
    response = post_form(_client(app), "/password/forgot", {"email": "p9@x.example"})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["RateLimit-Limit"] == "3"
