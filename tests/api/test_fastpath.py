"""The entitlement check's lean path (``portal.api.fastpath``) answers as Flask does.

Each question is asked twice: of the whole application (where the fast path
answers first) and of the Flask application alone (the middleware's inner WSGI
app), and the two answers must be the same bytes with the same headers. The
fast path is also asked directly, to prove which requests it answers itself
and which it leaves to Flask (every refusal, every write, every doubtful query).
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from werkzeug.test import Client, EnvironBuilder

from portal.api.fastpath import EntitlementCheckFastPath
from portal.api.models import ApiToken
from portal.catalogue.models import Product, Vendor
from portal.db import db
from portal.kernel.clock import now_utc
from portal.seats import services as seats
from portal.tenancy.models import Organisation
from tests.api.conftest import VendorRef, assert_problem, make_token  # noqa: F401
from tests.conftest import (
    SYSTEM,
    make_product,  # noqa: F401  (the full product, not tests/api's)
)
from tests.metering.conftest import metered  # noqa: F401

PATH = "/api/v1/entitlements/check"


def _seat(app, org_id: int, product_id: int, email: str) -> int:
    from portal.seats.selectors import live_subscription

    with app.app_context():
        # The metered fixture's organisation already subscribes to its product.
        subscription = (
            live_subscription(db.session, organisation_id=org_id, product_id=product_id)
            or seats.subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org_id),
                product=db.session.get(Product, product_id),
                quantity=2,
            ).subscription
        )
        seats.seat_assign(db.session, actor=SYSTEM, subscription=subscription, user_email=email)
        db.session.commit()
        return subscription.id


def _vendor_token(app, make_token, slug: str) -> str:  # noqa: F811
    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == slug))
        ref = VendorRef(vendor.id, vendor.slug)
    return make_token("vendor", vendor=ref)


def _fast(app) -> EntitlementCheckFastPath:
    middleware = app.wsgi_app
    assert isinstance(middleware, EntitlementCheckFastPath)
    return middleware


def _asks(app, token: str | None, query: str, **headers: str):
    """(what the fast path answers itself or None, the whole app's response, Flask's)."""
    if token is not None:
        headers.setdefault("Authorization", f"Bearer {token}")
    environ = EnvironBuilder(path=PATH, query_string=query, headers=headers).get_environ()
    direct = _fast(app).answer(environ)
    whole = app.test_client().get(PATH, query_string=query, headers=headers)
    flask_only = Client(_fast(app).wsgi_app).get(PATH, query_string=query, headers=headers)
    return direct, whole, flask_only


def _same(whole, flask_only) -> None:
    """The same status, body and headers; but ``Vary: Cookie``, which Flask adds to every
    response because Flask-Login's after-request hook looks at the session: an answer
    to a bearer token does not vary by cookie, and the fast path does not say it does."""
    assert whole.status_code == flask_only.status_code
    assert whole.get_data() == flask_only.get_data()

    def headers(response) -> list[tuple[str, str]]:
        # Each request gets its own X-Request-Id (portal.observability): present, not equal.
        assert len(response.headers.getlist("X-Request-Id")) == 1
        return sorted(
            (k, v)
            for k, v in response.headers.items()
            if (k, v) != ("Vary", "Cookie") and k != "X-Request-Id"
        )

    assert headers(whole) == headers(flask_only)


@pytest.fixture
def seated(app, metered, make_user, make_product, make_token):  # noqa: F811
    """member@acme holds a seat of cad-suite (autodraft) and of gis-pro (another vendor)."""
    person = make_user("member", metered["org"])
    other = make_product(5, sku="gis-pro", vendor="mapworks")
    cad = _seat(app, metered["org"].id, metered["product"].id, person.email)
    _seat(app, metered["org"].id, other.id, person.email)
    token = _vendor_token(app, make_token, "autodraft")
    # The first use goes through Flask, which notes the token's time of use.
    first = app.test_client().get(
        PATH,
        query_string={"organisation": "acme", "user_email": person.email, "product": "cad-suite"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert first.status_code == 200, first.get_data(as_text=True)
    return {"email": person.email, "token": token, "subscription": cad}


def test_the_fast_path_gives_flasks_answer_to_every_question(app, seated):
    email = seated["email"]
    questions = {
        f"organisation=acme&user_email={email}&product=cad-suite": True,
        # as typed by a person: case and spaces do not matter
        f"organisation=ACME&user_email=%20{email.upper()}&product=Cad-Suite+": True,
        "organisation=acme&user_email=nobody@acme.example&product=cad-suite": False,
        f"organisation=globex&user_email={email}&product=cad-suite": False,
        f"organisation=acme&user_email={email}&product=no-such-product": False,
        # another vendor's product, which the person does hold: not for this vendor to know
        f"organisation=acme&user_email={email}&product=gis-pro": False,
        # parameters it does not know are ignored, as the schema ignores them
        f"organisation=acme&user_email={email}&product=cad-suite&extra=1": True,
    }
    for query, entitled in questions.items():
        direct, whole, flask_only = _asks(app, seated["token"], query)
        assert direct is not None, query  # the fast path answered this one itself
        assert whole.status_code == 200, whole.get_data(as_text=True)
        assert whole.get_json()["entitled"] is entitled, query
        assert direct == whole.get_json()
        _same(whole, flask_only)
    yes = _asks(app, seated["token"], next(iter(questions)))[1].get_json()
    assert yes["seat"]["subscription"] == seated["subscription"]
    assert yes["seat"]["user_email"] == email


def test_fast_answers_carry_a_request_id_and_are_measured_as_the_flask_endpoint(
    app, seated, monkeypatch
):
    """portal.observability: an answer given without Flask is timed under the Flask view's
    endpoint, logged, and returns the caller's X-Request-Id like any other request."""
    from portal.observability import REQUEST_SECONDS

    def no_flask(environ, start_response):
        raise AssertionError("the fast path should have answered")

    monkeypatch.setattr(_fast(app), "wsgi_app", no_flask)
    query = f"organisation=acme&user_email={seated['email']}&product=cad-suite"
    counted = REQUEST_SECONDS.labels(endpoint="api.entitlement", method="GET", status="200")
    before = counted._sum.get(), _count(counted)  # noqa: SLF001 (prometheus_client's value)
    response = app.test_client().get(
        PATH,
        query_string=query,
        headers={"Authorization": f"Bearer {seated['token']}", "X-Request-Id": "vendor-req-1"},
    )
    assert response.status_code == 200
    assert response.headers.getlist("X-Request-Id") == ["vendor-req-1"]
    assert _count(counted) == before[1] + 1
    assert counted._sum.get() > before[0]  # noqa: SLF001


