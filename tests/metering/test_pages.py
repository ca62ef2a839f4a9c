"""Usage pages: an organisation's usage and cost, idle seats, the council's view, uploads."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.clock import now_utc
from portal.metering.models import UsageEvent
from portal.seats import services as seats
from portal.seats.models import SeatAssignment, Subscription
from tests.conftest import SYSTEM, flashes, login, post_form
from tests.metering.conftest import event, ingest, person, subscribe


@pytest.fixture(autouse=True)
def _mid_month(clock) -> None:
    """The pages show this month's usage of events sent an hour ago: the clock stands
    still mid-month (set before the fixtures that subscribe 40 days back)."""
    clock.freeze("2026-09-15T12:00:00Z")


def _subscribe(app, org, product, quantity=3, emails=()):
    sub_id = subscribe(app, org.slug, product.sku, quantity=quantity)
    with app.app_context():
        sub = db.session.get(Subscription, sub_id)
        seat_ids = [
            seats.seat_assign(db.session, actor=SYSTEM, subscription=sub, user_email=e).id
            for e in emails
        ]
        db.session.commit()
        return sub.id, seat_ids


def test_org_usage_page_shows_usage_seats_and_cost(app, metered, make_user):
    admin = make_user("org_admin", metered["org"])
    person = make_user("member", metered["org"])
    _subscribe(app, metered["org"], metered["product"], 3, [person.email])
    ingest(app, [event(quantity="42.5", user_email=person.email)])
    client = app.test_client()
    login(client, admin)
    page = client.get("/org/usage").get_data(as_text=True)
    assert "42.5" in page and "API calls" in page  # the aggregate
    assert "Product cad-suite" in page  # seats table and the seat charge
    assert "seat-days" in page and "Total before tax" in page
    csv_response = client.get("/org/usage.csv")
    assert csv_response.mimetype == "text/csv"
    lines = csv_response.get_data(as_text=True).splitlines()
    assert lines[0] == "organisation,product,meter,aggregation,value,unit,events"
    assert lines[1].startswith("acme,cad-suite,api_calls,sum,42.5,")


def test_org_usage_never_shows_another_organisations_usage(app, metered, make_user, make_org):
    make_org("other")
    subscribe(app, "other", "cad-suite")
    ingest(app, [event(quantity="777", organisation="other")])
    admin = make_user("org_admin", metered["org"])
    client = app.test_client()
    login(client, admin)
    assert "777" not in client.get("/org/usage").get_data(as_text=True)
    assert "777" not in client.get("/org/usage.csv").get_data(as_text=True)


def test_a_bad_period_is_a_clear_error(app, metered, signed_in):
    client = signed_in("org_admin", metered["org"])
    response = client.get("/org/usage?period=2026-13")
    assert response.status_code == 422
    assert "YYYY-MM" in response.get_data(as_text=True)


def test_idle_seat_keep_and_release(app, metered, make_user, make_org):
    admin = make_user("org_admin", metered["org"])
    idle = make_user("member", metered["org"])
    sub_id, [seat_id] = _subscribe(app, metered["org"], metered["product"], 2, [idle.email])
    with app.app_context():
        db.session.get(SeatAssignment, seat_id).assigned_at = now_utc() - dt.timedelta(days=60)
        db.session.commit()
    client = app.test_client()
    login(client, admin)
    page = client.get("/org/idle-seats").get_data(as_text=True)
    assert f"<small>{idle.email}</small>" in page  # listed in the table
    kept = post_form(
        client, f"/org/idle-seats/{seat_id}/keep", {"days": "7"}, token_from="/org/idle-seats"
    )
    assert kept.status_code == 302
    assert f"<small>{idle.email}</small>" not in client.get("/org/idle-seats").get_data(
        as_text=True
    )
    # a bad number of days changes nothing
    bad = post_form(
        client, f"/org/idle-seats/{seat_id}/keep", {"days": "0"}, token_from="/org/idle-seats"
    )
    assert "nothing changed" in " ".join(flashes(client.get(bad.headers["Location"])))
    released = post_form(
        client,
        f"/org/idle-seats/{seat_id}/release",
        {"confirmed": "1"},
        token_from="/org/idle-seats",
    )
    assert released.status_code == 302
    with app.app_context():
        assert db.session.get(SeatAssignment, seat_id).release_reason == "idle"
        assert db.session.get(Subscription, sub_id).quantity == 1


def test_idle_seats_of_another_organisation_are_not_found(app, metered, make_user, make_org):
    other = make_org("other")
    stranger = make_user("member", metered["org"])
    _, [seat_id] = _subscribe(app, metered["org"], metered["product"], 1, [stranger.email])
    admin = make_user("org_admin", other)
    client = app.test_client()
    login(client, admin)
    response = post_form(
        client, f"/org/idle-seats/{seat_id}/release", {}, token_from="/org/idle-seats"
    )
    assert response.status_code == 404
    with app.app_context():
        assert db.session.get(SeatAssignment, seat_id).released_at is None


def test_council_usage_and_utilisation_pages(app, metered, signed_in):
    ingest(app, [event(quantity="5", user_email=person(app, "acme", "a@acme.example"))])
    council = signed_in("council_admin")
    page = council.get("/council/usage").get_data(as_text=True)
    assert "acme" in page and "API calls" in page
    csv_text = council.get("/council/usage?format=csv").get_data(as_text=True)
    assert "acme,cad-suite,api_calls,sum,5," in csv_text
    chart = council.get("/council/utilisation/cad-suite")
    assert chart.status_code == 200
    html = chart.get_data(as_text=True)
    assert "<svg" in html and "polyline" in html and "Capacity" in html
    assert council.get("/council/utilisation/no-such-sku").status_code == 404


def test_members_and_org_admins_cannot_see_council_usage(app, metered, signed_in):
    for role in ("member", "org_admin"):
        client = signed_in(role, metered["org"])
        assert client.get("/council/usage").status_code == 403
        assert client.get("/council/usage/upload").status_code == 403
    assert signed_in("member", metered["org"]).get("/org/usage").status_code == 403


def test_csv_upload_page(app, metered, signed_in):
    council = signed_in("council_admin")
    when = (now_utc() - dt.timedelta(hours=1)).isoformat()
    text = (
        "idempotency_key,organisation,product,meter,quantity,occurred_at\n"
        f"u1,acme,cad-suite,api_calls,3,{when}\n"
        f"u2,acme,cad-suite,api_calls,-3,{when}\n"
    )
    response = post_form(
        council,
        "/council/usage/upload",
        {"file": (io.BytesIO(text.encode()), "usage.csv")},
        content_type="multipart/form-data",
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Events stored: 1;" in page
    assert "quantity: Quantities cannot be negative." in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(UsageEvent)) == 1


def test_csv_upload_refuses_a_file_without_the_columns(app, metered, signed_in):
    council = signed_in("council_admin")
    response = post_form(
        council,
        "/council/usage/upload",
        {"file": (io.BytesIO(b"a,b\n1,2\n"), "usage.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert "Missing columns" in response.get_data(as_text=True)
