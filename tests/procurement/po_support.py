"""Purchase orders in tests: a vendor with products, council people, orders in any state."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from portal.catalogue.models import Vendor
from portal.db import db
from portal.kernel.actor import Actor, ActorKind
from portal.kernel.clock import now_utc
from portal.procurement import purchase_orders as po_service
from portal.procurement.models import PurchaseOrder
from tests.conftest import UserRef

#: The moves that lead from a draft to each state (cancelled: from a draft).
PATH = {
    "draft": [],
    "approved": ["approve"],
    "sent": ["approve", "send"],
    "confirmed": ["approve", "send", "confirm"],
    "received": ["approve", "send", "confirm", "receive"],
    "cancelled": ["cancel"],
}


def person(user: UserRef) -> Actor:
    """The actor of a signed-in person (as a page makes it)."""
    return Actor(
        label=user.email,
        kind=ActorKind.PERSON,
        user_id=user.id,
        role=user.role,
        organisation_id=user.organisation_id,
    )


def term() -> tuple[dt.date, dt.date]:
    """A year from the first of next month (whatever the tests' instant)."""
    today = now_utc().date()
    first = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return first, first.replace(year=first.year + 1) - dt.timedelta(days=1)


def vendor_with_contact(app, slug: str = "acme-soft", email: str = "orders@acme-soft.example"):
    with app.app_context():
        vendor = db.session.scalar(sa.select(Vendor).where(Vendor.slug == slug))
        vendor.contact_email = email
        db.session.commit()
        return vendor.id


def draft(app, actor: Actor, vendor_id: int, lines: list[dict[str, Any]], **kwargs: Any) -> int:
    """A draft order (12 months from next month, EUR unless told); its id."""
    starts_on, ends_on = term()
    with app.app_context():
        po = po_service.draft_purchase_order(
            db.session,
            actor,
            vendor_id=vendor_id,
            lines=lines,
            currency=kwargs.pop("currency", "EUR"),
            starts_on=kwargs.pop("starts_on", starts_on),
            ends_on=kwargs.pop("ends_on", ends_on),
            **kwargs,
        )
        db.session.commit()
        return po.id


def act(app, actor: Actor, po_id: int, move: str, **kwargs: Any) -> SimpleNamespace:
    """Make one move of the state machine and commit; the order's state and number after."""
    with app.app_context():
        po = db.session.get(PurchaseOrder, po_id)
        getattr(po_service, move)(db.session, actor, po, **kwargs)
        db.session.commit()
        return SimpleNamespace(state=str(po.state), number=po.number)


def to_state(app, po_id: int, state: str, *, admin: Actor, finance: Actor) -> None:
    """Move a draft to ``state`` (approved by the admin, and finance when needed)."""
    for move in PATH[state]:
        if move == "approve":
            act(app, admin, po_id, "approve")
            if state_of(app, po_id) == "draft":
                act(app, finance, po_id, "approve")
        else:
            act(app, admin, po_id, move)


def state_of(app, po_id: int) -> str:
    with app.app_context():
        return str(db.session.get(PurchaseOrder, po_id).state)
