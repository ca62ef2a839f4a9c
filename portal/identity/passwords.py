"""Passwords: changing one's own, and resetting a forgotten one by a mailed link.

Services take the database session and an :class:`Actor`, flush but never
commit, and raise domain errors with stable codes.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.identity.accounts import check_password
from portal.identity.models import User, UserSession
from portal.identity.security import hash_password, token_digest, verify_password
from portal.identity.sign_in import sessions_revoke_for_user, sign_in_refusal
from portal.kernel import policy
from portal.kernel.actor import Actor, ActorKind
from portal.kernel.clock import now_utc
from portal.kernel.errors import InvalidState, NotFound, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.mail import build_message, mail_queue


def password_change(
    session: Session, *, actor: Actor, user: User, current: str, new: str, keep_token: str | None
) -> None:
    """Change one's own password; every other sign-in session of the account ends."""
    policy.require(
        actor,
        Action.USER_PASSWORD_CHANGE,
        organisation_id=user.organisation_id,
        user_id=user.id,
        message=_l("You may change only your own password."),
    )
    if not verify_password(user.password_hash, current or ""):
        raise ValidationFailed(
            _l("The current password is not right."),
            errors={"current_password": [_l("This is not your current password.")]},
        )
    check_password(new, "new_password")
    user.password_hash = hash_password(new)
    keep = token_digest(keep_token) if keep_token else ""
    session.execute(
        sa.update(UserSession)
        .where(
            UserSession.user_id == user.id,
            UserSession.revoked_at.is_(None),
            UserSession.token_hash != keep,
        )
        .values(revoked_at=now_utc())
    )
    audit_record(
        session,
        actor=actor,
        action="user.change_password",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )


class _PortalClockSigner(TimestampSigner):
    """Dates reset links, and checks their age, by the portal's clock (not time.time())."""

    def get_timestamp(self) -> int:
        return int(now_utc().timestamp())


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt="password-reset", signer=_PortalClockSigner
    )


def _password_fingerprint(user: User) -> str:
    # Changes whenever the password does, so a reset link works once.
    return hashlib.sha256((user.password_hash or "none").encode()).hexdigest()[:16]


def password_reset_request(session: Session, *, email: str, ip: str | None = None) -> None:
    """Mail a reset link if an active account has this email. Says nothing either way."""
    normalised = (email or "").strip().lower()
    user = session.scalar(sa.select(User).where(User.email == normalised)) if normalised else None
    if user is None or sign_in_refusal(user) is not None:
        return
    token = _reset_serializer().dumps({"u": user.id, "f": _password_fingerprint(user)})
    minutes = current_app.config["PORTAL_PASSWORD_RESET_MINUTES"]
    mail_queue(
        session,
        build_message(
            to=user.email,
            subject=_l("Reset your portal password"),
            locale=user.locale,
            template="password_reset",
            link=f"{current_app.config['PORTAL_BASE_URL']}/password/reset/{token}",
            minutes=minutes,
            user=user,
        ),
        organisation_id=user.organisation_id,
        related=("user", user.id),
    )
    audit_record(
        session,
        actor=Actor(label=user.email, kind=ActorKind.ANONYMOUS, ip=ip),
        action="user.request_password_reset",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )


def password_reset_user(session: Session, token: str) -> User:
    """The account a reset link is for, or an error if the link expired or was used."""
    minutes = current_app.config["PORTAL_PASSWORD_RESET_MINUTES"]
    try:
        data = _reset_serializer().loads(token, max_age=minutes * 60)
    except SignatureExpired as exc:
        raise InvalidState(
            _l("This reset link has expired. Ask for a new one."), code="reset_expired"
        ) from exc
    except BadSignature as exc:
        raise NotFound(_l("This reset link is not valid."), code="reset_invalid") from exc
    user = session.get(User, data.get("u"))
    if user is None or _password_fingerprint(user) != data.get("f"):
        raise InvalidState(
            _l("This reset link has already been used. Ask for a new one."), code="reset_used"
        )
    return user


def password_reset_complete(
    session: Session, *, token: str, password: str, ip: str | None = None
) -> User:
    """Set a new password from a reset link; the link and all old sessions stop working."""
    user = password_reset_user(session, token)
    check_password(password)
    user.password_hash = hash_password(password)
    sessions_revoke_for_user(session, user_id=user.id)
    session.flush()
    audit_record(
        session,
        actor=Actor.person(user, ip),
        action="user.reset_password",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )
    return user
