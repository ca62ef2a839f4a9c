"""Figures of the finance pages computed by the database (issue 13, pages at scale) equal
the ones computed row by row before: the exports page's totals, the economics' seat-days,
the past-due page's pages and counts."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from portal.billing.economics import seat_days
from portal.billing.exports import export_rows, export_summary, summary
from portal.billing.lifecycle import credit_note_create
from portal.billing.models import Invoice
from portal.billing.overdue import past_due_invoices, past_due_page
from portal.db import db
from portal.kernel.clock import now_utc
from portal.kernel.scope import Scope
from portal.metering.selectors import pool_utilisation_series
from portal.seats.assignments import seat_assign, seat_release
from portal.seats.models import SeatAssignment, Subscription
from tests.billing.factories import draft, finalize, make_due
from tests.conftest import SYSTEM


def test_export_summary_is_the_summary_of_the_rows(app, issued, make_org):
    with app.app_context():
        invoice = db.session.get(Invoice, issued["invoice_id"])
        credit_note_create(db.session, actor=SYSTEM, invoice=invoice, amount=1234, reason="x")
        db.session.commit()
    other = make_org("beta", tax_rate_bp=700)
    from tests.billing.factories import subscribe

    subscribe(app, other.id, issued["product"].id, 3, issued["first"])
    finalize(app, draft(app, other.id, issued["period"]))
    with app.app_context():
        # What export_summary relies on: a final invoice's subtotal is its lines' sum.
        for invoice in db.session.scalars(
            sa.select(Invoice).where(Invoice.period == issued["period"])
        ):
            assert invoice.lines and invoice.subtotal == sum(line.amount for line in invoice.lines)
        for scope in (Scope.council(), Scope.organisation(other.id)):
            rows = list(export_rows(db.session, scope=scope, period=issued["period"]))
            assert export_summary(db.session, scope=scope, period=issued["period"]) == summary(rows)
        assert export_summary(db.session, scope=Scope.council(), period="2000-01") == []


def _shift(app, seat_id: int, assigned: dt.datetime, released: dt.datetime | None) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(SeatAssignment)
            .where(SeatAssignment.id == seat_id)
            .values(assigned_at=assigned, released_at=released)
        )
        db.session.commit()


def test_seat_days_are_the_pool_charts_sums(app, billed, make_user):
    """Seats held all month, assigned during it, released during it, released before it,
    assigned after it: the economics' sums equal the chart's daily series summed."""
    first = billed["first"]
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    people = [make_user(org=billed["org"]) for _ in range(7)]
    seats = []
    with app.app_context():
        subscription = db.session.scalar(
            sa.select(Subscription).where(Subscription.product_id == billed["product"].id)
        )
        for person in people:
            seats.append(
                seat_assign(
                    db.session, actor=SYSTEM, subscription=subscription, user_email=person.email
                ).id
            )
        db.session.commit()
        for person in people[3:]:
            seat_release(
                db.session, actor=SYSTEM, subscription=subscription, user_email=person.email
            )
        db.session.commit()
    hour = dt.timedelta(hours=1)
    day = dt.timedelta(days=1)
    _shift(app, seats[0], start - 40 * day, None)  # held all month
    _shift(app, seats[1], start + 9 * day + 5 * hour, None)  # from the 10th
    _shift(app, seats[2], start + 80 * day, None)  # after the month (if today allows)
    _shift(app, seats[3], start - 3 * day, start + 4 * day)  # released at midnight on the 5th
    _shift(app, seats[4], start + 2 * day + hour, start + 6 * day + 7 * hour)
    _shift(app, seats[5], start - 90 * day, start - 2 * day)  # released before the month
    _shift(app, seats[6], start + 11 * day, start + 11 * day + hour)  # an hour's seat
    today = now_utc().date()
    for last in (first + dt.timedelta(days=12), min(today, first + dt.timedelta(days=27))):
        with app.app_context():
            _, series = pool_utilisation_series(
                db.session, product_id=billed["product"].id, first=first, last=last
            )
            figures = seat_days(
                db.session, product_ids=[billed["product"].id], first=first, last=last
            )
        assert figures[billed["product"].id] == (
            sum(series["Capacity"]),
            sum(series["Reserved"]),
            sum(series["Assigned"]),
        )
        assert figures[billed["product"].id][2] > 0


def test_past_due_page_pages_the_past_due_invoices(app, issued, make_org):
    from tests.billing.factories import subscribe

    today = now_utc().date()
    ids = [issued["invoice_id"]]
    for n in range(4):
        org = make_org(f"late-{n}")
        subscribe(app, org.id, issued["product"].id, 1, issued["first"])
        invoice_id = draft(app, org.id, issued["period"])
        finalize(app, invoice_id)
        ids.append(invoice_id)
    for n, invoice_id in enumerate(ids):
        make_due(app, invoice_id, today - dt.timedelta(days=3 + 10 * n))
    with app.app_context():
        every = past_due_invoices(db.session, scope=Scope.council(), today=today)
        first = past_due_page(db.session, scope=Scope.council(), today=today, page=1, per_page=2)
        rest = [
            past_due_page(db.session, scope=Scope.council(), today=today, page=p, per_page=2)
            for p in (2, 3)
        ]
        listed = [r for page in (first, *rest) for r in page.rows]
        assert [(r.invoice.id, r.days_late, r.overdue) for r in listed] == [
            (r.invoice.id, r.days_late, r.overdue) for r in every
        ]
        assert first.page.total == 5
        assert first.overdue == sum(1 for r in every if r.overdue)
