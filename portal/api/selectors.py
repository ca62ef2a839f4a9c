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
from portal.kernel.i18n import _l
from portal.kernel.scope import Scope
from portal.tenancy.models import Organisation
from portal.tenancy.selectors import organisation_by_slug

T = TypeVar("T")


def _tokens_of(scope: Scope) -> sa.ColumnElement[bool]:
    """Every token for the council; else the organisation tokens of the scope's organisation."""
    if scope.is_council:
        return sa.true()
    return sa.and_(
        ApiToken.scope == TokenScope.ORGANISATION, scope.filter(ApiToken.organisation_id)
    )


def tokens_list(session: Session, *, scope: Scope) -> list[ApiToken]:
    """Tokens in ``scope``, newest first."""
    query = (
        sa.select(ApiToken)
        .where(_tokens_of(scope))
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return list(session.scalars(query))


def vendor_tokens(session: Session, *, vendor_id: int) -> list[ApiToken]:
    """A vendor's own API tokens (scope ``vendor``), newest first: the vendor portal's list."""
    query = (
        sa.select(ApiToken)
        .where(ApiToken.scope == TokenScope.VENDOR, ApiToken.vendor_id == vendor_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    )
    return list(session.scalars(query))


def vendor_token(session: Session, *, vendor_id: int, token_id: int) -> ApiToken:
    """One of a vendor's tokens, or :class:`NotFound` (another vendor's is not found)."""
    token = session.scalar(
        sa.select(ApiToken).where(
            ApiToken.id == token_id,
            ApiToken.scope == TokenScope.VENDOR,
            ApiToken.vendor_id == vendor_id,
        )
    )
    if token is None:
        raise NotFound(_l("No such token here."))
    return token


def token_in_scope(session: Session, *, scope: Scope, token_id: int) -> ApiToken:
    """One token in ``scope`` (see :func:`tokens_list`), or :class:`NotFound`."""
    query = sa.select(ApiToken).where(ApiToken.id == token_id, _tokens_of(scope))
    token = session.scalar(query)
    if token is None:
        raise NotFound(_l("No such token here."))
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
        raise NotFound(exc.detail, errors={field: [_l("No such %(field)s.", field=field)]}) from exc


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
        _l("%(product)s has no meter “%(key)s”.", product=product.name, key=key),
        errors={"meter": [_l("Choose one of %(product)s's meters.", product=product.name)]},
    )
