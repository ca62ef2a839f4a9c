"""Second factors (SPEC 8.1, issue 12): authenticator apps (TOTP) and recovery codes.

* **TOTP** (RFC 6238 through ``pyotp``: 30-second steps, 6 digits). The shared secret
  is sealed with ``PORTAL_ENCRYPTION_KEY`` (:mod:`portal.crypto`) and counts only once
  a code has confirmed it. A code is accepted one step early or late (clocks drift),
  and never twice: the step of the last code taken is kept, and a code of that step
  or an earlier one is refused.
* **Recovery codes**: ten, shown once when made, kept as keyed digests
  (:func:`portal.crypto.keyed_digest`); each works once. Making new ones replaces
  the old ones.
* **Passkeys** live in :mod:`portal.identity.passkeys`; this module only counts
  them (:func:`user_has_second_factor`) and removes them in a reset.

Council admins and finance must have a second factor; an organisation's admin may
require one of everyone in it (:func:`second_factor_required`). Single sign-on
accounts rely on their provider and are not asked for one. A person who lost their
factors is reset by *another* council admin (:func:`factors_reset`).

Services take the database session, flush but never commit, and audit; no secret
or code is ever written to the audit log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pyotp
import segno
import sqlalchemy as sa
from pyotp.utils import strings_equal
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.crypto import decrypt_secret, encrypt_secret, keyed_digest
from portal.identity.models import RecoveryCode, TotpFactor, User
from portal.identity.passkeys import passkey_count, passkeys_remove_all
from portal.identity.security import verify_password
from portal.identity.sign_in import sessions_revoke_for_user
from portal.kernel import policy
from portal.kernel.actor import Actor, ActorKind, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, DomainError, PermissionDenied, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.tenancy.models import Organisation

TOTP_DIGITS = 6
TOTP_INTERVAL = 30
TOTP_WINDOW = 1  # steps accepted either side of now
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_LENGTH = 10  # ~49 bits each; shown as two groups of five
_RECOVERY_PURPOSE = "recovery-code"

ROLES_REQUIRING_SECOND_FACTOR = (Role.COUNCIL_ADMIN, Role.FINANCE)

# How a session was authenticated (user_sessions.amr).
AMR_PASSWORD = "pwd"  # noqa: S105 (a sign-in method, not a secret)
AMR_TOTP = "pwd+otp"
AMR_RECOVERY = "pwd+recovery"
AMR_PASSKEY = "pwd+passkey"
AMR_SSO = "sso"
SECOND_FACTOR_METHODS = (AMR_TOTP, AMR_RECOVERY, AMR_PASSKEY)


class SecondFactorRefused(DomainError):
    """The code is not a current authenticator code nor an unused recovery code."""

    status = 401
    code = "invalid_second_factor"
    title = _l("Second factor refused")


WRONG_CODE = "That code is not right, or it was used already. Try the newest code."


# ---------------------------------------------------------------- questions


def totp_factor(session: Session, user_id: int) -> TotpFactor | None:
    """The person's authenticator app, confirmed or still being set up."""
    return session.scalar(sa.select(TotpFactor).where(TotpFactor.user_id == user_id))


def totp_confirmed(session: Session, user_id: int) -> bool:
    """Whether the person has a confirmed authenticator app."""
    factor = totp_factor(session, user_id)
    return factor is not None and factor.confirmed_at is not None


def recovery_codes_left(session: Session, user_id: int) -> int:
    """How many of the person's recovery codes are still unused."""
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def user_has_second_factor(session: Session, user: User) -> bool:
    """A confirmed authenticator app or at least one passkey."""
    return totp_confirmed(session, user.id) or passkey_count(session, user.id) > 0


def second_factor_required(user: User) -> bool:
    """Council admins and finance must have one; so must everyone in an organisation
    whose admin requires it."""
    if Role(user.role) in ROLES_REQUIRING_SECOND_FACTOR:
        return True
    org = user.organisation
    return bool(org is not None and org.require_second_factor)


# ---------------------------------------------------------------- rules


def _check_self(actor: Actor, user: User) -> None:
    """Only the person, signed in, manages their own factors."""
    message = "Only the person themselves can change their second factors."
    if actor.kind != ActorKind.PERSON:  # a token or a job never holds a factor
        raise PermissionDenied(message)
    policy.require(
        actor,
        Action.USER_SECOND_FACTOR_MANAGE,
        organisation_id=user.organisation_id,
        user_id=user.id,
        message=message,
    )


def _step() -> int:
    return int(now_utc().timestamp()) // TOTP_INTERVAL


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)


def _normalise(code: str | None) -> str:
    return "".join((code or "").split()).replace("-", "").lower()


