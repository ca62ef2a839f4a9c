"""Reading the catalogue: vendors, products, pools, prices, capacity in force.

The seat figures of each product (reserved, assigned, waiting) need
subscriptions, which sit above the catalogue: :mod:`portal.seats.figures`.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.catalogue.models import LicencePool, Price, PriceModel, Product, Vendor
from portal.kernel.errors import NotFound, ValidationFailed
from portal.kernel.i18n import _l


def vendor_by_slug(session: Session, slug: str, *, field: str | None = None) -> Vendor:
    """The vendor ``slug``; when it names an input ``field``, a miss is a validation error."""
    vendor = session.scalar(sa.select(Vendor).where(Vendor.slug == (slug or "").lower()))
    if vendor is None:
        if field:
            raise ValidationFailed(
                _l("No vendor “%(slug)s”.", slug=slug), errors={field: [_l("No such vendor.")]}
            )
        raise NotFound(_l("No vendor “%(slug)s”.", slug=slug))
    return vendor


def product_by_sku(session: Session, sku: str, *, field: str | None = None) -> Product:
    """The product ``sku``; when it names an input ``field``, a miss is a validation error."""
    product = session.scalar(sa.select(Product).where(Product.sku == (sku or "").lower()))
    if product is None:
        if field:
            raise ValidationFailed(
                _l("No product “%(sku)s”.", sku=sku), errors={field: [_l("No such product.")]}
            )
        raise NotFound(_l("No product “%(sku)s”.", sku=sku))
    return product


def vendors_list(session: Session) -> list[Vendor]:
    """Every vendor, by name."""
    return list(session.scalars(sa.select(Vendor).order_by(Vendor.name)))


def pool_by_id(session: Session, pool_id: int) -> LicencePool:
    pool = session.get(LicencePool, pool_id)
    if pool is None:
        raise NotFound(_l("No such pool."))
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


def vendors_overview(session: Session) -> list[tuple[Vendor, int]]:
    """Every vendor, by name, with how many products it has (one query)."""
    rows = session.execute(
        sa.select(Vendor, sa.func.count(Product.id))
        .outerjoin(Product, Product.vendor_id == Vendor.id)
        .group_by(Vendor.id)
        .order_by(Vendor.name)
    ).all()
    return [(vendor, int(n)) for vendor, n in rows]


def pool_of_product(session: Session, *, product_id: int, pool_id: int) -> LicencePool:
    """A pool of the given product, or :class:`NotFound` (another product's pool id too)."""
    pool = session.scalar(
        sa.select(LicencePool).where(
            LicencePool.id == pool_id, LicencePool.product_id == product_id
        )
    )
    if pool is None:
        raise NotFound(_l("No such pool of this product."))
    return pool


def seat_prices(session: Session, *, currency: str, product_ids: list[int]) -> dict[int, Price]:
    """The seat price in ``currency`` of each of ``product_ids`` that has one."""
    if not product_ids:
        return {}
    prices = session.scalars(
        sa.select(Price).where(
            Price.product_id.in_(product_ids),
            Price.currency == currency,
            Price.model == PriceModel.SEAT,
        )
    ).unique()
    return {price.product_id: price for price in prices}
