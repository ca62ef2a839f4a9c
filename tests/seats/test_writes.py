"""The statements a seat change runs (``portal.seats.writes``): same rules, fewer round trips."""

from __future__ import annotations

import sqlalchemy as sa

from portal.db import db
from portal.identity.models import User
from portal.seats import services, writes
from portal.seats.models import SeatAssignment, Subscription
from tests.conftest import SYSTEM
from tests.seats.test_concurrency import _people, _subscription


def _statements(app):
    """Collect the SQL statements the app's engine runs (a list, filled as they run)."""
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    return seen, note


def test_insert_seat_gives_none_for_a_person_holding_one_and_leaves_the_transaction_usable(
    app, make_org, make_product
):
    org, product = make_org(), make_product(10)
    [email] = _people(app, org, 1)
    sub_id = _subscription(app, org, product, 5)
    with app.app_context():
        subscription = db.session.get(Subscription, sub_id)
        user = db.session.scalar(sa.select(User).where(User.email == email))
        seat = writes.insert_seat(db.session, subscription=subscription, user=user)
        assert seat is not None and seat.id is not None
        assert seat.user is user and seat.subscription is subscription
        assert writes.insert_seat(db.session, subscription=subscription, user=user) is None
        # No IntegrityError was raised: the transaction goes on and commits the one seat.
        assert writes.holds_active_seat(
            db.session, organisation_id=org.id, user_id=user.id, product_id=product.id
        )
        db.session.commit()
        count = db.session.scalar(
            sa.select(sa.func.count()).where(SeatAssignment.subscription_id == sub_id)
        )
        assert count == 1


def test_lock_subscription_reads_the_row_afresh(app, make_org, make_product):
    org, product = make_org(), make_product(10)
    sub_id = _subscription(app, org, product, 5)
    with app.app_context():
        subscription = db.session.get(Subscription, sub_id)
        assert subscription.quantity == 5
        # Another writer grew it meanwhile (behind the ORM's back).
        db.session.execute(
            sa.update(Subscription.__table__)
            .where(Subscription.__table__.c.id == sub_id)
            .values(quantity=7, requested_quantity=7)
        )
        assert subscription.quantity == 5  # the session's copy is stale
        writes.lock_subscription(db.session, subscription)
        assert subscription.quantity == 7
        assert subscription.organisation.id == org.id and subscription.product.id == product.id
        db.session.rollback()


def test_an_assignment_and_a_release_run_no_savepoint_and_one_seat_query_each(
    app, make_org, make_product
):
    org, product = make_org(), make_product(10)
    [email] = _people(app, org, 1)
    sub_id = _subscription(app, org, product, 5)
    seen, note = _statements(app)
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", note)
        try:
            subscription = db.session.get(Subscription, sub_id)
            seen.clear()
            seat = services.seat_assign(
                db.session, actor=SYSTEM, subscription=subscription, user_email=email
            )
            db.session.commit()
            assert seat.user.email == email
            assigning = list(seen)
            seen.clear()
            subscription = db.session.get(Subscription, sub_id)
            services.seat_release(
                db.session, actor=SYSTEM, subscription=subscription, user_email=email
            )
            db.session.commit()
            releasing = list(seen)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", note)
    assert not [s for s in assigning + releasing if "SAVEPOINT" in s.upper()]
    inserts = [s for s in assigning if s.startswith("INSERT INTO seat_assignments")]
    assert len(inserts) == 1 and "ON CONFLICT" in inserts[0]
    locks = [s for s in assigning if s.startswith("SELECT") and "FROM subscriptions" in s]
    assert len(locks) == 1  # locked and read afresh in one statement (the get came before)
    seat_reads = [s for s in releasing if "FROM seat_assignments" in s and s.startswith("SELECT")]
    assert len(seat_reads) == 1
