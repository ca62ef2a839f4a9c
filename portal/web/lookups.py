"""Filters people type: an organisation or a product by its name or its slug/SKU.

A filter box accepts what people know (the name, "Acme GmbH") as well as the identifier
("acme-gmbh"), case-insensitively; the page suggests names with a ``<datalist>``. A text
that names nothing is a message beside the box (never a 404 page), and the list then
holds the names that contain it.

A council has thousands of members, so the page lists at most :data:`SUGGESTIONS`
organisations (the first by name, or those matching the text typed); with JavaScript
(``static/js/lookup.js``) the list follows the typing from
``/council/suggestions/organisations?q=…``. Without it the box still takes any name or
slug: the page costs the same at 10,000 members as at 10.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from portal.catalogue.models import Product
from portal.db import db_session
from portal.identity import auth
from portal.kernel.actor import Role
from portal.kernel.i18n import _
from portal.tenancy.models import Organisation

#: Suggestions listed at most (the datalist of a council with thousands of members stays small).
SUGGESTIONS = 50
#: Products offered at most: the catalogue is tens to hundreds of products, all listed.
PRODUCT_SUGGESTIONS = 500
#: Typed text longer than this is cut before it is matched.
_MAX_TEXT = 200

bp = Blueprint("lookups", __name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Lookup(Generic[T]):
    """What a filter box named: the text typed, the thing found, or why nothing was."""

    text: str
    found: T | None = None
    error: str | None = None

    @property
    def near(self) -> str | None:
        """The text to suggest names near: the one typed when it named nothing."""
        return self.text if self.error else None


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
    text = _clean(text)
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


def _clean(text: str | None) -> str:
    return (text or "").replace("\x00", "").strip()[:_MAX_TEXT]  # PostgreSQL refuses NUL


def organisation_suggestions(
    session: Session, near: str | None = None, *, limit: int = SUGGESTIONS
) -> list[tuple[str, str]]:
    """(name, slug) of organisations, by name, for a datalist: the first ``limit``, or
    with ``near`` those whose name or slug contains it (any case)."""
    query = sa.select(Organisation.name, Organisation.slug)
    wanted = _clean(near).lower()
    if wanted:
        query = query.where(
            sa.or_(
                sa.func.lower(Organisation.name).contains(wanted, autoescape=True),
                Organisation.slug.contains(wanted, autoescape=True),
            )
        )
    return [
        (name, slug)
        for name, slug in session.execute(
            query.order_by(Organisation.name, Organisation.slug).limit(limit)
        )
    ]


@bp.get("/council/suggestions/organisations")
@auth.role_required(Role.COUNCIL_ADMIN, Role.FINANCE)
def organisations_matching() -> ResponseReturnValue:
    """The organisations whose name or slug contains ``q``, for a filter box's list (JSON:
    ``{"items": [{"name": …, "slug": …}]}``, at most :data:`SUGGESTIONS`)."""
    found = organisation_suggestions(db_session(), request.args.get("q", type=str))
    return jsonify(items=[{"name": name, "slug": slug} for name, slug in found])


def product_suggestions(session: Session) -> list[tuple[str, str]]:
    """(name, SKU) of products, by name, for a datalist."""
    return [
        (name, sku)
        for name, sku in session.execute(
            sa.select(Product.name, Product.sku).order_by(Product.name).limit(PRODUCT_SUGGESTIONS)
        )
    ]
