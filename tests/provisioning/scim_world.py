"""The SCIM provisioning tests' world: a vendor provisioning over SCIM into a real SCIM 2.0
server (``scim2-server``, tests/provisioning/scim_vendor_server.py), an organisation holding
seats of its product, and helpers that change seats as the org admin would.

Test modules take the fixtures by assignment (``vendor_server = world.vendor_server``).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from portal.db import db
from portal.kernel.actor import Actor
from tests.conftest import SYSTEM
from tests.provisioning.scim_vendor_server import start

VENDOR = "scim-e2e"
SKU = "scim-e2e-app"
SCIM_JSON = "application/scim+json"


@pytest.fixture
def vendor_server():
    server = start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def scim_world(app, make_org, make_user, make_product, vendor_server):
    """Vendor ``scim-e2e`` provisions over SCIM into ``vendor_server``; organisation
    ``scim-buyer`` holds 5 seats of its product and has an org admin."""
    from portal.catalogue.models import Product, Vendor
    from portal.provisioning import services
    from portal.seats.services import subscription_create
    from portal.tenancy.models import Organisation

    org = make_org("scim-buyer")
    admin = make_user("org_admin", org)
    product = make_product(capacity=20, sku=SKU, vendor=VENDOR)
    with app.app_context():
        vendor = db.session.scalars(sa.select(Vendor).where(Vendor.slug == VENDOR)).one()
        services.settings_update(
            db.session,
            actor=SYSTEM,
            vendor=vendor,
            data={"scim_base_url": vendor_server.base_url, "scim_token": vendor_server.token},
        )
        outcome = subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=5,
        )
        db.session.commit()
        return SimpleNamespace(
            vendor_id=vendor.id,
            org=org,
            admin_id=admin.id,
            product_id=product.id,
            subscription_id=outcome.subscription.id,
        )


def admin(world) -> Actor:
    from portal.identity.models import User

    return Actor.person(db.session.get(User, world.admin_id))


def assign(world, email: str) -> None:
    from portal.seats.models import Subscription
    from portal.seats.services import seat_assign

    seat_assign(
        db.session,
        actor=admin(world),
        subscription=db.session.get(Subscription, world.subscription_id),
        user_email=email,
    )
    db.session.commit()


def release(world, email: str) -> None:
    from portal.seats.models import Subscription
    from portal.seats.services import seat_release

    seat_release(
        db.session,
        actor=admin(world),
        subscription=db.session.get(Subscription, world.subscription_id),
        user_email=email,
    )
    db.session.commit()


def member(app, world, email: str) -> int:
    from portal.identity.accounts import user_create
    from portal.tenancy.models import Organisation

    user = user_create(
        db.session,
        actor=SYSTEM,
        email=email,
        role="member",
        organisation=db.session.get(Organisation, world.org.id),
        name=email.split("@")[0].title(),
    )
    db.session.commit()
    return user.id


def deliveries() -> list[SimpleNamespace]:
    """The SCIM deliveries as they stand, read in a transaction ended at once (SQLite: a
    reader left open would hold the delivery jobs' writes back)."""
    from portal.provisioning.models import Channel, Delivery

    rows = [
        SimpleNamespace(
            id=r.id,
            event=str(r.event),
            state=str(r.state),
            attempts=r.attempts,
            last_status=r.last_status,
            last_error=r.last_error,
        )
        for r in db.session.scalars(
            sa.select(Delivery).where(Delivery.channel == Channel.SCIM).order_by(Delivery.id)
        )
    ]
    db.session.rollback()
    return rows


def run_due(app) -> None:
    from portal.provisioning.jobs import sweep

    with app.app_context():
        sweep(db.session)
        db.session.commit()
