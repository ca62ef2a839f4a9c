"""Reading API tokens and stored idempotent responses, and what a request names.

A request body or filter names vendors, products, meters and organisations by
slug, SKU or key; the ``*_named`` functions find them or answer 404 naming the
field (``errors``), so a client can tell which of its references is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.api.models import ApiToken, IdempotentRequest, TokenScope
from portal.catalogue.models import Meter, Product, Vendor
from portal.catalogue.selectors import product_by_sku, vendor_by_slug
from portal.kernel.errors import NotFound
from portal.tenancy.models import Organisation
from portal.tenancy.selectors import organisation_by_slug

T = TypeVar("T")


def tokens_list(session: Session, *, organisation_id: int | None) -> list[ApiToken]:
    """Tokens, newest first: all of them for the council (None), else one organisation's."""
    query = sa.select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if organisation_id is not None:
        query = query.where(
            ApiToken.scope == TokenScope.ORGANISATION, ApiToken.organisation_id == organisation_id
        )
    return list(session.scalars(query))


def token_in_scope(session: Session, *, organisation_id: int | None, token_id: int) -> ApiToken:
    """One token: any for the council (None), else an organisation token of that organisation."""
    query = sa.select(ApiToken).where(ApiToken.id == token_id)
    if organisation_id is not None:
        query = query.where(
            ApiToken.scope == TokenScope.ORGANISATION, ApiToken.organisation_id == organisation_id
        )
    token = session.scalar(query)
    if token is None:
        raise NotFound("No such token here.")
    return token


def idempotent_request_find(
    session: Session, *, token_id: int, key: str
) -> IdempotentRequest | None:
    """The stored response to the first request with ``key`` from this token, if any."""
    return session.scalar(
        sa.select(IdempotentRequest).where(
            IdempotentRequest.token_id == token_id, IdempotentRequest.key == key
        )
    )


# ---------------------------------------------------------------- what a request names


def _named(find: Callable[[Session, str], T], session: Session, key: str, field: str) -> T:
    """``find(session, key)``; its 404 names ``field`` (``No such <field>.``)."""
    try:
        return find(session, key)
    except NotFound as exc:
        raise NotFound(exc.detail, errors={field: [f"No such {field}."]}) from exc


def vendor_named(session: Session, slug: str) -> Vendor:
    """The vendor a request names by slug (404 naming ``vendor`` when there is none)."""
    return _named(vendor_by_slug, session, slug, "vendor")


def product_named(session: Session, sku: str) -> Product:
    """The product a request names by SKU (404 naming ``product`` when there is none)."""
    return _named(product_by_sku, session, sku, "product")


def organisation_named(session: Session, slug: str) -> Organisation:
    """The organisation a request names by slug (404 naming ``organisation`` when none)."""
    return _named(organisation_by_slug, session, slug, "organisation")


def meter_named(product: Product, key: str) -> Meter:
    """The product's meter ``key`` (404 naming ``meter`` when the product has none such)."""
    for meter in product.meters:
        if meter.key == key:
            return meter
    raise NotFound(
        f"{product.name} has no meter “{key}”.",
        errors={"meter": [f"Choose one of {product.name}'s meters."]},
    )