def _count(histogram) -> float:
    return sum(bucket.get() for bucket in histogram._buckets)  # noqa: SLF001


def test_a_plain_check_never_reaches_flask(app, seated, monkeypatch):
    middleware = _fast(app)
    reached: list[str] = []
    inner = middleware.wsgi_app

    def flask_app(environ, start_response):
        reached.append(environ["QUERY_STRING"])
        return inner(environ, start_response)

    monkeypatch.setattr(middleware, "wsgi_app", flask_app)
    headers = {"Authorization": f"Bearer {seated['token']}"}
    query = f"organisation=acme&user_email={seated['email']}&product=cad-suite"
    for _ in range(3):
        answer = app.test_client().get(PATH, query_string=query, headers=headers)
        assert answer.get_json()["entitled"] is True
    assert reached == []
    missing = app.test_client().get(PATH, query_string="organisation=acme", headers=headers)
    assert_problem(missing, 422)
    assert reached == ["organisation=acme"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("organisation=acme&product=cad-suite", 422),  # a parameter missing
        ("organisation=acme&user_email=a@b.example&product=" + "x" * 64, 422),  # too long
        ("organisation=acme&user_email=ab&product=cad-suite", 422),  # too short
        ("organisation=acme&organisation=globex&user_email=a@b.example&product=cad-suite", 200),
        ("organisation=acme&user_email=%FF%FE&product=cad-suite", 200),  # not UTF-8
    ],
)
def test_questions_it_is_not_sure_of_go_to_flask(app, seated, query, status):
    direct, whole, flask_only = _asks(app, seated["token"], query)
    assert direct is None
    assert whole.status_code == status, whole.get_data(as_text=True)
    _same(whole, flask_only)


def test_tokens_it_cannot_vouch_for_go_to_flask(app, seated, metered, make_token):  # noqa: F811
    query = f"organisation=acme&user_email={seated['email']}&product=cad-suite"
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({"Authorization": "Bearer pk_v_not-a-real-token"}, 401),
    ):
        direct, whole, flask_only = _asks(app, None, query, **headers)
        assert direct is None
        assert_problem(whole, status)
        _same(whole, flask_only)

    # a council token, used a moment ago: the scope is Flask's to refuse
    council = make_token("council")
    app.test_client().get(PATH, query_string=query, headers={"Authorization": f"Bearer {council}"})
    direct, whole, _ = _asks(app, council, query)
    assert direct is None
    assert_problem(whole, 403, "scope_forbidden")

    # a new vendor token: its first use is noted, through Flask; the next is answered fast
    fresh = _vendor_token(app, make_token, "autodraft")
    direct, whole, _ = _asks(app, fresh, query)
    assert direct is None and whole.status_code == 200
    with app.app_context():
        noted = db.session.scalar(sa.select(ApiToken.last_used_at).where(ApiToken.id == _id(fresh)))
    assert noted is not None and now_utc() - noted < dt.timedelta(seconds=30)
    assert _asks(app, fresh, query)[0] is not None
    # ... and a minute later it goes through Flask again, which notes the new time
    _set(app, fresh, last_used_at=now_utc() - dt.timedelta(minutes=2))
    assert _asks(app, fresh, query)[0] is None

    # revoked, expired, or its vendor suspended: refused at once, by Flask
    for change in (
        {"revoked_at": now_utc()},
        {"revoked_at": None, "expires_at": now_utc() - dt.timedelta(seconds=1)},
    ):
        _set(app, seated["token"], last_used_at=now_utc(), **change)
        direct, whole, _ = _asks(app, seated["token"], query)
        assert direct is None
        assert_problem(whole, 401)
    _set(app, seated["token"], expires_at=None, last_used_at=now_utc())
    assert _asks(app, seated["token"], query)[0] is not None
    with app.app_context():
        db.session.execute(
            sa.update(Vendor).where(Vendor.id == metered["vendor_id"]).values(status="suspended")
        )
        db.session.commit()
    direct, whole, _ = _asks(app, seated["token"], query)
    assert direct is None
    assert_problem(whole, 401)


def _id(plaintext: str) -> int:
    from portal.api.services import token_digest

    return db.session.scalar(
        sa.select(ApiToken.id).where(ApiToken.token_hash == token_digest(plaintext))
    )


def _set(app, plaintext: str, **values) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(ApiToken).where(ApiToken.id == _id(plaintext)).values(**values)
        )
        db.session.commit()
