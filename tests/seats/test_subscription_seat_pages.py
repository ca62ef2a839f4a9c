"""A subscription's holders a page at a time (issue 13: 5,000 seats are not one page),
with the number assigned counted for all of them."""

from __future__ import annotations

from portal.catalogue.models import Product
from portal.db import db
from portal.seats import services
from portal.seats.selectors import subscription_overview
from portal.tenancy.models import Organisation
from tests.conftest import SYSTEM, login


def test_subscription_overview_pages_its_holders(app, make_org, make_product, make_user):
    org = make_org("acme")
    product = make_product(20, sku="cad")
    people = [make_user(org=org) for _ in range(5)]
    with app.app_context():
        sub = services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=8,
        ).subscription
        for person in people:
            services.seat_assign(
                db.session, actor=SYSTEM, subscription=sub, user_email=person.email
            )
        db.session.commit()
        whole = subscription_overview(db.session, organisation_id=org.id, subscription_id=sub.id)
        pages = [
            subscription_overview(
                db.session, organisation_id=org.id, subscription_id=sub.id, page=n, per_page=2
            )
            for n in (1, 2, 3, 4)
        ]
    assert [s.id for p in pages for s in p.seats] == [s.id for s in whole.seats]
    assert [len(p.seats) for p in pages] == [2, 2, 1, 0]
    assert (
        {(p.assigned, p.unassigned) for p in pages}
        == {(5, 3)}
        == {(whole.assigned, whole.unassigned)}
    )


def test_subscription_page_shows_a_pager_past_fifty_holders(
    app, client, make_org, make_product, make_user
):
    org = make_org("acme")
    admin = make_user("org_admin", org=org)
    product = make_product(80, sku="cad")
    people = [make_user(org=org) for _ in range(52)]
    with app.app_context():
        sub = services.subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=60,
        ).subscription
        for person in people:
            services.seat_assign(
                db.session, actor=SYSTEM, subscription=sub, user_email=person.email
            )
        db.session.commit()
        sub_id = sub.id
    login(client, admin)
    first = client.get(f"/org/subscriptions/{sub_id}").get_data(as_text=True)
    second = client.get(f"/org/subscriptions/{sub_id}?page=2").get_data(as_text=True)
    assert 'rel="next"' in first and 'rel="prev"' in second
    shown = [p.email for p in people if p.email in first]
    assert len(shown) == 50
    assert [p.email for p in people if p.email in second] == [
        p.email for p in people if p.email not in first
    ]
