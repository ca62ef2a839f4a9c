"""Password hashing and one-time tokens.

Passwords are hashed with Argon2id. Tokens (sessions, invitations, API tokens)
are random, shown once, and stored only as their SHA-256 digest: a token has
256 bits of entropy, so a fast digest is enough and lets us look rows up by it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, has_app_context

from portal.kernel.clock import now_utc
from portal.kernel.errors import ValidationFailed
from portal.kernel.i18n import _, _l

#: Argon2 cost profiles. ``test`` is for the test suite only (PORTAL_ENV=test):
#: the same algorithm at a cost that lets hundreds of accounts be made quickly.
_PROFILES: dict[str, dict[str, Any]] = {
    "default": {},  # argon2-cffi's defaults (RFC 9106 low-memory profile)
    "test": {"time_cost": 1, "memory_cost": 8, "parallelism": 1},
}


@cache
def _hasher_for(profile: str) -> PasswordHasher:
    return PasswordHasher(**_PROFILES[profile])


def _hasher() -> PasswordHasher:
    test = has_app_context() and current_app.config.get("PORTAL_ENV") == "test"
    return _hasher_for("test" if test else "default")


@cache
def _dummy_hash(profile_hasher: PasswordHasher) -> str:
    """A hash of a random password, verified against when the email is unknown, so a
    failed sign-in takes the same time whether or not the account exists."""
    return profile_hasher.hash(secrets.token_urlsafe(16))


MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    """Hash a password with Argon2id."""
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (always spends the hashing time)."""
    hasher = _hasher()
    try:
        return hasher.verify(password_hash or _dummy_hash(hasher), password) and (
            password_hash is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problems(password: str) -> list[str]:
    """What is wrong with a new password, in words a person can act on."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(_("Use at least %(num)d characters.", num=MIN_PASSWORD_LENGTH))
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(_("Use at most %(num)d characters.", num=MAX_PASSWORD_LENGTH))
    if password and password.strip() == "":
        problems.append(_("A password cannot be only spaces."))
    return problems


def new_token(prefix: str = "") -> str:
    """A fresh random token (URL-safe), with an optional readable prefix."""
    return prefix + secrets.token_urlsafe(32)


#: A bearer token (API or SCIM) expires after this long unless its creator gives another
#: time or chooses "never".
TOKEN_LIFETIME = dt.timedelta(days=90)


def token_expiry(expires_at: dt.datetime | None, never_expires: bool) -> dt.datetime | None:
    """The expiry of a new bearer token: ``expires_at``, by default :data:`TOKEN_LIFETIME`
    from now; None (until revoked) only when ``never_expires`` is chosen. The time itself
    is checked by the service's fields (:data:`portal.validation.FutureDateTime`)."""
    if never_expires and expires_at is not None:
        raise ValidationFailed(
            _l("A token either expires or never does."),
            errors={"expires_at": [_l("Give an expiry or choose “never”, not both.")]},
        )
    if expires_at is None and not never_expires:
        return now_utc() + TOKEN_LIFETIME
    return expires_at


def token_digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time string comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
