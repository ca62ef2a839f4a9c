"""Filters people type: an organisation or a product by its name or its slug/SKU.

A filter box accepts what people know (the name, "Acme GmbH") as well as the identifier
("acme-gmbh"), case-insensitively; the page suggests the names with a ``<datalist>`` (no
JavaScript). A text that names nothing is a message beside the box (never a 404 page).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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


def _named(
    session: Session,
    model: Any,
    code: Any,
    text: str | None,
    *,
    several: Callable[[str], str],
    none: Callable[[str], str],
) -> Lookup[Any]:
    """The row of ``model`` whose ``code`` column or name is ``text`` (any case); empty: no filter.

    An exact code wins over a name; two rows of that name are ``several``, none is ``none``.
    """
    text = (text or "").replace("\x00", "").strip()[:200]  # PostgreSQL refuses NUL
    if not text:
        return Lookup(text)
    wanted = text.lower()
    found = session.scalars(
        sa.select(model)
        .where(sa.or_(code == wanted, sa.func.lower(model.name) == wanted))
        .order_by(code)
        .limit(2)
    ).all()
    exact = [row for row in found if getattr(row, code.key) == wanted]
    if exact:
        return Lookup(text, exact[0])
    if len(found) == 1:
        return Lookup(text, found[0])
    return Lookup(text, error=several(text) if found else none(text))


def organisation_named(session: Session, text: str | None) -> Lookup[Organisation]:
    """The organisation whose slug or name is ``text`` (any case); empty text: no filter."""
    return _named(
        session,
        Organisation,
        Organisation.slug,
        text,
        several=lambda t: _("Several organisations are named “%(text)s”: give the slug.", text=t),
        none=lambda t: _("No organisation is named “%(text)s”. Choose one from the list.", text=t),
    )


def product_named(session: Session, text: str | None) -> Lookup[Product]:
    """The product whose SKU or name is ``text`` (any case); empty text: no filter."""
    return _named(
        session,
        Product,
        Product.sku,
        text,
        several=lambda t: _("Several products are named “%(text)s”: give the SKU.", text=t),
        none=lambda t: _("No product is named “%(text)s”. Choose one from the list.", text=t),
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
