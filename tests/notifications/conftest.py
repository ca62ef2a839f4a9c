"""A council for the notifications tests: two vendors' products held by people of two
organisations, one of whom reads Russian and one who turned mail off."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from portal.db import db
from tests.conftest import SYSTEM, OrgRef, UserRef

VENDOR = "status-soft"
OTHER_VENDOR = "other-soft"


@dataclass
class World:
    acme: OrgRef
    beta: OrgRef
    alice: UserRef  # acme member, holds a seat of VENDOR's product
    boris: UserRef  # beta member (reads Russian), holds a seat of VENDOR's product
    carol: UserRef  # acme member, holds only OTHER_VENDOR's product
    dave: UserRef  # acme member, holds a seat of VENDOR's product, mail turned off
    acme_admin: UserRef  # holds nothing
    beta_admin: UserRef  # holds nothing, reads Russian
    vendor_id: int
    product_sku: str
    other_sku: str


def hold_seat(app, org: OrgRef, sku: str, user: UserRef) -> int:
    """Subscribe ``org`` to ``sku`` (if it has not) and give ``user`` a seat; the seat's id."""
    from portal.catalogue.selectors import product_by_sku
    from portal.seats import selectors as seat_selectors
    from portal.seats.services import seat_assign, subscription_create
    from portal.tenancy.models import Organisation

    with app.app_context():
        organisation = db.session.get(Organisation, org.id)
        product = product_by_sku(db.session, sku)
        live = seat_selectors.live_subscription(
            db.session, organisation_id=org.id, product_id=product.id
        )
        if live is None:
            live = subscription_create(
                db.session, actor=SYSTEM, organisation=organisation, product=product, quantity=5
            ).subscription
        seat = seat_assign(db.session, actor=SYSTEM, subscription=live, user_email=user.email)
        db.session.commit()
        return seat.id


def set_locale(app, user: UserRef, locale: str) -> None:
    from portal.identity.models import User

    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user.id).values(locale=locale))
        db.session.commit()


@pytest.fixture
def world(app, make_org, make_user, make_product) -> World:
    from portal.catalogue.models import Vendor
    from portal.notifications.services import preferences_update

    acme, beta = make_org("acme"), make_org("beta")
    product = make_product(10, sku="mail-suite", vendor=VENDOR, vendor_name="Status Soft")
    other = make_product(10, sku="cad-x", vendor=OTHER_VENDOR)
    alice = make_user("member", acme, email="alice@acme.example")
    boris = make_user("member", beta, email="boris@beta.example")
    carol = make_user("member", acme, email="carol@acme.example")
    dave = make_user("member", acme, email="dave@acme.example")
    acme_admin = make_user("org_admin", acme, email="admin@acme.example")
    beta_admin = make_user("org_admin", beta, email="admin@beta.example")
    set_locale(app, boris, "ru")
    set_locale(app, beta_admin, "ru")
    for org, sku, person in (
        (acme, product.sku, alice),
        (beta, product.sku, boris),
        (acme, other.sku, carol),
        (acme, product.sku, dave),
    ):
        hold_seat(app, org, sku, person)
    with app.app_context():
        from portal.identity.models import User
        from portal.kernel.actor import Actor

        user = db.session.get(User, dave.id)
        preferences_update(
            db.session,
            actor=Actor.person(user, "127.0.0.1"),
            user=user,
            mail_incidents=False,
            mail_standing=False,
            mail_operations=True,
            digest=True,
        )
        vendor_id = db.session.scalar(sa.select(Vendor.id).where(Vendor.slug == VENDOR))
        db.session.commit()
    return World(
        acme=acme,
        beta=beta,
        alice=alice,
        boris=boris,
        carol=carol,
        dave=dave,
        acme_admin=acme_admin,
        beta_admin=beta_admin,
        vendor_id=vendor_id,
        product_sku=product.sku,
        other_sku=other.sku,
    )
