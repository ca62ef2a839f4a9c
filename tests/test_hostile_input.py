"""SPEC invariant 9: hostile input gets a clear 4xx, never a 500, and changes nothing.

One input layer (:mod:`portal.inputs`) answers for every surface: the bounded
``<int:…>`` converter (ids past 2^63 − 1 → 404), the guard against control
characters in the path, the query string, form fields and JSON bodies (API
422, SCIM 400 in its own format, pages a 400 page), one month parser for
periods (2000-01 … 9998-12), bounded dates and amounts, and the command line.
Runs on SQLite and, with ``PORTAL_TEST_DATABASE_URL``, on PostgreSQL (which
refuses NUL bytes in text and integers past 2^63 − 1 itself, so a leak shows
there as a 500).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.clock import now_utc
from portal.validation import MAX_DB_INT
from tests.api import conftest as api_fixtures
from tests.billing import conftest as billing_fixtures
from tests.billing import factories as billing_factories
from tests.conftest import SYSTEM, csrf_token, post_form
from tests.scim import conftest as scim_fixtures
from tests.scim.conftest import USER_SCHEMA, assert_scim_error

# Fixtures of the API and SCIM suites, used here too.
make_token = api_fixtures.make_token
make_vendor = api_fixtures.make_vendor
billed = billing_fixtures.billed
issued = billing_factories.issued
scim_org = scim_fixtures.scim_org

TOO_BIG = [2**63, 2**64, 10**20, int("9" * 40)]
BAD_PERIODS = ["9999-12", "10000-01", "0000-00", "0000-01", "1999-12", "2026-13", "2026-00"]
NUL_TEXTS = ["a\x00b", "\x00", "x\x1by", "line\x0cfeed"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def count(app, table: str) -> int:
    with app.app_context():
        n = db.session.scalar(sa.select(sa.func.count()).select_from(sa.table(table)))
        db.session.remove()
        return n


def snapshot(app) -> dict[str, int]:
    """Rows per table: "the database is unchanged" is this, before and after."""
    with app.app_context():
        out = {
            table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
            for table in db.metadata.sorted_tables
        }
        db.session.remove()
        return out


def problem_errors(response, status: int = 422) -> dict[str, list[str]]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["detail"]
    return body.get("errors") or {}


def page_text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


# ---------------------------------------------------------------- the pieces, directly


def test_the_int_converter_stops_at_what_a_database_integer_holds(app):
    adapter = app.url_map.bind("portal.test")
    endpoint, args = adapter.match(f"/api/v1/subscriptions/{MAX_DB_INT}")
    assert args == {"id": MAX_DB_INT}
    for value in TOO_BIG:
        with pytest.raises(Exception) as caught:
            adapter.match(f"/api/v1/subscriptions/{value}")
        assert getattr(caught.value, "code", None) == 404


@pytest.mark.parametrize(
    "period", BAD_PERIODS + ["2026-5", "", "2026-05x", " 2026-05", "2026-05\n", "２０２６-05"]
)
def test_one_month_parser_refuses_what_date_arithmetic_cannot_hold(app, period):
    from portal.kernel.errors import ValidationFailed
    from portal.kernel.periods import period_bounds

    with pytest.raises(ValidationFailed) as caught:
        period_bounds(period)
    assert "YYYY-MM" in caught.value.errors["period"][0]


@pytest.mark.parametrize("period", ["2000-01", "2026-02", "9998-12"])
def test_one_month_parser_gives_the_months_bounds(app, period):
    from portal.kernel.periods import period_bounds

    start, end = period_bounds(period)
    assert start.tzinfo is not None and start.day == 1
    assert (end - dt.timedelta(days=1)).month == start.month and end.day == 1


def test_dates_and_moments_are_bounded(app):
    from pydantic import TypeAdapter, ValidationError

    from portal.validation import SafeDate, SafeDateTime

    dates = TypeAdapter(SafeDate)
    moments = TypeAdapter(SafeDateTime)
    assert dates.validate_python("9998-12-31") == dt.date(9998, 12, 31)
    for bad in ("9999-12-31", "0001-01-01", "1999-12-31", "10000-01-01"):
        with pytest.raises(ValidationError):
            dates.validate_python(bad)
    utc = moments.validate_python("2026-05-01T12:00:00+02:00")
    assert utc == dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC)
    for bad in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00", "2026-05-01T12:00:00"):
        with pytest.raises(ValidationError):
            moments.validate_python(bad)


def test_json_scan_names_the_field_and_ignores_escaped_backslashes():
    from portal.inputs import unsafe_json_field

    assert unsafe_json_field(b'{"a": {"b": ["ok", "x\\u0000"]}}') == "a.b.1"
    assert unsafe_json_field(b'{"k\\u001Fey": 1}') == "k\x1fey"
    assert unsafe_json_field(b'{"a": "tab\\tnew\\nline\\u000a"}') is None
    assert unsafe_json_field(b'{"a": "\\\\u0000 is how JSON writes NUL"}') is None
    assert unsafe_json_field(b"not json \\u0000") is None


# ---------------------------------------------------------------- API


@pytest.mark.parametrize("value", TOO_BIG)
def test_api_ids_past_64_bits_are_not_found(app, client, make_token, value):
    headers = bearer(make_token("council"))
    for path in (
        f"/api/v1/subscriptions/{value}",
        f"/api/v1/invoices/{value}",
        f"/api/v1/invoices/{value}.pdf",
    ):
        assert client.get(path, headers=headers).status_code == 404, path
    before = snapshot(app)
    response = client.patch(f"/api/v1/subscriptions/{value}", json={"quantity": 2}, headers=headers)
    assert response.status_code == 404
    response = client.post(
        f"/api/v1/invoices/{value}/credit-notes", json={"amount": 1, "reason": "x"}, headers=headers
    )
    assert response.status_code == 404
    assert snapshot(app) == before


def test_api_largest_id_is_an_ordinary_miss(app, client, make_token):
    headers = bearer(make_token("council"))
    assert client.get(f"/api/v1/subscriptions/{MAX_DB_INT}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/invoices/{MAX_DB_INT}", headers=headers).status_code == 404


@pytest.mark.parametrize("text", NUL_TEXTS)
def test_api_query_with_a_control_character_is_422_naming_the_parameter(
    app, client, make_token, text
):
    headers = bearer(make_token("council"))
    for path, name in (
        ("/api/v1/organisations", "cursor"),
        ("/api/v1/invoices", "organisation"),
        ("/api/v1/catalogue", "q"),
        ("/api/v1/subscriptions", "unknown"),
    ):
        response = client.get(path, query_string={name: text}, headers=headers)
        errors = problem_errors(response)
        assert list(errors) == [name], errors
        assert "control character" in response.get_json()["detail"]


def test_api_path_with_a_nul_is_422(app, client, make_token, make_org):
    make_org("acme")
    headers = bearer(make_token("council"))
    response = client.get("/api/v1/organisations/ac%00me", headers=headers)
    assert "path" in problem_errors(response)


@pytest.mark.parametrize("text", NUL_TEXTS)
def test_api_json_with_a_control_character_is_422_and_creates_nothing(
    app, client, make_token, text
):
    headers = bearer(make_token("council"))
    good = {
        "slug": "acme",
        "name": "Acme",
        "country": "DE",
        "currency": "EUR",
        "billing_email": "billing@acme.example",
    }
    before = snapshot(app)
    for field in ("name", "billing_email", "slug"):
        response = client.post("/api/v1/organisations", json={**good, field: text}, headers=headers)
        assert list(problem_errors(response)) == [field]
    response = client.post("/api/v1/organisations", json={**good, text: "x"}, headers=headers)
    assert problem_errors(response)
    assert snapshot(app) == before
    # The same body without the control character is accepted: the refusal was for it.
    assert client.post("/api/v1/organisations", json=good, headers=headers).status_code == 201


def test_api_nested_json_field_is_named(app, client, make_token, make_product):
    product = make_product(price=None)
    headers = bearer(make_token("council"))
    body = {
        "product": product.sku,
        "currency": "EUR",
        "model": "metered",
        "meter": "api_calls",
        "tier_mode": "graduated",
        "tiers": [{"up_to": 10, "unit_amount": 1, "note\x00": "x"}, {"unit_amount": 1}],
    }
    before = snapshot(app)
    errors = problem_errors(client.post("/api/v1/prices", json=body, headers=headers))
    assert list(errors) == ["tiers.0.note\\x00"]
    assert snapshot(app) == before


def test_api_raw_control_character_in_json_is_a_4xx(app, client, make_token):
    headers = {**bearer(make_token("council")), "Content-Type": "application/json"}
    before = snapshot(app)
    response = client.post("/api/v1/organisations", data=b'{"name": "a\x00b"}', headers=headers)
    assert 400 <= response.status_code < 500
    assert snapshot(app) == before


def test_api_json_nested_too_deep_is_422_not_a_recursion_error(app, client, make_token):
    headers = {**bearer(make_token("council")), "Content-Type": "application/json"}
    before = snapshot(app)
    for body in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b'"\\u0000"' + b"}" * 100_000,
        b'{"name": ' + b"[" * 65 + b"]" * 65 + b"}",
    ):
        response = client.post("/api/v1/organisations", data=body, headers=headers)
        assert problem_errors(response) == {"_": ["Nest at most 64 levels deep."]}
    assert snapshot(app) == before
    # Brackets inside strings are text, not nesting.
    response = client.post(
        "/api/v1/organisations",
        json={
            "slug": "acme",
            "name": "[" * 200,
            "country": "DE",
            "currency": "EUR",
            "billing_email": "billing@acme.example",
        },
        headers=bearer(make_token("council")),
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def test_api_subscription_and_token_dates_past_the_limits_are_refused(
    app, client, make_token, make_org, make_product
):
    from portal.api.services import token_create
    from portal.kernel.errors import ValidationFailed

    make_org("acme")
    make_product(sku="acme-app")
    headers = bearer(make_token("council"))
    before = snapshot(app)
    for starts_on in ("0001-01-01", "1999-12-31", "10000-01-01"):
        response = client.post(
            "/api/v1/subscriptions",
            json={
                "product": "acme-app",
                "organisation": "acme",
                "quantity": 1,
                "starts_on": starts_on,
            },
            headers=headers,
        )
        assert "starts_on" in problem_errors(response), starts_on
    far = dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(-dt.timedelta(hours=5)))
    with app.app_context(), pytest.raises(ValidationFailed) as caught:
        token_create(
            db.session,
            actor=SYSTEM,
            scope="council",
            organisation=None,
            vendor=None,
            name="far",
            expires_at=far,
        )
    assert "expires_at" in caught.value.errors
    assert snapshot(app) == before


@pytest.mark.parametrize("period", BAD_PERIODS)
def test_api_periods_past_the_limits_are_422(app, client, make_token, period):
    headers = bearer(make_token("council"))
    before = snapshot(app)
    for response in (
        client.get(
            "/api/v1/exports/invoices.csv", query_string={"period": period}, headers=headers
        ),
        client.get("/api/v1/invoices", query_string={"period": period}, headers=headers),
        client.post("/api/v1/invoice-runs", json={"period": period}, headers=headers),
    ):
        assert "period" in problem_errors(response)
    assert snapshot(app) == before


@pytest.mark.parametrize("up_to", [10**15 + 1, 2**63, 10**20])
def test_api_price_tier_limit_past_the_bound_is_422(app, client, make_token, make_product, up_to):
    product = make_product(price=None)
    headers = bearer(make_token("council"))
    body = {
        "product": product.sku,
        "currency": "EUR",
        "model": "metered",
        "meter": "api_calls",
        "tier_mode": "graduated",
        "tiers": [{"up_to": up_to, "unit_amount": 1}, {"up_to": None, "unit_amount": 1}],
    }
    before = snapshot(app)
    errors = problem_errors(client.post("/api/v1/prices", json=body, headers=headers))
    assert errors == {"tiers.0.up_to": ["Enter 1000000000000000 or less."]}
    assert snapshot(app) == before
    body["tiers"][0]["up_to"] = 10**15
    assert client.post("/api/v1/prices", json=body, headers=headers).status_code == 201


@pytest.mark.parametrize("amount", [10**15 + 1, 2**63, 10**20])
def test_api_money_past_the_bound_is_422(app, client, make_token, make_product, amount):
    product = make_product(price=None)
    headers = bearer(make_token("council"))
    before = snapshot(app)
    response = client.post(
        "/api/v1/prices",
        json={"product": product.sku, "currency": "EUR", "model": "seat", "unit_amount": amount},
        headers=headers,
    )
    assert "unit_amount" in problem_errors(response)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    ("starts_on", "ends_on"),
    [("9999-12-31", "9999-12-31"), ("2026-01-01", "9999-12-31"), ("0001-01-01", "2026-01-01")],
)
def test_api_pool_dates_past_the_limits_are_422(
    app, client, make_token, make_product, starts_on, ends_on
):
    product = make_product(capacity=0)
    headers = bearer(make_token("council"))
    before = snapshot(app)
    body = {
        "product": product.sku,
        "capacity": 5,
        "starts_on": starts_on,
        "ends_on": ends_on,
        "unit_cost": {"amount": 100, "currency": "EUR"},
    }
    errors = problem_errors(client.post("/api/v1/pools", json=body, headers=headers))
    assert set(errors) <= {"starts_on", "ends_on"} and errors
    assert snapshot(app) == before


def test_entitlement_fast_path_hands_a_nul_to_flask_which_refuses_it(
    app, client, make_token, make_vendor, make_org
):
    make_org("acme")
    vendor = make_vendor("acme-soft")
    headers = bearer(make_token("vendor", vendor=vendor))
    params = "product=anything&organisation=acme&user_email=someone%40acme.example"
    # The first check writes the token's time of use (Flask); later ones are the fast path's.
    assert client.get(f"/api/v1/entitlements/check?{params}", headers=headers).status_code in (
        200,
        404,
    )
    fast = client.get(f"/api/v1/entitlements/check?{params}", headers=headers)
    assert fast.status_code in (200, 404)
    hostile = params.replace("someone%40", "some%00one%40")
    # The fast path would answer the clean question itself, and hands the hostile one on.
    fast_path = _fast_path(app)
    environ = {"HTTP_AUTHORIZATION": headers["Authorization"], "QUERY_STRING": params}
    assert fast_path.answer(environ) is not None
    assert fast_path.answer({**environ, "QUERY_STRING": hostile}) is None
    errors = problem_errors(client.get(f"/api/v1/entitlements/check?{hostile}", headers=headers))
    assert list(errors) == ["user_email"]


def _fast_path(app):
    from portal.api.fastpath import EntitlementCheckFastPath

    layer = app.wsgi_app
    for _ in range(10):  # other middleware may wrap it
        if isinstance(layer, EntitlementCheckFastPath):
            return layer
        layer = getattr(layer, "wsgi_app", None) or getattr(layer, "app", None)
    raise AssertionError("no entitlement fast path in the WSGI chain")


def test_usage_batches_check_their_own_events(app, client, make_token, make_vendor):
    """The usage body is left to the usage endpoint, which refuses bad events by index;
    the input layer still guards its query string."""
    from portal.inputs import OWN_BODY_CHECKS

    assert "api.usage_report" in OWN_BODY_CHECKS
    headers = bearer(make_token("council"))
    response = client.post(
        "/api/v1/usage?x=%00", json={"events": [{"organisation": "a"}]}, headers=headers
    )
    assert list(problem_errors(response)) == ["x"]
    response = client.post(
        "/api/v1/usage", json={"events": [{"organisation": "a\x00b"}]}, headers=headers
    )
    assert response.status_code < 500
    assert "control character (such as a NUL byte)" not in response.get_data(as_text=True)


# ---------------------------------------------------------------- pages


def test_page_ids_past_64_bits_are_not_found_and_change_nothing(app, signed_in, make_org):
    org = make_org()
    admin = signed_in("org_admin", org)
    finance = signed_in("finance")
    for value in TOO_BIG:
        for path in (f"/org/invoices/{value}", f"/org/subscriptions/{value}"):
            response = admin.get(path)
            assert response.status_code == 404, path
            assert "There is nothing here" in page_text(response)
        assert finance.get(f"/finance/invoices/{value}").status_code == 404
        before = snapshot(app)
        token = csrf_token(admin, "/org/users")
        for path in (
            f"/org/users/{value}/deactivate",
            f"/org/users/{value}/role",
            f"/org/subscriptions/{value}/cancel",
        ):
            response = admin.post(path, data={"csrf_token": token, "role": "member"})
            assert response.status_code == 404, path
        assert snapshot(app) == before


@pytest.mark.parametrize("text", NUL_TEXTS)
def test_page_query_with_a_control_character_is_a_400_page(app, signed_in, make_org, text):
    org = make_org()
    admin = signed_in("org_admin", org)
    response = admin.get("/org/users", query_string={"q": text})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    html = page_text(response)
    assert "400 · Bad request" in html and "control character" in html and "“q”" in html
    assert "<nav" in html  # in the layout


@pytest.mark.parametrize("text", NUL_TEXTS)
def test_page_form_field_with_a_control_character_is_a_400_and_saves_nothing(
    app, signed_in, make_org, text
):
    from portal.tenancy.models import Organisation

    org = make_org()
    admin = signed_in("org_admin", org)
    token = csrf_token(admin, "/org/profile")
    response = admin.post(
        "/org/profile",
        data={"csrf_token": token, "name": f"New {text} name", "billing_email": "b@x.example"},
    )
    assert response.status_code == 400
    html = page_text(response)
    assert "control character" in html and "“name”" in html
    with app.app_context():
        assert db.session.get(Organisation, org.id).name == org.name
        db.session.remove()


def test_page_form_number_past_the_bound_is_a_form_error(app, signed_in, make_product):
    product = make_product(price=None)
    council = signed_in("council_admin")
    before = snapshot(app)
    response = post_form(
        council,
        f"/council/products/{product.sku}/prices",
        {
            "price-currency": "EUR",
            "price-model": "metered",
            "price-meter": "api_calls",
            "price-tier_mode": "graduated",
            "price-tiers-0-up_to": str(10**20),
            "price-tiers-0-unit_amount": "1",
            "price-tiers-1-unit_amount": "1",
        },
        token_from=f"/council/products/{product.sku}",
    )
    assert response.status_code == 400
    assert "Enter 1000000000000000 or less." in page_text(response)
    assert snapshot(app) == before


@pytest.mark.parametrize("received_on", ["0001-01-01", "1999-12-31", "9999-12-31"])
def test_page_payment_dates_past_the_limits_are_form_errors(app, issued, signed_in, received_on):
    finance = signed_in("finance")
    invoice = f"/finance/invoices/{issued['invoice_id']}"
    before = snapshot(app)
    response = post_form(
        finance,
        f"{invoice}/payments",
        {"payment-amount": "1", "payment-received_on": received_on, "payment-reference": "x"},
        token_from=invoice,
    )
    assert response.status_code == 400
    assert snapshot(app) == before


@pytest.mark.parametrize("page", [str(2**63), str(2**64), "9" * 30])
def test_page_numbers_past_64_bits_show_an_empty_page(app, signed_in, make_org, page):
    org = make_org()
    admin = signed_in("org_admin", org)
    council = signed_in("council_admin")
    assert admin.get(f"/org/users?page={page}").status_code == 200
    assert council.get(f"/audit?page={page}").status_code == 200
    assert council.get(f"/council/organisations?page={page}").status_code == 200


@pytest.mark.parametrize("period", ["9999-12", "10000-01", "0000-00"])
def test_page_periods_past_the_limits_are_a_clear_4xx(app, signed_in, make_org, period):
    org = make_org()
    admin = signed_in("org_admin", org)
    finance = signed_in("finance")
    council = signed_in("council_admin")
    for client, path in (
        (finance, "/finance/exports/invoices.csv"),
        (finance, "/finance/exports"),
        (finance, "/finance"),
        (admin, "/org/usage"),
        (council, "/council/usage"),
    ):
        response = client.get(path, query_string={"period": period})
        assert 400 <= response.status_code < 500, path
        assert "YYYY-MM" in page_text(response), path
    before = snapshot(app)
    response = post_form(finance, "/finance/runs", {"period": period}, token_from="/finance")
    assert response.status_code == 400
    assert "YYYY-MM" in page_text(response)
    assert snapshot(app) == before


# ---------------------------------------------------------------- SCIM


def test_scim_body_with_a_nul_is_a_scim_400(app, scim_org):
    scim = scim_org("acme")
    before = snapshot(app)
    response = scim.post(
        "/Users",
        {"schemas": [USER_SCHEMA], "userName": "a\x00b@acme.example", "active": True},
    )
    body = assert_scim_error(response, 400, "invalidValue")
    assert "userName" in body["detail"] and "control character" in body["detail"]
    response = scim.post(
        "/Users",
        {
            "schemas": [USER_SCHEMA],
            "userName": "ann@acme.example",
            "name": {"givenName": "A\x00nn"},
        },
    )
    assert "name.givenName" in assert_scim_error(response, 400, "invalidValue")["detail"]
    assert snapshot(app) == before


def test_scim_numbers_past_64_bits_are_not_a_500(app, scim_org):
    scim = scim_org("acme")
    for value in TOO_BIG:
        response = scim.get("/Users", startIndex=str(value), count=str(value))
        assert response.status_code < 500, response.get_data(as_text=True)
        response = scim.get(f"/Users/{value}")
        assert_scim_error(response, 404)
        response = scim.get(f"/Groups/{value}")
        assert_scim_error(response, 404)


def test_scim_body_nested_too_deep_is_a_scim_400(app, scim_org):
    scim = scim_org("acme")
    response = scim.client.post(
        "/scim/v2/Users",
        data=b"[" * 50_000 + b"]" * 50_000,
        headers={**scim._headers(), "Content-Type": "application/scim+json"},
    )
    assert_scim_error(response, 400, "invalidValue")


def test_scim_query_and_path_with_a_nul_are_scim_400s(app, scim_org):
    scim = scim_org("acme")
    response = scim.get("/Users", filter='userName eq "a\x00b@acme.example"')
    assert "filter" in assert_scim_error(response, 400, "invalidValue")["detail"]
    response = scim.client.get("/scim/v2/Users/ab%00c", headers=scim._headers())
    assert_scim_error(response, 400, "invalidValue")


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["invoice-run", "--period", "9999-12"], "from 2000-01 to 9998-12"),
        (["invoice-run", "--period", "10000-01"], "YYYY-MM"),
        (["invoice-run", "--period", "2026-13"], "YYYY-MM"),
        (["invoice-run", "--period", "0000-00"], "YYYY-MM"),
        (["export", "invoices", "--period", "9999-12"], "from 2000-01 to 9998-12"),
        (["create-admin", "--email", "a\x00b@x.example", "--password", "x" * 20], "--email"),
        (
            ["create-admin", "--email", "a@x.example", "--name", "A\x00", "--password", "x" * 20],
            "--name",
        ),
        (["token", "create", "--scope", "council", "--name", "a\x00b"], "--name"),
        (["export", "invoices", "--period", "2026-01", "-o", "out\x00.csv"], "--output"),
    ],
)
def test_cli_refuses_hostile_arguments_in_one_line(app, runner, args, reason):
    before = snapshot(app)
    result = runner.invoke(args=args)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert reason in lines[0]
    assert snapshot(app) == before


# ---------------------------------------------------------------- every route


def _rules(app, method: str) -> list[Any]:
    return sorted(
        (
            rule
            for rule in app.url_map.iter_rules()
            if method in rule.methods and rule.endpoint != "static"
        ),
        key=lambda rule: rule.rule,
    )


def _has_int(rule) -> bool:
    return any(type(c).__name__ == "SafeIntConverter" for c in rule._converters.values())


def _path(rule, ints: int) -> str:
    """The rule's path with ``ints`` for each int argument and a plausible word elsewhere."""
    values: dict[str, Any] = {}
    for name, converter in rule._converters.items():
        kind = type(converter).__name__
        if kind.endswith("IntConverter") or kind == "IntegerConverter":
            values[name] = "__INT__"
        elif kind == "AnyConverter":
            values[name] = sorted(converter.items)[0]
        else:
            values[name] = "acme"
    path = rule.rule
    for name, value in values.items():
        path = re.sub(rf"<[^<>]*:{name}>|<{name}>", str(value), path)
    return path.replace("__INT__", str(ints))


