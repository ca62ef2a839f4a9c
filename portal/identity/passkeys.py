"""Passkeys (WebAuthn) as a second factor for password accounts (issue 12).

A passkey is a key pair made by an authenticator (the device's platform
authenticator, a phone, a security key); the portal keeps its public key and
checks a signature over a fresh challenge at each use. The ceremonies are those
of the W3C WebAuthn recommendation, verified by ``webauthn`` (py_webauthn):

* **Registration**: :func:`registration_options` makes the options for
  ``navigator.credentials.create()`` (a random challenge, the relying party, the
  account, the credentials it already has so one authenticator is not added
  twice); :func:`passkey_register` verifies the browser's answer and keeps the
  credential. Only the signed-in owner of a password account registers (SSO
  accounts rely on their provider).
* **Authentication** (the second step of a sign-in): :func:`authentication_options`
  for the person whose password was just accepted, and :func:`passkey_authenticate`
  verifying the assertion. These take no :class:`Actor`: nobody is signed in yet;
  the caller vouches that ``user``'s password was verified.

**Challenges** live in the Flask session (the signed session cookie) under one
key, with their purpose, the user and the time they were made: each verification
takes it out (single use), and one older than :data:`CHALLENGE_LIFETIME` is
refused. A copy of an old cookie replayed with an old answer is refused as well:
a sign-in challenge is good only for a passkey not used since it was made
(``last_used_at``), and a registration answer names a credential that now exists.

**The relying party** is ``PORTAL_BASE_URL``: its host is the RP ID and its scheme,
host and port the only origin accepted. WebAuthn accepts domain names only (and
``localhost``), not IP addresses: with ``http://127.0.0.1:5000`` passkeys are
unavailable and the pages say so (serve at ``http://localhost:5000`` instead).

**Signature counters**: an authenticator that counts must report more than last
time; a counter that did not grow means the credential may have been copied, and
the sign-in is refused (:data:`SIGN_COUNT_REFUSED`).

Services flush but never commit; registration, renaming and removal are audited
(``passkey.register``, ``passkey.rename``, ``passkey.remove``), and so is a sign-in
refused for a counter that went backwards (``passkey.clone_suspected``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from flask import session as flask_session
from pydantic import BaseModel, StringConstraints
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from portal.audit.services import audit_record
from portal.identity.models import Passkey, User
from portal.kernel import policy
from portal.kernel.actor import Actor, ActorKind
from portal.kernel.clock import now_utc
from portal.kernel.errors import (
    Conflict,
    DomainError,
    InvalidState,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.validation import OptionalText, parse

log = logging.getLogger(__name__)

CHALLENGE_KEY = "passkey_challenge"
CHALLENGE_LIFETIME = dt.timedelta(minutes=5)
REGISTER = "register"
AUTHENTICATE = "authenticate"
RP_NAME = "Software licensing portal"
# A browser's answer is a few kilobytes; anything far larger is not one.
MAX_CREDENTIAL_JSON = 64 * 1024
MAX_PASSKEYS = 20
SIGN_COUNT_REFUSED = "passkey_sign_count"
KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


class PasskeyRefused(DomainError):
    """A browser's passkey answer was not accepted (the message says what to do)."""

    status = 400
    code = "passkey_refused"
    title = _l("Passkey not accepted")
    #: For :data:`SIGN_COUNT_REFUSED`: the passkey, and its counts (known, reported).
    passkey_id: int | None = None
    counts: tuple[int, int] | None = None


class PasskeyName(BaseModel):
    """A passkey's name as people type it; blank means "choose one for me"."""

    name: Annotated[Annotated[str, StringConstraints(max_length=100)] | None, OptionalText] = None


