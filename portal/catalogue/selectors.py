"""Reading the catalogue, and the seat figures of each product.

Figures are computed with grouped queries for a whole list at once (no query
per product): capacity in force on a day, seats reserved by subscriptions,
seats assigned to people.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.catalogue.models import LicencePool, Price, Product, Vendor
from portal.errors import NotFound, ValidationFailed


def vendor_by_slug(session: Session, slug: str, *, field: str | None = None) -> Vendor:
    """The vendor ``slug``; when it names an input ``field``, a miss is a validation error."""
    vendor = session.scalar(sa.select(Vendor).where(Vendor.slug == (slug or "").lower()))
    if vendor is None:
        if field:
            raise ValidationFailed(f"No vendor “{slug}”.", errors={field: ["No such vendor."]})
        raise NotFound(f"No vendor “{slug}”.")
    return vendor


def product_by_sku(session: Session, sku: str, *, field: str | None = None) -> Product:
    """The product ``sku``; when it names an input ``field``, a miss is a validation error."""
    product = session.scalar(sa.select(Product).where(Product.sku == (sku or "").lower()))
    if product is None:
        if field:
            raise ValidationFailed(f"No product “{sku}”.", errors={field: ["No such product."]})
        raise NotFound(f"No product “{sku}”.")
    return product


def vendors_list(session: Session) -> list[Vendor]:
    """Every vendor, by name."""
    return list(session.scalars(sa.select(Vendor).order_by(Vendor.name)))


def pool_by_id(session: Session, pool_id: int) -> LicencePool:
    pool = session.get(LicencePool, pool_id)
    if pool is None:
        raise NotFound("No such pool.")
    return pool


def pools_of_product(session: Session, product_id: int) -> list[LicencePool]:
    return list(
        session.scalars(
            sa.select(LicencePool)
            .where(LicencePool.product_id == product_id)
            .order_by(LicencePool.starts_on, LicencePool.id)
        )
    )


def prices_of_product(session: Session, product_id: int) -> list[Price]:
    return list(
        session.scalars(
            sa.select(Price)
            .where(Price.product_id == product_id)
            .order_by(Price.currency, Price.model)
        )
    )


def capacity_in_force(session: Session, product_id: int, day: dt.date) -> int:
    """Seats of a product in the pools in force on ``day``."""
    return (
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(LicencePool.capacity), 0)).where(
                LicencePool.product_id == product_id,
                LicencePool.starts_on <= day,
                LicencePool.ends_on >= day,
            )
        )
        or 0
    )


def reserved_seats(session: Session, product_id: int) -> int:
    """Seats of a product granted to live subscriptions."""
    from portal.seats.models import Subscription

    return (
        session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(Subscription.quantity), 0)).where(
                Subscription.product_id == product_id, Subscription.status != "cancelled"
            )
        )
        or 0
    )


@dataclass
class ProductFigures:
    """A product with its seat figures on a day."""

    product: Product
    capacity: int
    reserved: int
    assigned: int
    waiting: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.reserved)

    @property
    def utilisation_pct(self) -> int:
        return round(100 * self.reserved / self.capacity) if self.capacity else 0

    @property
    def subscribable(self) -> bool:
        return self.product.vendor.status == "active"


def catalogue_list(
    session: Session,
    *,
    day: dt.date,
    search: str | None = None,
    vendor_slug: str | None = None,
    product_ids: list[int] | None = None,
) -> list[ProductFigures]:
    """Products with capacity, reserved, assigned and waiting seats, in four queries."""
    from portal.seats.models import SeatAssignment, Subscription

    query = sa.select(Product).join(Product.vendor).order_by(Product.name)
    if search:
        term = search.strip().lower()
        query = query.where(
            sa.or_(
                sa.func.lower(Product.name).contains(term, autoescape=True),
                Product.sku.contains(term, autoescape=True),
                sa.func.lower(Product.description).contains(term, autoescape=True),
                sa.func.lower(Vendor.name).contains(term, autoescape=True),
            )
        )
    if vendor_slug:
        query = query.where(Vendor.slug == vendor_slug)
    if product_ids is not None:
        query = query.where(Product.id.in_(product_ids))
    products = list(session.scalars(query).unique())
    ids = [p.id for p in products]
    if not ids:
        return []
    capacity = dict(
        session.execute(
            sa.select(LicencePool.product_id, sa.func.sum(LicencePool.capacity))
            .where(
                LicencePool.product_id.in_(ids),
                LicencePool.starts_on <= day,
                LicencePool.ends_on >= day,
            )
            .group_by(LicencePool.product_id)
        ).all()
    )
    reserved = {
        pid: (int(q or 0), int(w or 0))
        for pid, q, w in session.execute(
            sa.select(
                Subscription.product_id,
                sa.func.sum(Subscription.quantity),
                sa.func.sum(Subscription.requested_quantity - Subscription.quantity),
            )
            .where(Subscription.product_id.in_(ids), Subscription.status != "cancelled")
            .group_by(Subscription.product_id)
        ).all()
    }
    assigned = dict(
        session.execute(
            sa.select(SeatAssignment.product_id, sa.func.count())
            .where(SeatAssignment.product_id.in_(ids), SeatAssignment.released_at.is_(None))
            .group_by(SeatAssignment.product_id)
        ).all()
    )
    return [
        ProductFigures(
            product=p,
            capacity=int(capacity.get(p.id, 0) or 0),
            reserved=reserved.get(p.id, (0, 0))[0],
            assigned=int(assigned.get(p.id, 0) or 0),
            waiting=reserved.get(p.id, (0, 0))[1],
        )
        for p in products
    ]


def product_figures(session: Session, product: Product, day: dt.date) -> ProductFigures:
    """One product's seat figures."""
    return catalogue_list(session, day=day, product_ids=[product.id])[0]
