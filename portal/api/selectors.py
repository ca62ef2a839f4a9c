"""Reading API tokens and stored idempotent responses."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.api.models import ApiToken, IdempotentRequest
from portal.kernel.errors import NotFound


def tokens_list(session: Session, *, organisation_id: int | None) -> list[ApiToken]:
    """Tokens, newest first: all of them for the council (None), else one organisation's."""
    query = sa.select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if organisation_id is not None:
        query = query.where(
            ApiToken.scope == "organisation", ApiToken.organisation_id == organisation_id
        )
    return list(session.scalars(query))


def token_in_scope(session: Session, *, organisation_id: int | None, token_id: int) -> ApiToken:
    """One token: any for the council (None), else an organisation token of that organisation."""
    query = sa.select(ApiToken).where(ApiToken.id == token_id)
    if organisation_id is not None:
        query = query.where(
            ApiToken.scope == "organisation", ApiToken.organisation_id == organisation_id
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