def _totp_matches(factor: TotpFactor, code: str) -> int | None:
    """The step ``code`` belongs to, if it is one of now's (±1) and newer than the last
    one taken; else ``None``."""
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = _totp(decrypt_secret(factor.secret_encrypted))
    now = _step()
    found = None
    for step in range(now - TOTP_WINDOW, now + TOTP_WINDOW + 1):
        # Every candidate is compared (constant work whichever matches).
        if strings_equal(totp.generate_otp(step), code) and found is None:
            found = step
    if found is None or (factor.last_used_step is not None and found <= factor.last_used_step):
        return None
    return found


# ---------------------------------------------------------------- TOTP


@dataclass(frozen=True)
class TotpSetup:
    """What the enrolment page shows: the secret (for typing) and its otpauth:// URI."""

    secret: str
    uri: str

    @property
    def secret_groups(self) -> str:
        """The secret in groups of four, easier to type."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))

    def qr_svg(self, *, title: str = "QR code for your authenticator app") -> str:
        """The URI as an inline SVG QR code (no script, no style attribute)."""
        return segno.make(self.uri, error="m").svg_inline(
            scale=5, border=2, title=title, dark="#000", light="#fff", omitsize=False
        )


def _setup(secret: str, user: User, issuer: str) -> TotpSetup:
    uri = _totp(secret).provisioning_uri(name=user.email, issuer_name=issuer)
    return TotpSetup(secret=secret, uri=uri)


def totp_begin(session: Session, *, actor: Actor, user: User, issuer: str) -> TotpSetup:
    """Start (or restart) setting up an authenticator app: a fresh secret, unconfirmed.

    A confirmed app must be removed first. Nothing is audited until the code confirms it.
    """
    _check_self(actor, user)
    factor = totp_factor(session, user.id)
    if factor is not None and factor.confirmed_at is not None:
        raise Conflict(
            _l("An authenticator app is already set up. Remove it first to set up another."),
            code="totp_exists",
        )
    secret = pyotp.random_base32()  # 160 bits
    if factor is None:
        factor = TotpFactor(user_id=user.id, organisation_id=user.organisation_id)
        session.add(factor)
    factor.secret_encrypted = encrypt_secret(secret)
    factor.created_at = now_utc()
    factor.last_used_step = None
    session.flush()
    return _setup(secret, user, issuer)


def totp_pending(session: Session, *, actor: Actor, user: User, issuer: str) -> TotpSetup | None:
    """The authenticator app being set up (not confirmed yet), to show again."""
    _check_self(actor, user)
    factor = totp_factor(session, user.id)
    if factor is None or factor.confirmed_at is not None:
        return None
    return _setup(decrypt_secret(factor.secret_encrypted), user, issuer)


def totp_confirm(session: Session, *, actor: Actor, user: User, code: str) -> list[str]:
    """Confirm the app being set up with a code from it. Returns fresh recovery codes
    (to show once) when the person has no unused ones, else an empty list."""
    _check_self(actor, user)
    factor = totp_factor(session, user.id)
    if factor is None or factor.confirmed_at is not None:
        raise Conflict(_l("Start setting up an authenticator app first."), code="totp_not_started")
    step = _totp_matches(factor, _normalise(code))
    if step is None:
        raise ValidationFailed(
            _l("The code does not match."),
            errors={"code": [_l("That code does not match. Type the code your app shows now.")]},
        )
    factor.confirmed_at = now_utc()
    factor.last_used_step = step
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="user.totp_enrol",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )
    if recovery_codes_left(session, user.id) == 0:
        return recovery_codes_generate(session, actor=actor, user=user)
    return []


def totp_remove(
    session: Session,
    *,
    actor: Actor,
    user: User,
    code: str | None = None,
    password: str | None = None,
) -> None:
    """Remove one's authenticator app, proven with a current code or one's password.

    Recovery codes go too when no passkey is left to go with them.
    """
    _check_self(actor, user)
    factor = totp_factor(session, user.id)
    if factor is None:
        raise Conflict(_l("No authenticator app is set up."), code="totp_missing")
    if factor.confirmed_at is None:  # a setup never finished: nothing to prove
        session.delete(factor)
        session.flush()
        return
    proven = False
    normalised = _normalise(code)
    if normalised:
        step = _totp_matches(factor, normalised)
        if step is not None:
            factor.last_used_step = step
            proven = True
    if not proven and password:
        proven = verify_password(user.password_hash, password)
    if not proven:
        raise ValidationFailed(
            _l("Not proven."),
            errors={
                "code": [_l("Type a current code from your app, or your password.")],
            },
        )
    session.delete(factor)
    if passkey_count(session, user.id) == 0:
        session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="user.totp_remove",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
    )


# ---------------------------------------------------------------- recovery codes


def _recovery_digest(user_id: int, normalised: str) -> str:
    return keyed_digest(f"{user_id}:{normalised}", purpose=_RECOVERY_PURPOSE)


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def recovery_codes_generate(session: Session, *, actor: Actor, user: User) -> list[str]:
    """Ten new single-use recovery codes (returned once, stored as digests); the old
    ones stop working. Only for a person with a second factor."""
    _check_self(actor, user)
    if not user_has_second_factor(session, user):
        raise Conflict(
            _l("Set up an authenticator app or a passkey first; recovery codes stand in for one."),
            code="no_second_factor",
        )
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    for code in codes:
        session.add(
            RecoveryCode(
                user_id=user.id,
                organisation_id=user.organisation_id,
                code_hash=_recovery_digest(user.id, _normalise(code)),
            )
        )
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="user.recovery_codes_generate",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"count": RECOVERY_CODE_COUNT},
    )
    return codes


# ---------------------------------------------------------------- the second step


def verify_second_factor(session: Session, *, user: User, code: str, ip: str | None = None) -> str:
    """Check a code at the second sign-in step: a current authenticator code or an
    unused recovery code (used up by this). Returns the session's ``amr``
    (:data:`AMR_TOTP` or :data:`AMR_RECOVERY`); else :class:`SecondFactorRefused`."""
    normalised = _normalise(code)
    if not normalised or len(normalised) > 64:
        raise SecondFactorRefused(WRONG_CODE)
    if len(normalised) == TOTP_DIGITS and normalised.isdigit():
        factor = totp_factor(session, user.id)
        if factor is not None and factor.confirmed_at is not None:
            step = _totp_matches(factor, normalised)
            if step is not None:
                factor.last_used_step = step
                session.flush()
                return AMR_TOTP
        raise SecondFactorRefused(WRONG_CODE)
    if not user_has_second_factor(session, user):
        raise SecondFactorRefused(WRONG_CODE)
    now = now_utc()
    # One statement: two racing requests with the same code cannot both use it.
    used = session.execute(
        sa.update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _recovery_digest(user.id, normalised),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(used, "rowcount", 0):
        raise SecondFactorRefused(WRONG_CODE)
    audit_record(
        session,
        actor=Actor.person(user, ip),
        action="user.recovery_code_used",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"left": recovery_codes_left(session, user.id)},
    )
    return AMR_RECOVERY


# ---------------------------------------------------------------- lost factors


def factors_reset(session: Session, *, actor: Actor, user: User) -> None:
    """Lost-factor recovery by another council admin: the person's authenticator app,
    recovery codes and passkeys are removed and every session of theirs ends, so they
    sign in with their password and set up a new factor. Never on oneself."""
    message = "Only a council admin can reset a person's second factors."
    if actor.kind != ActorKind.PERSON:
        raise PermissionDenied(message)
    policy.require(
        actor,
        Action.USER_SECOND_FACTOR_RESET,
        organisation_id=user.organisation_id,
        message=message,
    )
    if actor.user_id == user.id:
        raise PermissionDenied(
            _l("You cannot reset your own second factors; ask another council admin."),
            code="reset_self",
        )
    had_totp = totp_factor(session, user.id) is not None
    codes = recovery_codes_left(session, user.id)
    session.execute(sa.delete(TotpFactor).where(TotpFactor.user_id == user.id))
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    passkeys = passkeys_remove_all(session, user.id) or 0
    revoked = sessions_revoke_for_user(session, user_id=user.id)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="user.second_factor_reset",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        before={"totp": had_totp, "recovery_codes_left": codes},
        after={"passkeys_removed": passkeys, "sessions_ended": revoked},
    )


# ---------------------------------------------------------------- the organisation's rule


def second_factor_requirement_set(
    session: Session, *, actor: Actor, organisation: Organisation, required: bool
) -> None:
    """An organisation's admin (or a council admin) requires, or stops requiring, a
    second factor of everyone in the organisation."""
    message = "Only the organisation's admin can change this."
    if actor.kind != ActorKind.PERSON:
        raise PermissionDenied(message)
    policy.require(
        actor, Action.ORGANISATION_UPDATE, organisation_id=organisation.id, message=message
    )
    before = bool(organisation.require_second_factor)
    if before == required:
        return
    organisation.require_second_factor = required
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="organisation.require_second_factor",
        target_type="organisation",
        target_id=organisation.id,
        target_label=organisation.slug,
        organisation_id=organisation.id,
        before={"require_second_factor": before},
        after={"require_second_factor": required},
    )


# ---------------------------------------------------------------- single sign-on


def provider_amr_acr(claims: dict[str, object]) -> tuple[str | None, str | None]:
    """The provider's ``amr`` (a list of method names, joined with spaces) and ``acr``
    claims of an ID token, as recorded on the session; ``None`` where it sent none."""
    amr = claims.get("amr")
    if isinstance(amr, list | tuple):
        amr_text = " ".join(str(method) for method in amr if method is not None) or None
    elif isinstance(amr, str):
        amr_text = amr or None
    else:
        amr_text = None
    acr = claims.get("acr")
    return (
        amr_text[:200] if amr_text else None,
        str(acr)[:200] if isinstance(acr, str | int) and str(acr) else None,
    )
