"""A person's sign-in sessions: listing them and signing them out (issue 12).

Everyone may see and end their own sessions; council admins may end anyone's.
Services take the database session, flush but never commit, and audit.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.identity.models import User, UserSession
from portal.identity.security import token_digest
from portal.identity.sign_in import sessions_revoke_for_user
from portal.kernel import policy
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _, _l
from portal.kernel.policy import Action


def _check(actor: Actor, action: Action, user: User) -> None:
    """The owner, or a council admin (:mod:`portal.kernel.policy`, ``session.*``)."""
    policy.require(
        actor,
        action,
        organisation_id=user.organisation_id,
        user_id=user.id,
        message=_l("You may only manage your own sign-in sessions."),
    )


def sessions_active(session: Session, *, actor: Actor, user: User) -> list[UserSession]:
    """The user's sessions that are not signed out, most recently used first."""
    _check(actor, Action.SESSION_READ, user)
    return list(
        session.scalars(
            sa.select(UserSession)
            .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        )
    )


def is_current(row: UserSession, token: str | None) -> bool:
    """Whether ``row`` is the session the cookie ``token`` belongs to."""
    return bool(token) and row.token_hash == token_digest(token or "")


def session_of(session: Session, *, actor: Actor, user: User, session_id: int) -> UserSession:
    """``user``'s active session ``session_id``, or :class:`NotFound` (never another's)."""
    _check(actor, Action.SESSION_READ, user)
    row = session.scalar(
        sa.select(UserSession).where(
            UserSession.id == session_id,
            UserSession.user_id == user.id,
            UserSession.revoked_at.is_(None),
        )
    )
    if row is None:
        raise NotFound(_l("No such session."))
    return row


def session_revoke_one(session: Session, *, actor: Actor, user: User, session_id: int) -> None:
    """Sign out one of ``user``'s sessions (the owner, or a council admin)."""
    _check(actor, Action.SESSION_REVOKE, user)
    row = session_of(session, actor=actor, user=user, session_id=session_id)
    row.revoked_at = now_utc()
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="session.revoke",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"session_id": row.id},
    )


def sessions_revoke_all(
    session: Session, *, actor: Actor, user: User, keep_token: str | None = None
) -> int:
    """Sign out all of ``user``'s sessions but the one ``keep_token`` belongs to."""
    _check(actor, Action.SESSION_REVOKE, user)
    count = sessions_revoke_for_user(session, user_id=user.id, keep_token=keep_token)
    audit_record(
        session,
        actor=actor,
        action="session.revoke_all",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"revoked": count},
    )
    return count


_BROWSERS = (
    ("Edge", r"Edg(?:e|A|iOS)?/"),
    ("Opera", r"OPR/|Opera"),
    ("Firefox", r"Firefox/|FxiOS/"),
    ("Chrome", r"Chrome/|CriOS/|HeadlessChrome/"),
    ("Safari", r"Safari/"),
    ("curl", r"^curl/"),
)
_SYSTEMS = (
    ("iPhone", r"iPhone"),
    ("iPad", r"iPad"),
    ("Android", r"Android"),
    ("Windows", r"Windows"),
    ("macOS", r"Mac OS X|Macintosh"),
    ("ChromeOS", r"CrOS"),
    ("Linux", r"Linux"),
)


def device_label(user_agent: str | None) -> str:
    """A short readable name for a browser's User-Agent: "Firefox on Windows"."""
    ua = user_agent or ""
    browser = next((name for name, pattern in _BROWSERS if re.search(pattern, ua)), None)
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, ua)), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return browser or system or ""
    return ua[:40] or _("Unknown device")
