"""Overdue invoices holding back new subscriptions; the council's economics of a month."""

from __future__ import annotations

import calendar
import datetime as dt
from fractions import Fraction

import pytest

from portal.billing.economics import council_economics, economics_rows
from portal.billing.overdue import overdue_invoices, past_due_invoices
from portal.billing.rating import round_half_up
from portal.catalogue.models import Product
from portal.db import db
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState
from portal.kernel.scope import Scope
from portal.seats.models import SeatAssignment, Subscription
from portal.seats.services import seat_assign, subscription_cancel, subscription_create
from portal.settings.services import settings_update
from portal.tenancy.models import Organisation
from tests.billing.factories import draft, finalize, make_due
from tests.conftest import SYSTEM


def _setting(app, **values) -> None:
    with app.app_context():
        settings_update(db.session, actor=SYSTEM, data=values)
        db.session.commit()


def _subscribe(app, org_id: int, product_id: int):
    with app.app_context():
        subscription = subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org_id),
            product=db.session.get(Product, product_id),
            quantity=1,
        ).subscription
        db.session.commit()
        return subscription.id


# ---------------------------------------------------------------- overdue


def test_past_due_and_overdue_follow_the_grace_period(app, issued):
    today = now_utc().date()
    _setting(app, overdue_grace_days=14)
    with app.app_context():
        assert past_due_invoices(db.session, scope=Scope.council(), today=today) == []
    make_due(app, issued["invoice_id"], today - dt.timedelta(days=14))
    with app.app_context():
        [late] = past_due_invoices(db.session, scope=Scope.council(), today=today)
        assert (late.days_late, late.overdue) == (14, False)
        assert overdue_invoices(db.session, scope=Scope.council(), today=today) == []
    make_due(app, issued["invoice_id"], today - dt.timedelta(days=15))
    with app.app_context():
        [late] = overdue_invoices(
            db.session, scope=Scope.organisation(issued["org"].id), today=today
        )
        assert late.number == issued["number"]
        assert overdue_invoices(db.session, scope=Scope.organisation(999_999), today=today) == []


def test_overdue_invoices_refuse_new_subscriptions_when_the_council_says_so(
    app, issued, make_product, make_user
):
    today = now_utc().date()
    other_product = make_product(5, sku="pdm-vault", vendor="autodraft")
    person = make_user("member", issued["org"])
    make_due(app, issued["invoice_id"], today - dt.timedelta(days=60))
    # the setting is off: nothing is held back
    first = _subscribe(app, issued["org"].id, other_product.id)
    with app.app_context():
        subscription_cancel(
            db.session, actor=SYSTEM, subscription=db.session.get(Subscription, first)
        )
        db.session.commit()
    _setting(app, suspend_subscriptions_when_overdue=True)
    with pytest.raises(InvalidState) as refused:
        _subscribe(app, issued["org"].id, other_product.id)
    assert refused.value.code == "overdue_invoices"
    assert issued["number"] in refused.value.detail
    # existing subscriptions and seats are not touched: a seat can still be given
    with app.app_context():
        existing = db.session.query(Subscription).filter_by(product_id=issued["product"].id).one()
        assert existing.status == "active" and existing.quantity == 10
        seat_assign(db.session, actor=SYSTEM, subscription=existing, user_email=person.email)
        db.session.commit()
        assert db.session.query(SeatAssignment).count() == 1
    # paying lifts the hold
    from portal.billing import lifecycle
    from portal.billing.models import Invoice

    with app.app_context():
        lifecycle.payment_record(
            db.session,
            actor=SYSTEM,
            invoice=db.session.get(Invoice, issued["invoice_id"]),
            amount=35700,
            method="bank_transfer",
            received_on=today,
        )
        db.session.commit()
    assert _subscribe(app, issued["org"].id, other_product.id)


def test_the_overdue_page_lists_them(app, issued, signed_in):
    make_due(app, issued["invoice_id"], now_utc().date() - dt.timedelta(days=40))
    page = signed_in("finance").get("/finance/overdue").get_data(as_text=True)
    assert issued["number"] in page and "overdue" in page and "€357.00" in page


# ---------------------------------------------------------------- economics


def test_economics_cost_prorated_against_billing_with_utilisation(app, billed, make_product):
    """A pool in force from the 11th of last month: cost for the rest of the month only."""
    from portal.catalogue.services import pool_create

    period, first = billed["period"], billed["first"]
    days = calendar.monthrange(first.year, first.month)[1]
    # make_product gave cad-suite a pool from 30 days ago; a second pool, in GBP, from the 11th
    with app.app_context():
        pool_create(
            db.session,
            actor=SYSTEM,
            data={
                "product": "cad-suite",
                "capacity": 7,
                "starts_on": first + dt.timedelta(days=10),
                "ends_on": first + dt.timedelta(days=400),
                "unit_cost": {"amount": 999, "currency": "GBP"},
            },
        )
        db.session.commit()
    finalize(app, draft(app, billed["org"].id, period))
    today = now_utc().date()
    with app.app_context():
        economics = council_economics(db.session, period=period, today=today)
    [entry] = economics.products
    assert entry.sku == "cad-suite"
    pools = {pool.currency: pool for pool in entry.pools}
    pool_start = today - dt.timedelta(days=30)  # make_product's pool, in EUR
    last = first + dt.timedelta(days=days - 1)
    eur_days = max(0, (last - max(pool_start, first)).days + 1)
    eur_cost = round_half_up(Fraction(50 * 500 * eur_days, days))
    if eur_days:
        assert (pools["EUR"].days_in_force, pools["EUR"].cost) == (eur_days, eur_cost)
    gbp = pools["GBP"]
    assert gbp.days_in_force == days - 10
    assert gbp.cost == round_half_up(Fraction(7 * 999 * (days - 10), days))
    assert entry.cost.get("EUR", 0) == eur_cost and entry.cost["GBP"] == gbp.cost
    assert entry.billed == {"EUR": 30000}
    # utilisation: 10 seats reserved every day; capacity as the pools were in force
    assert entry.days == days
    assert entry.reserved_days == 10 * days
    assert entry.capacity_days == 50 * eur_days + 7 * (days - 10)
    assert entry.assigned_days == 0
    totals = {t.currency: (t.cost, t.billed, t.margin) for t in economics.totals}
    assert totals["EUR"] == (eur_cost, 30000, 30000 - eur_cost)
    assert totals["GBP"] == (gbp.cost, 0, -gbp.cost)
    rows = economics_rows(economics)
    kinds = [r[3] for r in rows]
    assert kinds == ["council_cost"] * len(entry.pools) + ["billed", "utilisation"]
    assert rows[-2][5:10] == ("EUR", "", "", "", 30000)


def test_economics_leave_drafts_out_and_say_so(app, mid_month, billed):
    # mid-month: on the 31st make_product's pool (from 30 days ago) is not in force last month
    draft(app, billed["org"].id, billed["period"])
    with app.app_context():
        economics = council_economics(db.session, period=billed["period"], today=now_utc().date())
    assert economics.drafts == 1
    assert economics.products[0].billed == {}
