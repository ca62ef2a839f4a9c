"""Signing in: checking a password, and the server-side sign-in sessions.

Services take the database session, flush but never commit, and raise domain
errors with stable codes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.identity.models import User, UserSession
from portal.identity.security import new_token, token_digest, verify_password
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import DomainError
from portal.kernel.i18n import _l
from portal.observability import login_failed
from portal.signals import organisation_status_changed
from portal.tenancy.models import Organisation, OrganisationStatus


class SignInRefused(DomainError):
    """Sign-in was refused. The message says no more than the person may know."""

    status = 401
    code = "invalid_credentials"
    title = _l("Sign-in refused")


GENERIC_SIGN_IN_FAILURE = "That email and password do not match an account."


# ---------------------------------------------------------------- sign-in


def authenticate(session: Session, *, email: str, password: str) -> User:
    """The account for ``email`` and ``password``, or :class:`SignInRefused`.

    Unknown emails and wrong passwords get the same generic message and take the
    same time. Only after a correct password does the message say that the
    account is deactivated or the organisation suspended or closed.
    """
    normalised = (email or "").strip().lower()
    user = session.scalar(sa.select(User).where(User.email == normalised)) if normalised else None
    ok = verify_password(user.password_hash if user else None, password or "")
    if user is None or not ok:
        login_failed("bad_password")
        raise SignInRefused(GENERIC_SIGN_IN_FAILURE)
    refusal = sign_in_refusal(user)
    if refusal:
        login_failed("account_unavailable")
        raise SignInRefused(refusal, code="account_unavailable")
    return user


def sign_in_refusal(user: User) -> str | None:
    """Why this account may not be signed in now, or ``None`` when it may."""
    if not user.is_active:
        if user.vendor_id is not None:  # a vendor admin: the council deactivated them
            return "This account has been deactivated. Ask the council to restore it."
        return "This account has been deactivated. Ask your organisation's admin to restore it."
    org = user.organisation
    if org is not None and org.status != OrganisationStatus.ACTIVE:
        if org.status == OrganisationStatus.SUSPENDED:
            why = f" Reason: {org.status_reason}." if org.status_reason else ""
            return (
                f"{org.name} is suspended, so its accounts cannot sign in.{why} "
                "Contact the council."
            )
        if org.status == OrganisationStatus.CLOSED:
            return f"{org.name}'s membership is closed, so its accounts cannot sign in."
        return f"{org.name}'s membership application is still under review."
    return None


def session_start(
    session: Session,
    *,
    user: User,
    ip: str | None,
    user_agent: str | None,
    amr: str = "pwd",
    sso_amr: str | None = None,
    sso_acr: str | None = None,
) -> str:
    """Open a server-side sign-in session and return its token (kept only in the cookie).

    ``amr`` says how the person was authenticated ("pwd", "pwd+otp", "pwd+recovery",
    "pwd+passkey", "sso"); for single sign-on, the provider's ``amr``/``acr`` claims.
    """
    token = new_token()
    session.add(
        UserSession(
            user_id=user.id,
            organisation_id=user.organisation_id,
            token_hash=token_digest(token),
            ip=ip,
            user_agent=(user_agent or "")[:300],
            amr=amr[:32],
            sso_amr=sso_amr[:200] if sso_amr else None,
            sso_acr=sso_acr[:200] if sso_acr else None,
        )
    )
    user.last_login_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=Actor.person(user, ip),
        action="user.sign_in",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"amr": amr},
    )
    return token


#: ``last_seen_at`` is written at most this often per session, not on every request.
LAST_SEEN_RESOLUTION = dt.timedelta(minutes=1)


def session_lookup(session: Session, token: str) -> UserSession | None:
    """The live sign-in session a token belongs to, if it and its user are still good."""
    row = session.scalar(
        sa.select(UserSession).where(
            UserSession.token_hash == token_digest(token), UserSession.revoked_at.is_(None)
        )
    )
    if row is None or sign_in_refusal(row.user) is not None:
        return None
    return row


def session_user(session: Session, token: str) -> User | None:
    """The user a sign-in session token belongs to, if it is still good."""
    row = session_lookup(session, token)
    return row.user if row is not None else None


def session_touch(row: UserSession) -> bool:
    """Note that the session was used now (at most once per :data:`LAST_SEEN_RESOLUTION`);
    whether anything changed (then the caller commits)."""
    now = now_utc()
    if row.last_seen_at is not None and now - row.last_seen_at < LAST_SEEN_RESOLUTION:
        return False
    row.last_seen_at = now
    return True


def session_revoke(session: Session, token: str) -> None:
    """End one sign-in session (sign-out)."""
    session.execute(
        sa.update(UserSession)
        .where(UserSession.token_hash == token_digest(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=now_utc())
    )


def sessions_revoke_for_user(
    session: Session, *, user_id: int, keep_token: str | None = None
) -> int:
    """End every sign-in session of a user (deactivation, password change), but the one
    ``keep_token`` belongs to if given ("sign out everywhere else"); how many were ended."""
    query = sa.update(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None)
    )
    if keep_token:
        query = query.where(UserSession.token_hash != token_digest(keep_token))
    result = session.execute(query.values(revoked_at=now_utc()))
    return int(getattr(result, "rowcount", 0) or 0)


@organisation_status_changed.connect
def _revoke_sessions_of_unavailable_org(organisation: Organisation, **kwargs: Any) -> None:
    """A suspended or closed organisation's people are signed out at once."""
    if organisation.status in (OrganisationStatus.SUSPENDED, OrganisationStatus.CLOSED):
        kwargs["session"].execute(
            sa.update(UserSession)
            .where(UserSession.organisation_id == organisation.id, UserSession.revoked_at.is_(None))
            .values(revoked_at=now_utc())
        )
