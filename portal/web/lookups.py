"""Filters people type: an organisation or a product by its name or its slug/SKU.

A filter box accepts what people know (the name, "Acme GmbH") as well as the identifier
("acme-gmbh"), case-insensitively; the page suggests the names with a ``<datalist>`` (no
JavaScript). A text that names nothing is a message beside the box (never a 404 page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.catalogue.models import Product
from portal.kernel.i18n import _
from portal.tenancy.models import Organisation

#: Suggestions listed at most (the datalist of a council with thousands of members stays small).
SUGGESTIONS = 500

T = TypeVar("T")


@dataclass(frozen=True)
class Lookup(Generic[T]):
    """What a filter box named: the text typed, the thing found, or why nothing was."""

    text: str
    found: T | None = None
    error: str | None = None


def organisation_named(session: Session, text: str | None) -> Lookup[Organisation]:
    """The organisation whose slug or name is ``text`` (any case); empty text: no filter."""
    text = (text or "").replace("\x00", "").strip()[:200]  # PostgreSQL refuses NUL
    if not text:
        return Lookup(text)
    wanted = text.lower()
    found = session.scalars(
        sa.select(Organisation)
        .where(sa.or_(Organisation.slug == wanted, sa.func.lower(Organisation.name) == wanted))
        .order_by(Organisation.slug)
        .limit(2)
    ).all()
    exact = [o for o in found if o.slug == wanted]
    if exact:
        return Lookup(text, exact[0])
    if len(found) == 1:
        return Lookup(text, found[0])
    if found:
        return Lookup(
            text, error=_("Several organisations are named “%(text)s”: give the slug.", text=text)
        )
    return Lookup(
        text, error=_("No organisation is named “%(text)s”. Choose one from the list.", text=text)
    )


def product_named(session: Session, text: str | None) -> Lookup[Product]:
    """The product whose SKU or name is ``text`` (any case); empty text: no filter."""
    text = (text or "").replace("\x00", "").strip()[:200]  # PostgreSQL refuses NUL
    if not text:
        return Lookup(text)
    wanted = text.lower()
    found = session.scalars(
        sa.select(Product)
        .where(sa.or_(Product.sku == wanted, sa.func.lower(Product.name) == wanted))
        .order_by(Product.sku)
        .limit(2)
    ).all()
    exact = [p for p in found if p.sku == wanted]
    if exact:
        return Lookup(text, exact[0])
    if len(found) == 1:
        return Lookup(text, found[0])
    if found:
        return Lookup(
            text, error=_("Several products are named “%(text)s”: give the SKU.", text=text)
        )
    return Lookup(
        text, error=_("No product is named “%(text)s”. Choose one from the list.", text=text)
    )


def organisation_suggestions(session: Session) -> list[tuple[str, str]]:
    """(name, slug) of organisations, by name, for a datalist."""
    return [
        (name, slug)
        for name, slug in session.execute(
            sa.select(Organisation.name, Organisation.slug)
            .order_by(Organisation.name)
            .limit(SUGGESTIONS)
        )
    ]


def product_suggestions(session: Session) -> list[tuple[str, str]]:
    """(name, SKU) of products, by name, for a datalist."""
    return [
        (name, sku)
        for name, sku in session.execute(
            sa.select(Product.name, Product.sku).order_by(Product.name).limit(SUGGESTIONS)
        )
    ]