# ---------------------------------------------------------------- the relying party


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: the RP ID (a host name) and the one origin accepted."""

    id: str
    origin: str
    name: str = RP_NAME


def relying_party() -> RelyingParty | None:
    """The relying party of ``PORTAL_BASE_URL``, or ``None`` when it cannot have passkeys
    (an IP address or no host: WebAuthn's RP ID must be a domain name or ``localhost``)."""
    parts = urlsplit(current_app.config["PORTAL_BASE_URL"])
    host = (parts.hostname or "").lower()
    if not host or parts.scheme not in ("http", "https"):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = "" if parts.port in (None, default_port) else f":{parts.port}"
    return RelyingParty(id=host, origin=f"{parts.scheme}://{host}{port}")


def passkeys_available() -> bool:
    """Whether this portal's address allows passkeys at all."""
    return relying_party() is not None


def _relying_party() -> RelyingParty:
    rp = relying_party()
    if rp is None:
        raise InvalidState(
            _l(
                "Passkeys need the portal to be served at a domain name "
                "(PORTAL_BASE_URL), not an IP address."
            ),
            code="passkeys_unavailable",
        )
    return rp


# ---------------------------------------------------------------- challenges


def _challenge_keep(purpose: str, user_id: int, challenge: bytes) -> None:
    """Remember a ceremony's challenge in the Flask session (replacing any earlier one)."""
    flask_session[CHALLENGE_KEY] = {
        "purpose": purpose,
        "user_id": user_id,
        "challenge": bytes_to_base64url(challenge),
        "issued_at": now_utc().isoformat(),
    }


def _challenge_take(purpose: str, user_id: int) -> tuple[bytes, dt.datetime]:
    """Take (and forget) the challenge made for ``purpose`` and ``user_id``, if still good."""
    kept = flask_session.pop(CHALLENGE_KEY, None)
    try:
        if kept["purpose"] != purpose or kept["user_id"] != user_id:
            raise KeyError("another ceremony's challenge")
        challenge = base64url_to_bytes(kept["challenge"])
        issued_at = dt.datetime.fromisoformat(kept["issued_at"])
    except (KeyError, TypeError, ValueError):
        raise PasskeyRefused(
            _l("That passkey request is not the one this page started. Try again."),
            code="passkey_no_challenge",
        ) from None
    if not issued_at.tzinfo or now_utc() - issued_at > CHALLENGE_LIFETIME:
        raise PasskeyRefused(
            _l("That passkey request took more than 5 minutes. Try again."),
            code="passkey_challenge_expired",
        )
    return challenge, issued_at


def _credential_json(credential: str | dict[str, Any]) -> dict[str, Any]:
    """The browser's credential as a JSON object, or :class:`PasskeyRefused`."""
    if isinstance(credential, str):
        if not credential.strip():
            raise PasskeyRefused(
                _l(
                    "No passkey answer came with the form. Passkeys need JavaScript in the browser."
                ),
                code="passkey_missing",
            )
        if len(credential) > MAX_CREDENTIAL_JSON:
            raise PasskeyRefused(_l("That is not a passkey answer."), code="passkey_malformed")
        try:
            credential = json.loads(credential)
        except ValueError:
            raise PasskeyRefused(
                _l("That is not a passkey answer."), code="passkey_malformed"
            ) from None
    if not isinstance(credential, dict) or not isinstance(credential.get("id"), str):
        raise PasskeyRefused(_l("That is not a passkey answer."), code="passkey_malformed")
    return credential


# ---------------------------------------------------------------- reads


def passkey_count(session: Session, user_id: int) -> int:
    """How many passkeys the user has (any counts as a second factor)."""
    return int(
        session.scalar(
            sa.select(sa.func.count()).select_from(Passkey).where(Passkey.user_id == user_id)
        )
        or 0
    )


def _own(actor: Actor, user: User) -> None:
    """Only the signed-in person manages their own passkeys (a council admin resets a
    lost factor through ``factors_reset``, not here)."""
    if actor.kind != ActorKind.PERSON:  # a token or a job never holds a passkey
        raise PermissionDenied(_l("You may only manage your own passkeys."))
    policy.require(
        actor,
        Action.USER_SECOND_FACTOR_MANAGE,
        user_id=user.id,
        organisation_id=user.organisation_id,
        message=_l("You may only manage your own passkeys."),
    )


def passkeys_list(session: Session, *, actor: Actor, user: User) -> list[Passkey]:
    """The user's passkeys, oldest first (the owner only)."""
    _own(actor, user)
    return list(
        session.scalars(sa.select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id))
    )


def passkey_of(session: Session, *, actor: Actor, user: User, passkey_id: int) -> Passkey:
    """The owner's passkey ``passkey_id``, or :class:`NotFound` (never another's)."""
    _own(actor, user)
    passkey = session.scalar(
        sa.select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user.id)
    )
    if passkey is None:
        raise NotFound(_l("No such passkey."))
    return passkey


