"""Writes for the API: tokens (create, revoke, authenticate) and stored idempotent responses.

A token is ``pk_<scope letter>_`` followed by 256 random bits. Only its SHA-256
digest and a short visible prefix are stored; the token itself is returned once,
by :func:`token_create`, and never again.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.orm import Session

from portal.api.models import ApiToken, IdempotentRequest, TokenScope
from portal.audit.services import audit_record
from portal.catalogue.models import Vendor, VendorStatus
from portal.i18n import state_word
from portal.identity.security import new_token, token_digest, token_expiry
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.tenancy.models import Organisation, OrganisationStatus
from portal.validation import FutureDateTime, Stripped, parse

SCOPES = ("council", "organisation", "vendor")
SCOPE_LETTERS = {TokenScope.COUNCIL: "c", TokenScope.ORGANISATION: "o", TokenScope.VENDOR: "v"}
TOKEN_START = "pk_"  # noqa: S105 (a public prefix, not a secret)
PREFIX_LENGTH = 12  # "pk_c_" and 7 random characters: enough to tell tokens apart
# last_used_at is written at most this often per token, so busy clients do not write on every call.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TokenFields(BaseModel):
    """What a token is created with."""

    model_config = ConfigDict(extra="forbid")
    scope: Literal["council", "organisation", "vendor"]
    name: Annotated[str, Stripped, StringConstraints(min_length=1, max_length=200)]
    expires_at: FutureDateTime | None = None


def _require(
    actor: Actor,
    action: Action,
    scope: str,
    organisation_id: int | None,
    vendor_id: int | None = None,
) -> None:
    """Council admins handle any token; org admins their own organisation's, vendor admins
    their own vendor's (the policy)."""
    policy.require(
        actor,
        action,
        organisation_id=organisation_id if scope == TokenScope.ORGANISATION else None,
        vendor_id=vendor_id if scope == TokenScope.VENDOR else None,
        message=_l("You may not handle this token."),
    )


def token_create(
    session: Session,
    *,
    actor: Actor,
    scope: str,
    organisation: Organisation | None = None,
    vendor: Vendor | None = None,
    name: str,
    expires_at: dt.datetime | None = None,
    never_expires: bool = False,
) -> tuple[ApiToken, str]:
    """Create a token and return it with its plaintext, which is never stored or shown again.

    Council admins (and the command line) create any token; an org admin only
    organisation tokens of their own organisation. A token expires at ``expires_at``, by
    default :data:`~portal.identity.security.TOKEN_LIFETIME` from now; it lives until
    revoked only when ``never_expires`` is chosen.
    """
    expires_at = token_expiry(expires_at, never_expires)
    fields = parse(TokenFields, {"scope": scope, "name": name, "expires_at": expires_at})
    scope = TokenScope(fields.scope)
    errors: dict[str, list[str]] = {}
    if scope == TokenScope.ORGANISATION and organisation is None:
        errors["organisation"] = ["Choose the organisation this token acts for."]
    if scope != TokenScope.ORGANISATION and organisation is not None:
        errors["organisation"] = ["Only organisation tokens belong to an organisation."]
    if scope == TokenScope.VENDOR and vendor is None:
        errors["vendor"] = ["Choose the vendor this token acts for."]
    if scope != TokenScope.VENDOR and vendor is not None:
        errors["vendor"] = ["Only vendor tokens belong to a vendor."]
    if errors:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors)
    _require(
        actor,
        Action.TOKEN_CREATE,
        scope,
        organisation.id if organisation else None,
        vendor.id if vendor else None,
    )
    if organisation is not None and organisation.status != OrganisationStatus.ACTIVE:
        raise ValidationFailed(
            _l(
                "%(organisation)s is %(status)s; its tokens would not work.",
                organisation=organisation.name,
                status=state_word(organisation.status),
            ),
            errors={"organisation": [_l("Choose an active organisation.")]},
        )
    plaintext = new_token(f"{TOKEN_START}{SCOPE_LETTERS[scope]}_")
    token = ApiToken(
        scope=scope,
        organisation_id=organisation.id if organisation else None,
        vendor_id=vendor.id if vendor else None,
        name=fields.name,
        prefix=plaintext[:PREFIX_LENGTH],
        token_hash=token_digest(plaintext),
        created_by_id=actor.user_id,
        expires_at=fields.expires_at,
    )
    session.add(token)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="api_token.create",
        target_type="api_token",
        target_id=token.id,
        target_label=f"{token.prefix}… {token.name}",
        organisation_id=token.organisation_id,
        after={
            "scope": token.scope,
            "name": token.name,
            "prefix": token.prefix,
            "vendor": vendor.slug if vendor else None,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        },
    )
    return token, plaintext


def token_revoke(session: Session, *, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke a token at once. Revoking a revoked token changes nothing."""
    _require(actor, Action.TOKEN_REVOKE, token.scope, token.organisation_id, token.vendor_id)
    if token.revoked_at is not None:
        return token
    token.revoked_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="api_token.revoke",
        target_type="api_token",
        target_id=token.id,
        target_label=f"{token.prefix}… {token.name}",
        organisation_id=token.organisation_id,
        before={"state": "active"},
        after={"state": "revoked"},
    )
    return token


# Built once: every API request looks its token up.
_TOKEN_BY_HASH = sa.select(ApiToken).where(ApiToken.token_hash == sa.bindparam("token_hash"))


def token_authenticate(session: Session, plaintext: str) -> ApiToken | None:
    """The live token for ``plaintext``, or None.

    Refuses unknown, revoked and expired tokens, tokens of an organisation that
    is not active and tokens of a suspended vendor. Notes the time of use, at
    most once a minute per token, without flushing: the caller commits it (and
    can tell from ``session.dirty`` whether there is anything to commit).
    """
    if not plaintext.startswith(TOKEN_START) or len(plaintext) > 200:
        return None
    token = session.scalar(_TOKEN_BY_HASH, {"token_hash": token_digest(plaintext)})
    if token is None or token.state != "active":
        return None
    if token.scope == TokenScope.ORGANISATION and (
        token.organisation is None or token.organisation.status != OrganisationStatus.ACTIVE
    ):
        return None
    if token.scope == TokenScope.VENDOR and (
        token.vendor is None or token.vendor.status == VendorStatus.SUSPENDED
    ):
        return None
    now = now_utc()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token


def idempotent_request_store(
    session: Session,
    *,
    token: ApiToken,
    key: str,
    method: str,
    path: str,
    request_hash: str,
    status: int,
    body: Any,
) -> IdempotentRequest:
    """Keep the response to a creating request for replays of the same ``Idempotency-Key``.

    Flushes at once, so a concurrent request that stored the same key first
    raises ``IntegrityError`` here (the unique constraint on token and key).
    """
    stored = IdempotentRequest(
        organisation_id=token.organisation_id,
        token_id=token.id,
        key=key,
        method=method,
        path=path[:500],
        request_hash=request_hash,
        response_status=status,
        response_body=body,
    )
    session.add(stored)
    session.flush()
    return stored