HOSTILE_QUERY = {
    "page": str(2**64),
    "limit": str(2**64),
    "period": "9999-12",
    "cursor": "9" * 30,
    "status": "x" * 300,
    "organisation": "acme",
    "q": "%" * 50,
    "days": str(2**64),
    "startIndex": str(2**64),
    "count": str(2**64),
}


@pytest.fixture
def everyone(app, signed_in, make_org, make_product, make_token, make_vendor):
    """A client per kind of caller: council admin, finance, org admin; a council token."""
    org = make_org("acme")
    make_product(sku="acme")
    return {
        "council": signed_in("council_admin"),
        "finance": signed_in("finance"),
        "org": signed_in("org_admin", org),
        "token": bearer(make_token("council")),
    }


def test_every_get_route_survives_huge_ids_nul_bytes_and_hostile_queries(app, everyone):
    failures = []
    for rule in _rules(app, "GET"):
        for who in ("council", "finance", "org"):
            client = everyone[who]
            headers = everyone["token"] if rule.rule.startswith(("/api/", "/scim/")) else {}
            if _has_int(rule):
                for value in TOO_BIG:
                    response = client.get(_path(rule, value), headers=headers)
                    if response.status_code != 404:
                        failures.append((rule.rule, who, value, response.status_code))
            path = _path(rule, MAX_DB_INT)
            response = client.get(path, query_string=HOSTILE_QUERY, headers=headers)
            if response.status_code >= 500:
                failures.append((path, who, "hostile query", response.status_code))
            response = client.get(path + "?x=%00", headers=headers)
            if response.status_code not in (400, 422):
                failures.append((path, who, "%00", response.status_code))
    assert failures == []


