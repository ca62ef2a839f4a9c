"""The catalogue with its seat figures: capacity in force against seats reserved and held.

Capacity comes from the catalogue's pools; reserved, waiting and assigned seats from
the counts kept as subscriptions and seats change (:mod:`portal.seats.counts`), a few
rows per product whatever the number of subscriptions. Figures are read with grouped
queries for a whole list at once (no query per product).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from portal.catalogue.models import LicencePool, Price, Product, Vendor, VendorStatus
from portal.catalogue.selectors import (
    pools_of_product,
    prices_of_product,
    product_by_sku,
    seat_prices,
)
from portal.seats.counts import seat_counts
from portal.seats.models import (
    SeatAssignment,
    SeatRequest,
    SeatRequestStatus,
    Subscription,
    SubscriptionStatus,
)
from portal.seats.selectors import holders_of_product


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
        return self.product.vendor.status == VendorStatus.ACTIVE


def catalogue_list(
    session: Session,
    *,
    day: dt.date,
    search: str | None = None,
    vendor_slug: str | None = None,
    product_ids: list[int] | None = None,
    with_meters: bool = False,
) -> list[ProductFigures]:
    """Products with capacity, reserved, assigned and waiting seats, in three queries
    (four ``with_meters``: every product's meters loaded in one, for lists that show them)."""
    query = sa.select(Product).join(Product.vendor).order_by(Product.name)
    if with_meters:
        query = query.options(selectinload(Product.meters))
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
    # A pool is shared: its reserved, waiting and assigned seats are every organisation's,
    # whoever asks (only the sums leave this function); they are kept as seats change.
    totals = seat_counts(session, ids)
    return [
        ProductFigures(
            product=p,
            capacity=int(capacity.get(p.id, 0) or 0),
            reserved=totals.get(p.id, (0, 0, 0))[0],
            assigned=totals.get(p.id, (0, 0, 0))[2],
            waiting=totals.get(p.id, (0, 0, 0))[1],
        )
        for p in products
    ]


def product_figures(session: Session, product: Product, day: dt.date) -> ProductFigures:
    """One product's seat figures."""
    return catalogue_list(session, day=day, product_ids=[product.id])[0]


@dataclass
class ProductOverview:
    """Everything the council's product page shows."""

    figures: ProductFigures
    pools: list[LicencePool]
    prices: list[Price]
    holders: list[tuple[Subscription, int]]  # with their assigned seats

    @property
    def product(self) -> Product:
        return self.figures.product


def product_overview(session: Session, *, sku: str, day: dt.date) -> ProductOverview:
    """A product with its seat figures, pools, prices and the organisations holding seats."""
    product = product_by_sku(session, sku)
    return ProductOverview(
        figures=product_figures(session, product, day),
        pools=pools_of_product(session, product.id),
        prices=prices_of_product(session, product.id),
        holders=holders_of_product(session, product.id),
    )


@dataclass
class CatalogueEntry:
    """A product as one organisation's people see it in the catalogue."""

    figures: ProductFigures
    price: Price | None  # the seat price in the organisation's currency
    subscription: Subscription | None  # the organisation's live subscription, if any
    has_seat: bool  # the reader holds a seat of it
    requested: bool  # the reader has a pending seat request for it

    @property
    def product(self) -> Product:
        return self.figures.product

    @property
    def unavailable(self) -> str | None:
        """Why the organisation cannot newly subscribe (None: it can), as
        :func:`portal.seats.subscriptions.subscribable_or_refuse` refuses: ``vendor`` (under
        review or suspended), ``no_pool`` (no pool in force), ``no_price`` (none in the
        organisation's currency)."""
        if not self.figures.subscribable:
            return "vendor"
        if self.figures.capacity <= 0:
            return "no_pool"
        if self.price is None:
            return "no_price"
        return None

    @property
    def can_request(self) -> bool:
        """Whether a person may ask for a seat: a subscription gives it, or could follow."""
        return self.subscription is not None or self.unavailable is None


def member_catalogue(
    session: Session,
    *,
    organisation_id: int,
    currency: str,
    user_id: int,
    day: dt.date,
    search: str | None = None,
    product_ids: list[int] | None = None,
) -> list[CatalogueEntry]:
    """The catalogue for a person of an organisation: figures, price, and where they stand.

    Everything read about the organisation and the person is scoped to them.
    """
    figures = catalogue_list(session, day=day, search=search, product_ids=product_ids)
    ids = [f.product.id for f in figures]
    if not ids:
        return []
    prices = seat_prices(session, currency=currency, product_ids=ids)
    subscriptions = {
        s.product_id: s
        for s in session.scalars(
            sa.select(Subscription).where(
                Subscription.organisation_id == organisation_id,
                Subscription.product_id.in_(ids),
                Subscription.status != SubscriptionStatus.CANCELLED,
            )
        ).unique()
    }
    held = set(
        session.scalars(
            sa.select(SeatAssignment.product_id).where(
                SeatAssignment.organisation_id == organisation_id,
                SeatAssignment.user_id == user_id,
                SeatAssignment.released_at.is_(None),
            )
        )
    )
    requested = set(
        session.scalars(
            sa.select(SeatRequest.product_id).where(
                SeatRequest.organisation_id == organisation_id,
                SeatRequest.user_id == user_id,
                SeatRequest.status == SeatRequestStatus.PENDING,
            )
        )
    )
    return [
        CatalogueEntry(
            figures=f,
            price=prices.get(f.product.id),
            subscription=subscriptions.get(f.product.id),
            has_seat=f.product.id in held,
            requested=f.product.id in requested,
        )
        for f in figures
    ]


def member_catalogue_entry(
    session: Session, *, organisation_id: int, currency: str, user_id: int, day: dt.date, sku: str
) -> CatalogueEntry:
    """One product of :func:`member_catalogue`, or :class:`NotFound`."""
    product = product_by_sku(session, sku)
    return member_catalogue(
        session,
        organisation_id=organisation_id,
        currency=currency,
        user_id=user_id,
        day=day,
        product_ids=[product.id],
    )[0]
