"""Fixtures of the provisioning tests: a webhook receiver, a vendor configured to use it,
an organisation with a subscription of that vendor's product and its admin."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.provisioning.receiver import Receiver, start


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    server, thread = start(box)
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class World:
    vendor_id: int
    vendor_slug: str
    org_id: int
    org_slug: str
    subscription_id: int
    admin_id: int
    product_sku: str
    secret: str


@pytest.fixture
def world(app, make_org, make_user, make_product, receiver) -> World:
    """Vendor ``hooked`` sends webhooks to the receiver; org ``buyer`` holds 5 seats of its
    product ``hooked-app``; the receiver knows the vendor's secret."""
    from portal.catalogue.models import Product, Vendor
    from portal.db import db
    from portal.provisioning import services
    from portal.seats.services import subscription_create
    from portal.tenancy.models import Organisation
    from tests.conftest import SYSTEM

    org = make_org("buyer")
    admin = make_user("org_admin", org)
    product = make_product(capacity=20, sku="hooked-app", vendor="hooked")
    with app.app_context():
        vendor = db.session.query(Vendor).filter_by(slug="hooked").one()
        services.settings_update(
            db.session, actor=SYSTEM, vendor=vendor, data={"webhook_url": receiver.url}
        )
        _, secret = services.webhook_secret_rotate(db.session, actor=SYSTEM, vendor=vendor)
        outcome = subscription_create(
            db.session,
            actor=SYSTEM,
            organisation=db.session.get(Organisation, org.id),
            product=db.session.get(Product, product.id),
            quantity=5,
        )
        db.session.commit()
        receiver.secrets.append(secret)
        return World(
            vendor.id,
            vendor.slug,
            org.id,
            org.slug,
            outcome.subscription.id,
            admin.id,
            product.sku,
            secret,
        )