def test_every_post_route_survives_huge_ids_and_nul_bytes(app, everyone, monkeypatch):
    failures = []
    for rule in _rules(app, "POST"):
        if rule.endpoint in ("auth.logout",):
            continue  # signs the client out; the sweep needs it signed in
        for who in ("council", "org"):
            client = everyone[who]
            token = csrf_token(client, "/profile")
            headers = everyone["token"] if rule.rule.startswith(("/api/", "/scim/")) else {}
            if _has_int(rule):
                response = client.post(
                    _path(rule, 2**63), data={"csrf_token": token}, headers=headers
                )
                if response.status_code != 404:
                    failures.append((rule.rule, who, "2^63", response.status_code))
            path = _path(rule, MAX_DB_INT)
            response = client.post(
                path, data={"csrf_token": token, "name": "a\x00b", "x": "y"}, headers=headers
            )
            if response.status_code not in (400, 422):
                failures.append((path, who, "NUL form", response.status_code))
            response = client.post(path, json={"name": "a\x00b"}, headers=headers)
            if rule.endpoint == "payments.stripe_webhook":
                # Signed by Stripe and read raw; without a webhook secret (tests) it is 503.
                ok = response.status_code < 500 or response.status_code == 503
            elif rule.endpoint == "api.usage_report":
                ok = response.status_code < 500  # events are refused one by one
            else:
                ok = response.status_code in (400, 422)
            if not ok:
                failures.append((path, who, "NUL JSON", response.status_code))
    assert failures == []


def test_the_current_month_parses(app):
    from portal.kernel.periods import period_bounds, period_of

    today = now_utc()
    start, end = period_bounds(period_of(today))
    assert start <= today < end
