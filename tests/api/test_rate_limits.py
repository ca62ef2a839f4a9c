"""Per-token limits on the API and SCIM, the entitlement fast path included.

The limits are read from the app's config at each request, so the tests lower
them (``PORTAL_API_RATE_LIMIT``, ``PORTAL_SCIM_RATE_LIMIT``) instead of sending
thousands of requests.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from limits import parse
from werkzeug.test import EnvironBuilder

from portal.api.fastpath import EntitlementCheckFastPath
from portal.catalogue.models import Vendor
from portal.db import db
from portal.extensions import limiter
from portal.identity.security import token_digest
from portal.ratelimit import API_SCOPE, limits_degraded, token_key
from tests.api.conftest import ApiClient, VendorRef, assert_problem

# Each test counts hits up to a per-minute limit: not across the turn of a minute.
pytestmark = pytest.mark.usefixtures("whole_rate_window")

CHECK = "/api/v1/entitlements/check"
RATE_HEADERS = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def _assert_limited(response, limit: int) -> None:
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert response.headers["RateLimit-Reset"] == response.headers["Retry-After"]


def test_a_token_past_its_limit_gets_429_problem_with_headers(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_API_RATE_LIMIT", "3 per minute")
    client = api("council")
    for _ in range(3):
        answer = client.get("/catalogue")
        assert answer.status_code == 200
        assert not set(RATE_HEADERS) & set(answer.headers.keys())  # only refusals carry them
    refused = client.get("/catalogue")
    body = assert_problem(refused, 429, "rate_limited")
    assert "Too many requests with this token" in body["detail"]
    _assert_limited(refused, 3)
    # Another token has its own count; a request with no token is not counted (401).
    assert api("council").get("/catalogue").status_code == 200
    assert api(None).get("/catalogue").status_code == 401


def test_a_usage_batch_counts_once(app, api, make_vendor, monkeypatch):
    monkeypatch.setitem(app.config, "PORTAL_API_RATE_LIMIT", "2 per minute")
    client = api("vendor", vendor=make_vendor())
    events = [
        {
            "idempotency_key": f"k-{n}",
            "organisation": "nobody",
            "product": "nothing",
            "meter": "api_calls",
            "quantity": 1,
        }
        for n in range(50)
    ]
    for _ in range(2):
        assert client.post("/usage", json={"events": events}).status_code != 429
    refused = client.post("/usage", json={"events": events})
    assert_problem(refused, 429)
    _assert_limited(refused, 2)


def _vendor_check(app, make_org, make_product, make_token) -> tuple[dict, dict]:
    """The query and headers of an entitlement check the fast path can answer."""
    org = make_org()
    product = make_product()
    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == "api-soft"))
        ref = VendorRef(vendor.id, vendor.slug)
        db.session.remove()
    token = make_token("vendor", vendor=ref)
    query = {"organisation": org.slug, "user_email": "someone@x.example", "product": product.sku}
    return query, {"Authorization": f"Bearer {token}"}


def test_the_fast_path_counts_in_the_same_bucket_and_hands_refusals_to_flask(
    app, make_org, make_product, make_token, monkeypatch
):
    monkeypatch.setitem(app.config, "PORTAL_API_RATE_LIMIT", "4 per minute")
    query, headers = _vendor_check(app, make_org, make_product, make_token)
    middleware = app.wsgi_app
    assert isinstance(middleware, EntitlementCheckFastPath)
    reached: list[int] = []
    inner = middleware.wsgi_app

    def flask_app(environ, start_response):
        reached.append(1)
        return inner(environ, start_response)

    monkeypatch.setattr(middleware, "wsgi_app", flask_app)

    def check():
        return app.test_client().get(CHECK, query_string=query, headers=headers)

    answers = [check() for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.get_json() == {"entitled": False, "seat": None} for a in answers)
    assert len(reached) == 1  # the first noted the token's use; the fast path answered three
    refused = check()
    assert len(reached) == 2  # the fifth was handed to Flask, which refused it
    assert_problem(refused, 429)
    _assert_limited(refused, 4)


def test_while_redis_is_in_doubt_the_fast_path_leaves_checks_to_flask(
    app, make_org, make_product, make_token, monkeypatch
):
    """Flask's limiter falls back to counting in the process and finds Redis again."""
    query, headers = _vendor_check(app, make_org, make_product, make_token)
    assert app.test_client().get(CHECK, query_string=query, headers=headers).status_code == 200
    environ = EnvironBuilder(path=CHECK, query_string=query, headers=headers).get_environ()
    middleware = app.wsgi_app
    assert middleware.answer(environ) == {"entitled": False, "seat": None}
    monkeypatch.setattr(limiter, "_storage_dead", True)  # what a failed Redis call sets
    assert limits_degraded()
    assert middleware.answer(environ) is None


def test_made_up_tokens_are_not_counted(app, api, monkeypatch):
    """A stream of made-up tokens gets 401s, never a bucket (a key in Redis) each."""
    monkeypatch.setitem(app.config, "PORTAL_API_RATE_LIMIT", "3 per minute")
    bogus = ApiClient(app.test_client(), "pk_c_" + "x" * 43)
    assert [bogus.get("/catalogue").status_code for _ in range(5)] == [401] * 5
    args = [app.config["RATELIMIT_KEY_PREFIX"], token_key(token_digest(bogus.token)), API_SCOPE]
    assert limiter.limiter.get_window_stats(parse("3 per minute"), *args).remaining == 3
    good = api("council")
    assert good.get("/catalogue").status_code == 200
    args[1] = token_key(token_digest(good.token))
    assert limiter.limiter.get_window_stats(parse("3 per minute"), *args).remaining == 2