def _transports(value: str | None) -> list[AuthenticatorTransport] | None:
    names = [t for t in (value or "").split(",") if t in KNOWN_TRANSPORTS]
    return [AuthenticatorTransport(t) for t in names] or None


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(passkey.credential_id), transports=_transports(passkey.transports)
    )


def _user_handle(user: User) -> bytes:
    """A stable, opaque WebAuthn user handle: no email or database id leaves in it."""
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"passkey-user:{user.id}".encode(), hashlib.sha256).digest()


# ---------------------------------------------------------------- registration


def _may_register(user: User) -> None:
    if not user.password_hash:
        raise InvalidState(
            _l(
                "Accounts that sign in through their organisation's identity provider "
                "use its second factor, not a passkey here."
            ),
            code="passkey_not_for_sso",
        )


def registration_options(session: Session, *, actor: Actor, user: User) -> str:
    """The options for ``navigator.credentials.create()`` as JSON; keeps the challenge."""
    _own(actor, user)
    _may_register(user)
    rp = _relying_party()
    existing = passkeys_list(session, actor=actor, user=user)
    if len(existing) >= MAX_PASSKEYS:
        raise InvalidState(
            _l(
                "You have %(max_passkeys)s passkeys already. Remove one to add another.",
                max_passkeys=MAX_PASSKEYS,
            ),
            code="passkeys_too_many",
        )
    challenge = secrets.token_bytes(32)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=rp.name,
        user_id=_user_handle(user),
        user_name=user.email,
        user_display_name=user.display_name,
        challenge=challenge,
        timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(p) for p in existing],
    )
    _challenge_keep(REGISTER, user.id, challenge)
    return options_to_json(options)


def passkey_register(
    session: Session,
    *,
    actor: Actor,
    user: User,
    credential: str | dict[str, Any],
    name: str | None = None,
) -> Passkey:
    """Verify the browser's answer to :func:`registration_options` and keep the passkey."""
    _own(actor, user)
    _may_register(user)
    wanted = parse(PasskeyName, {"name": name}).name
    rp = _relying_party()
    challenge, _ = _challenge_take(REGISTER, user.id)
    answer = _credential_json(credential)
    try:
        verified = verify_registration_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        log.info("Passkey registration refused for user %s: %s", user.id, exc)
        raise PasskeyRefused(
            _l("The passkey could not be verified. Try again."), code="passkey_invalid"
        ) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if session.scalar(sa.select(Passkey.id).where(Passkey.credential_id == credential_id)):
        raise Conflict(_l("That passkey is registered already."), code="passkey_exists")
    transports = (answer.get("response") or {}).get("transports") or []
    known = [t for t in transports if isinstance(t, str) and t in KNOWN_TRANSPORTS]
    count = passkey_count(session, user.id)
    passkey = Passkey(
        user_id=user.id,
        organisation_id=user.organisation_id,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=",".join(dict.fromkeys(known))[:200] or None,
        name=wanted or f"Passkey {count + 1}",
    )
    session.add(passkey)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="passkey.register",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"passkey_id": passkey.id, "name": passkey.name},
    )
    return passkey


# ---------------------------------------------------------------- authentication


def authentication_options(session: Session, *, user: User) -> str:
    """The options for ``navigator.credentials.get()`` for ``user``, whose password was just
    verified, as JSON; keeps the challenge. Only ``user``'s own passkeys are allowed."""
    rp = _relying_party()
    passkeys = list(session.scalars(sa.select(Passkey).where(Passkey.user_id == user.id)))
    if not passkeys:
        raise InvalidState(_l("This account has no passkey."), code="passkey_none")
    challenge = secrets.token_bytes(32)
    options = generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
        allow_credentials=[_descriptor(p) for p in passkeys],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    _challenge_keep(AUTHENTICATE, user.id, challenge)
    return options_to_json(options)


