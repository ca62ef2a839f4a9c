"""Renewal forecasts from the database (issue 16): the reader, the API, the pages and the
reminders (once each, on a frozen clock).

The world: product ``sheet-pro`` (20.00 EUR and 18.00 GBP a seat-month) and one pool of
22 seats from 1 January to 30 April 2027 at 10.00 EUR a seat-month. ``alpha`` (EUR)
holds 10 seats from 1 January; ``beta`` (GBP) 2 seats from 1 January, one more every
week (10 by 26 February). On 1 March 2027 the product holds 20 seats, growing by about
one a week: the pool of 22 is forecast to run out in about two weeks, and ends in 60 days.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from portal.catalogue.models import LicencePool, Product
from portal.catalogue.services import pool_create, price_create
from portal.db import council_wide, db
from portal.notifications.models import Notification
from portal.procurement import forecast as forecasting
from portal.procurement.forecast_jobs import POOL_ENDING, POOL_RUNNING_OUT, pool_reminders_send
from portal.procurement.forecast_models import PoolReminder
from portal.seats.models import Subscription, SubscriptionStatus
from portal.seats.subscriptions import (
    subscription_cancel,
    subscription_create,
    subscription_resize,
)
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM
from tests.support import client_for, count

START = dt.datetime(2027, 1, 1, 9, tzinfo=dt.UTC)


@pytest.fixture
def world(app, clock, make_org, make_product, make_user):
    clock.freeze(START)
    make_product(0, sku="sheet-pro", vendor="sheetworks", price=2000)
    alpha = make_org("alpha", currency="EUR")
    beta = make_org("beta", currency="GBP", country="GB")
    admin = make_user("council_admin")
    finance = make_user("finance")
    with app.app_context():
        pool = pool_create(
            db.session,
            actor=SYSTEM,
            data={
                "product": "sheet-pro",
                "capacity": 22,
                "starts_on": "2027-01-01",
                "ends_on": "2027-04-30",
                "unit_cost": {"amount": 1000, "currency": "EUR"},
            },
        )
        price_create(
            db.session,
            actor=SYSTEM,
            data={"product": "sheet-pro", "currency": "GBP", "model": "seat", "unit_amount": 1800},
        )
        product = db.session.scalar(sa.select(Product).where(Product.sku == "sheet-pro"))
        subs = {}
        for org, seats in ((alpha, 10), (beta, 2)):
            subs[org.slug] = subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org.id),
                product=product,
                quantity=seats,
            ).subscription.id
        db.session.commit()
        pool_id = pool.id
        for week in range(1, 9):
            clock.freeze(START + dt.timedelta(days=7 * week))
            subscription_resize(
                db.session,
                actor=SYSTEM,
                subscription=db.session.get(Subscription, subs["beta"]),
                quantity=2 + week,
            )
            db.session.commit()
    clock.freeze("2027-03-01T08:00:00Z")
    return {"pool": pool_id, "admin": admin, "finance": finance, "alpha": alpha, "beta": beta}


def test_the_reader_sums_every_organisation(app, world):
    with app.app_context():
        pool, f = forecasting.pool_forecast(db.session, actor=SYSTEM, pool_id=world["pool"])
        assert pool.id == world["pool"]
        assert f.reserved_now == 20 and f.capacity_now == 22
        assert f.history[-1].seats == 20 and f.history[-1].day == dt.date(2027, 3, 1)
        # Day 0 of the history is 84 days back, before anyone subscribed.
        assert f.history[0].seats == 0
        # About a seat a week: runs out within two to three weeks, well before the end.
        assert 7 <= (f.runs_out_on - f.today).days <= 21
        assert f.next_term_starts_on == dt.date(2027, 5, 1)
        assert f.next_term_ends_on == dt.date(2027, 8, 31)
        assert f.term_months == 4
        assert f.recommended_capacity >= 22
        assert f.cost.currency == "EUR"
        assert f.cost.amount == f.recommended_capacity * 1000 * 4
        assert {m.currency for m in f.revenue} == {"EUR", "GBP"}


def test_reserved_per_currency_and_waiting_are_the_subscriptions_sums(app, world, make_org):
    """The revenue's shares and the seats waiting come from the figures kept as seats change
    and from the subscriptions of the organisations not paying in the council's most common
    currency (GBP here, after three more organisations): the same as summing every
    subscription, through a waitlist and a cancellation."""
    gamma = make_org("gamma", currency="GBP", country="GB")
    delta = make_org("delta", currency="GBP", country="GB")
    epsilon = make_org("epsilon", currency="EUR")
    with app.app_context():
        product = db.session.scalar(sa.select(Product).where(Product.sku == "sheet-pro"))

        def subscribe(org, seats: int) -> None:
            subscription_create(
                db.session,
                actor=SYSTEM,
                organisation=db.session.get(Organisation, org.id),
                product=product,
                quantity=seats,
                on_shortage="waitlist",
            )
            db.session.commit()

        subscribe(gamma, 2)
        subscribe(delta, 3)  # the pool had 2 seats left: these wait
        with council_wide(db.session):
            alpha = db.session.scalar(
                sa.select(Subscription).where(Subscription.organisation_id == world["alpha"].id)
            )
        subscription_cancel(db.session, actor=SYSTEM, subscription=alpha)
        db.session.commit()
        subscribe(epsilon, 4)
        with council_wide(db.session):
            live = db.session.execute(
                sa.select(
                    Organisation.currency, Subscription.quantity, Subscription.requested_quantity
                )
                .join(Organisation, Organisation.id == Subscription.organisation_id)
                .where(
                    Subscription.product_id == product.id,
                    Subscription.status != SubscriptionStatus.CANCELLED,
                )
            ).all()
        counted: dict[str, int] = {}
        for currency, quantity, _ in live:
            counted[currency] = counted.get(currency, 0) + quantity
        counted = {currency: seats for currency, seats in counted.items() if seats}
        inputs = forecasting._products_inputs(db.session, [product.id], dt.date(2027, 3, 1))
        assert inputs[product.id].reserved_by_currency == counted
        assert set(counted) == {"EUR", "GBP"}, counted  # alpha's EUR cancelled, epsilon's
        assert inputs[product.id].waiting == sum(r - q for _, q, r in live)


def test_api_forecast(app, world, client):
    from portal.api.services import token_create

    with app.app_context():
        _, council = token_create(
            db.session, actor=SYSTEM, scope="council", organisation=None, vendor=None, name="c"
        )
        _, mine = token_create(
            db.session,
            actor=SYSTEM,
            scope="organisation",
            organisation=db.session.get(Organisation, world["alpha"].id),
            vendor=None,
            name="o",
        )
        db.session.commit()
    path = f"/api/v1/pools/{world['pool']}/forecast"
    answer = client.get(path, headers={"Authorization": f"Bearer {council}"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["pool"] == world["pool"] and body["product"] == "sheet-pro"
    assert body["as_of"] == "2027-03-01" and body["ends_on"] == "2027-04-30"
    assert body["reserved"] == 20 and body["capacity"] == 22
    assert body["runs_out_on"] is not None and body["runs_out_on"] < "2027-04-30"
    assert body["projection"][0] == {"date": "2027-03-01", "seats": 20}
    assert {"date": "2027-04-30", "seats": body["at_ends_on"]} in body["projection"]
    assert body["projection"][-1]["date"] == "2027-07-29"  # 90 days past the end
    assert body["cost"] == {"amount": body["recommended_capacity"] * 4000, "currency": "EUR"}
    assert float(body["trend_per_day"]) > 0
    # An organisation's token may not; an unknown pool is 404; a silly id never a 500.
    refused = client.get(path, headers={"Authorization": f"Bearer {mine}"})
    assert refused.status_code == 403
    for bad, status in (("999999", 404), ("0", 422), ("99999999999999999999999", 422)):
        answer = client.get(
            f"/api/v1/pools/{bad}/forecast", headers={"Authorization": f"Bearer {council}"}
        )
        assert answer.status_code in (status, 404), (bad, answer.status_code)
        assert answer.headers["Content-Type"].startswith("application/problem+json")
    document = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/pools/{id}/forecast" in document["paths"]


def _told(app, kind: str) -> int:
    return count(app, Notification, Notification.kind == kind)


def test_reminders_once_each(app, clock, world):
    """1 March: 60 days left and running out within 30 days: two reminders, to the council
    admin and finance each. Again the same day, or a week later: nothing new. 31 March:
    30 days left: one more. A pool extended to a new end is reminded again."""
    with app.app_context():
        assert pool_reminders_send(db.session, actor=SYSTEM) == 2
        db.session.commit()
    assert _told(app, POOL_ENDING) == 2 and _told(app, POOL_RUNNING_OUT) == 2
    for moment in ("2027-03-01T20:00:00Z", "2027-03-08T08:00:00Z"):
        clock.freeze(moment)
        with app.app_context():
            assert pool_reminders_send(db.session, actor=SYSTEM) == 0
            db.session.commit()
    assert _told(app, POOL_ENDING) == 2 and _told(app, POOL_RUNNING_OUT) == 2
    clock.freeze("2027-03-31T08:00:00Z")
    with app.app_context():
        assert pool_reminders_send(db.session, actor=SYSTEM) == 1
        db.session.commit()
        assert pool_reminders_send(db.session, actor=SYSTEM) == 0
        db.session.commit()
        kinds = sorted(db.session.scalars(sa.select(PoolReminder.kind)))
    assert kinds == ["ends_in_30", "ends_in_60", "runs_out"]
    assert _told(app, POOL_ENDING) == 4
    # Extended to 31 May: 61 days left on 31 March, nothing; then 60 days: reminded again.
    with app.app_context():
        db.session.get(LicencePool, world["pool"]).ends_on = dt.date(2027, 5, 31)
        db.session.commit()
        assert pool_reminders_send(db.session, actor=SYSTEM) == 1  # runs out, new term
        db.session.commit()
    clock.freeze("2027-04-01T08:00:00Z")
    with app.app_context():
        assert pool_reminders_send(db.session, actor=SYSTEM) == 1  # 60 days before 31 May
        db.session.commit()
    assert _told(app, POOL_ENDING) == 6


def test_the_reminder_job_is_scheduled_daily(app):
    from portal.jobs.queue import REGISTRY

    spec = REGISTRY["procurement.pool_reminders"]
    assert spec.every == dt.timedelta(days=1)


def test_pages(app, world):
    council = client_for(app, "council_admin")
    listing = council.get("/council/forecasts")
    assert listing.status_code == 200
    text = listing.get_data(as_text=True)
    assert f"/council/forecasts/{world['pool']}" in text and "Product sheet-pro" in text
    page = council.get(f"/council/forecasts/{world['pool']}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "<svg" in text and "Draft a renewal purchase order" in text
    assert council.get("/council/forecasts/999999").status_code == 404
    finance = client_for(app, "finance")
    page = finance.get(f"/council/forecasts/{world['pool']}")
    assert page.status_code == 200
    assert "Draft a renewal purchase order" not in page.get_data(as_text=True)


def test_draft_the_renewal_order(app, world):
    from portal.procurement.models import PurchaseOrder
    from tests.support import form_post

    council = client_for(app, "council_admin")
    path = f"/council/forecasts/{world['pool']}"
    answer = form_post(council, f"{path}/renewal", {}, token_from=path)
    assert answer.status_code == 302
    with app.app_context():
        (order,) = db.session.scalars(sa.select(PurchaseOrder)).all()
        assert order.source == "forecast"
        assert (order.starts_on, order.ends_on) == (dt.date(2027, 5, 1), dt.date(2027, 8, 31))
        assert order.currency == "EUR"
        _, f = forecasting.pool_forecast(db.session, actor=SYSTEM, pool_id=world["pool"])
        assert order.total == f.cost.amount
    # Without the CSRF token: refused, nothing drafted.
    assert council.post(f"{path}/renewal").status_code == 400
    assert count(app, PurchaseOrder) == 1
    org_admin = client_for(app, "org_admin", world["alpha"])
    assert org_admin.post(f"{path}/renewal").status_code in (403, 400)
    assert count(app, PurchaseOrder) == 1


def test_cli(app, world, runner):
    import json

    listed = runner.invoke(args=["forecasts", "list"])
    assert listed.exit_code == 0, listed.output
    (line,) = listed.output.strip().splitlines()
    assert line.split("\t")[:5] == [str(world["pool"]), "sheet-pro", "2027-04-30", "22", "20"]
    shown = runner.invoke(args=["forecasts", "show", str(world["pool"])])
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.output)
    assert body["reserved"] == 20 and body["ends_on"] == "2027-04-30"
    for bad in ("999999", "0", "x", "99999999999999999999999"):
        refused = runner.invoke(args=["forecasts", "show", bad])
        assert refused.exit_code != 0 and "Traceback" not in refused.output
    reminded = runner.invoke(args=["forecasts", "remind"])
    assert reminded.exit_code == 0 and "Reminders sent: 2." in reminded.output
    again = runner.invoke(args=["forecasts", "remind"])
    assert "Reminders sent: 0." in again.output
