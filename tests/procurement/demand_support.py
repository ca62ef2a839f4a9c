"""A hand-built demand dataset: two organisations, three products, subscriptions with their
histories, a waitlist, seats, seat requests and product requests, every figure known."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from portal.db import db
from portal.kernel.clock import now_utc
from portal.procurement.demand import trend_instants
from portal.procurement.models import ProductRequest, ProductRequestState
from portal.seats import counts
from portal.seats.models import (
    SeatAssignment,
    SeatRequest,
    SeatRequestStatus,
    Subscription,
    SubscriptionChange,
    SubscriptionStatus,
)
from tests.support import quick_user

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def _subscription(org_id, product_id, history, *, requested=None, status="active", waited=None):
    """A subscription whose quantity history is ``history`` [(effective_at, quantity)]."""
    quantity = history[-1][1]
    sub = Subscription(
        organisation_id=org_id,
        product_id=product_id,
        quantity=quantity,
        requested_quantity=requested if requested is not None else quantity,
        status=SubscriptionStatus(status),
        starts_on=history[0][0].date(),
        waitlisted_at=waited,
        cancelled_at=history[-1][0] if status == "cancelled" else None,
    )
    db.session.add(sub)
    db.session.flush()
    counts.count_reservation(db.session, sub, (0, 0))  # as the services keep it
    for at, seats in history:
        db.session.add(
            SubscriptionChange(
                organisation_id=org_id,
                subscription_id=sub.id,
                quantity=seats,
                effective_at=at,
                reason="test",
            )
        )
    return sub


def build(app, make_org, make_product) -> SimpleNamespace:
    """The dataset; its expected figures are in the tests that read it.

    * cad-suite (pool of 5): A reserves 3 and waits for 2 more (for 10 days), B reserves
      2, C's cancelled subscription held 4 once; 2 seats held (a third released); one
      pending seat request (one declined); product requests linked to it: #1 open (4
      seats, A) with #2 merged into it (3 seats, B), #3 declined (10 seats).
    * secure-mail (pool of 1): A reserves 1 since last month.
    * no-pool: a product without any pool or subscription.
    * an open request for a product nobody linked (Atlas GIS, 6 seats, B).
    """
    a, b, c = make_org("org-a"), make_org("org-b"), make_org("org-c")
    cad = make_product(5, sku="cad-suite")
    mail = make_product(1, sku="secure-mail")
    bare = make_product(0, sku="no-pool")
    now = now_utc()
    t = trend_instants(now)
    people = [quick_user(app, "member", a) for _ in range(4)] + [quick_user(app, "member", b)]
    with app.app_context():
        sub_a = _subscription(
            a.id, cad.id, [(t[0] - D, 1), (t[1] + H, 3)], requested=5, waited=now - 10 * D - H
        )
        _subscription(b.id, cad.id, [(t[2], 2)])
        _subscription(c.id, cad.id, [(t[0] - 2 * D, 4), (t[1] - H, 0)], status="cancelled")
        _subscription(a.id, mail.id, [(t[2] + H, 1)])
        for n, person in enumerate(people[:3]):
            db.session.add(
                SeatAssignment(
                    organisation_id=a.id,
                    subscription_id=sub_a.id,
                    product_id=cad.id,
                    user_id=person.id,
                    assigned_at=now - 5 * D,
                    released_at=now - D if n == 2 else None,
                    release_reason="test" if n == 2 else None,
                )
            )
        sub_a.assigned = 2  # its active seats (the counters the seat services keep)
        counts.count_change(db.session, cad.id, assigned=2)
        db.session.add(
            SeatRequest(
                organisation_id=a.id, product_id=cad.id, user_id=people[3].id, created_at=now - D
            )
        )
        db.session.add(
            SeatRequest(
                organisation_id=b.id,
                product_id=cad.id,
                user_id=people[4].id,
                status=SeatRequestStatus.DECLINED,
                created_at=now - D,
            )
        )

        def ask(org, name, seats, state=ProductRequestState.OPEN, product=None, into=None):
            r = ProductRequest(
                organisation_id=org.id,
                product_name=name,
                vendor_name="Acme-Soft",
                seats=seats,
                note="",
                reply="",
                state=state,
                product_id=product,
                merged_into_id=into,
            )
            db.session.add(r)
            db.session.flush()
            return r.id

        r1 = ask(a, "CAD Suite", 4, product=cad.id)
        r2 = ask(b, "CAD suite pro", 3, ProductRequestState.MERGED, cad.id, r1)
        r3 = ask(b, "CAD Suite", 10, ProductRequestState.DECLINED, cad.id)
        r4 = ask(b, "Atlas GIS", 6)
        db.session.commit()
    return SimpleNamespace(
        a=a, b=b, c=c, cad=cad, mail=mail, bare=bare, r1=r1, r2=r2, r3=r3, r4=r4, instants=t
    )
