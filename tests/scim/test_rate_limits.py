"""SCIM calls are limited per SCIM token: a 429 SCIM error with Retry-After and RateLimit-*."""

from __future__ import annotations

import pytest

from tests.api.test_rate_limits import _assert_limited
from tests.scim.conftest import assert_scim_error

# Each test counts hits up to a per-minute limit: not across the turn of a minute.
pytestmark = pytest.mark.usefixtures("whole_rate_window")


def test_a_scim_token_past_its_limit_gets_a_scim_429_with_headers(app, scim_org, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_SCIM_RATE_LIMIT", "2 per minute")
    idp = scim_org("acme")
    assert [idp.get("/Users").status_code for _ in range(2)] == [200, 200]
    refused = idp.get("/Users")
    assert_scim_error(refused, 429)
    _assert_limited(refused, 2)
    assert scim_org("globex").get("/Users").status_code == 200  # another token, its own count