def passkey_authenticate(
    session: Session, *, user: User, credential: str | dict[str, Any]
) -> Passkey:
    """Verify the browser's answer to :func:`authentication_options` for ``user``.

    Refused (:class:`PasskeyRefused`): no or another ceremony's challenge, older than
    five minutes, a credential that is not one of ``user``'s, a wrong origin, RP ID or
    signature, a passkey used since the challenge was made (a replayed answer), or a
    signature counter that did not grow (``code`` :data:`SIGN_COUNT_REFUSED`).
    On success the passkey's counter and last use are updated.
    """
    rp = _relying_party()
    challenge, issued_at = _challenge_take(AUTHENTICATE, user.id)
    answer = _credential_json(credential)
    passkey = session.scalar(
        sa.select(Passkey).where(Passkey.user_id == user.id, Passkey.credential_id == answer["id"])
    )
    if passkey is None:
        raise PasskeyRefused(
            _l("That passkey is not registered for this account."), code="passkey_unknown"
        )
    if passkey.last_used_at is not None and passkey.last_used_at >= issued_at:
        raise PasskeyRefused(
            _l("That passkey answer was used already. Try again."), code="passkey_replayed"
        )
    try:
        # The counter is checked below, after the signature, to tell that refusal apart.
        verified = verify_authentication_response(
            credential=answer,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=0,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        log.info("Passkey sign-in refused for user %s: %s", user.id, exc)
        raise PasskeyRefused(
            _l("The passkey could not be verified. Try again."), code="passkey_invalid"
        ) from None
    new_count = verified.new_sign_count
    if (new_count or passkey.sign_count) and new_count <= passkey.sign_count:
        log.warning(
            "Passkey %s of user %s reported sign count %s after %s: possibly cloned",
            passkey.id,
            user.id,
            new_count,
            passkey.sign_count,
        )
        refused = PasskeyRefused(
            _l(
                "This passkey's use counter went backwards, so it may have been "
                "copied. Sign in another way and remove it from your account's "
                "security page."
            ),
            code=SIGN_COUNT_REFUSED,
        )
        refused.passkey_id = passkey.id
        refused.counts = (passkey.sign_count, new_count)
        raise refused
    passkey.sign_count = new_count
    passkey.last_used_at = now_utc()
    session.flush()
    return passkey


def passkey_sign_in_refused(
    session: Session, *, user: User, refused: PasskeyRefused, ip: str | None
) -> None:
    """Put a refused passkey sign-in that suggests a copied credential (its counter went
    backwards) in the audit log, as ``passkey.clone_suspected``. For the page to call after
    it rolled the refused attempt back, so the event is kept; other refusals write nothing."""
    if refused.code != SIGN_COUNT_REFUSED or refused.passkey_id is None:
        return
    known, reported = refused.counts or (None, None)
    audit_record(
        session,
        actor=Actor.anonymous(ip),
        action="passkey.clone_suspected",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        after={"passkey_id": refused.passkey_id, "sign_count": known, "reported": reported},
    )


# ---------------------------------------------------------------- changes


def passkey_rename(
    session: Session, *, actor: Actor, user: User, passkey_id: int, name: str
) -> Passkey:
    """Give one of the owner's passkeys another name."""
    _own(actor, user)
    passkey = passkey_of(session, actor=actor, user=user, passkey_id=passkey_id)
    wanted = parse(PasskeyName, {"name": name}).name
    if not wanted:
        raise ValidationFailed(
            _l("Give the passkey a name."), errors={"name": [_l("This field is required.")]}
        )
    before = passkey.name
    passkey.name = wanted
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="passkey.rename",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        before={"passkey_id": passkey.id, "name": before},
        after={"passkey_id": passkey.id, "name": wanted},
    )
    return passkey


def passkey_remove(session: Session, *, actor: Actor, user: User, passkey_id: int) -> None:
    """Remove one of the owner's passkeys. A person who must have a second factor and
    removes their last one is sent to enrol another at their next page."""
    _own(actor, user)
    passkey = passkey_of(session, actor=actor, user=user, passkey_id=passkey_id)
    name = passkey.name
    session.delete(passkey)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="passkey.remove",
        target_type="user",
        target_id=user.id,
        target_label=user.email,
        organisation_id=user.organisation_id,
        before={"passkey_id": passkey_id, "name": name},
    )


def passkeys_remove_all(session: Session, user_id: int) -> int:
    """Remove every passkey of a user; how many. For lost-factor recovery
    (``factors_reset``), which checks the actor and writes the audit event."""
    result = session.execute(sa.delete(Passkey).where(Passkey.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)
