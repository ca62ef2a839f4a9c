"""Writes and rules of single sign-on: connections, domains, who may sign in, JIT accounts.

Services take the session and keyword-only arguments, flush but never commit,
audit what they change and raise domain errors with stable codes. The OpenID
conversation itself is :mod:`portal.identity.sso`'s; these functions decide
what a verified set of ID token claims means for the portal.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.audit.services import audit_record
from portal.crypto import decrypt_secret, encrypt_secret
from portal.db import council_wide
from portal.i18n import state_word
from portal.identity import sso as gateway
from portal.identity.accounts import user_create
from portal.identity.invitations import invitation_create
from portal.identity.models import User
from portal.identity.sign_in import SignInRefused, authenticate, sign_in_refusal
from portal.identity.sso import Pending as Pending  # re-exported for the pages
from portal.identity.sso import ProviderSettings, normalise_issuer
from portal.identity.sso import SsoFailed as SsoFailed  # re-exported for the pages
from portal.kernel import policy
from portal.kernel.actor import Actor, Role
from portal.kernel.clock import now_utc
from portal.kernel.errors import Conflict, DomainError, NotFound, ValidationFailed
from portal.kernel.i18n import _l
from portal.kernel.policy import Action
from portal.observability import login_failed
from portal.sso import selectors
from portal.sso.models import DomainStatus, EmailDomain, SsoConnection
from portal.tenancy.models import Organisation
from portal.validation import Email, Stripped, check_email, optional_text, parse


class SsoRefused(DomainError):
    """A verified sign-in that the portal's rules refuse (wrong domain, no account, …)."""

    status = 403
    code = "sso_refused"
    title = _l("Sign-in refused")


# ---------------------------------------------------------------- connections


def _check_issuer(value: str) -> str:
    value = normalise_issuer(value)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("Enter the provider's issuer URL, e.g. https://login.example.com.")
    if parts.query or parts.fragment:
        raise ValueError("An issuer URL has no query or fragment.")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("Use https: only a provider on this machine may use plain http.")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Issuer = Annotated[str, Stripped, AfterValidator(_check_issuer)]


class _ConnectionFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: Issuer
    client_id: Annotated[str, Stripped, StringConstraints(min_length=1, max_length=255)]
    client_secret: optional_text(2000) = None  # type: ignore[valid-type]
    enabled: bool = True
    enforce_sso: bool = False
    break_glass_email: optional_text(254) = None  # type: ignore[valid-type]
    jit_enabled: bool = True
    group_claim: optional_text(100) = None  # type: ignore[valid-type]
    required_group: optional_text(255) = None  # type: ignore[valid-type]


def _may_configure(actor: Actor, organisation_id: int) -> None:
    policy.require(
        actor,
        Action.SSO_CONFIGURE,
        organisation_id=organisation_id,
        message=_l("Only the organisation's admin configures its single sign-on."),
    )


def _break_glass_admin(session: Session, organisation: Organisation, email: str) -> User:
    user = session.scalar(
        sa.select(User).where(
            User.email == email.strip().lower(), User.organisation_id == organisation.id
        )
    )
    if user is None or user.role != Role.ORG_ADMIN or not user.is_active:
        raise ValidationFailed(
            _l("The break-glass account must be an active admin of your organisation."),
            errors={
                "break_glass_email": [
                    _l(
                        "%(email)s is not an active admin of %(organisation)s.",
                        email=email,
                        organisation=organisation.name,
                    )
                ]
            },
        )
    if user.password_hash is None:
        raise ValidationFailed(
            _l("The break-glass admin needs a password, since they sign in without the provider."),
            errors={"break_glass_email": [_l("This admin has no password yet.")]},
        )
    return user


def connection_save(
    session: Session, *, actor: Actor, organisation: Organisation, data: dict[str, Any]
) -> SsoConnection:
    """Create or change the organisation's OpenID connection.

    The client secret is encrypted before it is stored; leaving it empty when
    changing a connection keeps the stored one. Enforcing SSO needs a
    break-glass admin with a password, so an outage of the provider cannot
    lock the organisation out.
    """
    _may_configure(actor, organisation.id)
    fields = parse(_ConnectionFields, data)
    connection = selectors.connection_of(session, organisation_id=organisation.id)
    errors: dict[str, list[str]] = {}
    if connection is None and not fields.client_secret:
        errors["client_secret"] = ["Enter the client secret the provider gave you."]
    if bool(fields.group_claim) != bool(fields.required_group):
        field = "required_group" if fields.group_claim else "group_claim"
        errors[field] = ["Give both the group claim and the group, or neither."]
    if fields.enforce_sso and not fields.break_glass_email:
        errors["break_glass_email"] = [
            "Name a break-glass admin who may still sign in with a password."
        ]
    if errors:
        raise ValidationFailed(_l("Some fields need attention."), errors=errors)
    break_glass = (
        _break_glass_admin(session, organisation, fields.break_glass_email)
        if fields.break_glass_email
        else None
    )
    before = _connection_snapshot(connection) if connection else None
    if connection is None:
        connection = SsoConnection(organisation_id=organisation.id)
        session.add(connection)
    if (
        connection.issuer != fields.issuer
        or connection.client_id != fields.client_id
        or fields.client_secret
    ):
        connection.last_test_at = connection.last_test_ok = connection.last_test_message = None
    connection.issuer = fields.issuer
    connection.client_id = fields.client_id
    if fields.client_secret:
        connection.client_secret_encrypted = encrypt_secret(fields.client_secret)
    connection.enabled = fields.enabled
    connection.enforce_sso = fields.enforce_sso
    connection.break_glass_user_id = break_glass.id if break_glass else None
    connection.jit_enabled = fields.jit_enabled
    connection.group_claim = fields.group_claim
    connection.required_group = fields.required_group
    session.flush()
    after = _connection_snapshot(connection)
    if fields.client_secret:
        after["client_secret"] = "changed"  # noqa: S105 (a note, never the secret)
    audit_record(
        session,
        actor=actor,
        action="sso.connection_create" if before is None else "sso.connection_update",
        target_type="sso_connection",
        target_id=connection.id,
        target_label=connection.issuer,
        organisation_id=organisation.id,
        before=before,
        after=after,
    )
    return connection


def _connection_snapshot(connection: SsoConnection) -> dict[str, Any]:
    # Never the secret, not even encrypted.
    return {
        "issuer": connection.issuer,
        "client_id": connection.client_id,
        "enabled": connection.enabled,
        "enforce_sso": connection.enforce_sso,
        "break_glass_user_id": connection.break_glass_user_id,
        "jit_enabled": connection.jit_enabled,
        "group_claim": connection.group_claim,
        "required_group": connection.required_group,
    }


def connection_may_test(actor: Actor, connection: SsoConnection) -> bool:
    """Only the organisation's own admin runs its connection's test sign-in."""
    return policy.allowed(actor, Action.SSO_TEST, organisation_id=connection.organisation_id)


def connection_record_test(
    session: Session, *, actor: Actor, connection: SsoConnection, ok: bool, message: str
) -> SsoConnection:
    """Keep the outcome of a "test connection" run on the connection."""
    policy.require(actor, Action.SSO_TEST, organisation_id=connection.organisation_id)
    connection.last_test_at = now_utc()
    connection.last_test_ok = ok
    connection.last_test_message = message[:4000]
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="sso.connection_test",
        target_type="sso_connection",
        target_id=connection.id,
        target_label=connection.issuer,
        organisation_id=connection.organisation_id,
        after={"ok": ok, "message": message[:500]},
    )
    return connection


def connection_delete(session: Session, *, actor: Actor, connection: SsoConnection) -> None:
    """Remove the connection: the organisation's people sign in with passwords again."""
    _may_configure(actor, connection.organisation_id)
    audit_record(
        session,
        actor=actor,
        action="sso.connection_delete",
        target_type="sso_connection",
        target_id=connection.id,
        target_label=connection.issuer,
        organisation_id=connection.organisation_id,
        before=_connection_snapshot(connection),
    )
    session.delete(connection)
    session.flush()


def redirect_uri_for(organisation: Organisation | None) -> str:
    """The callback address to register at the provider (the council's when no organisation)."""
    base = current_app.config["PORTAL_BASE_URL"]
    if organisation is None:
        return f"{base}/sso/council/callback"
    return f"{base}/sso/org/{organisation.slug}/callback"


def provider_settings(connection: SsoConnection) -> ProviderSettings:
    """What the gateway needs for an organisation's connection (the secret decrypted)."""
    scopes = "openid email profile"
    if connection.group_claim:
        scopes += " groups"
    return ProviderSettings(
        issuer=connection.issuer,
        client_id=connection.client_id,
        client_secret=decrypt_secret(connection.client_secret_encrypted),
        redirect_uri=redirect_uri_for(connection.organisation),
        scopes=scopes,
        clock_skew=current_app.config["PORTAL_SSO_CLOCK_SKEW_SECONDS"],
    )


def council_provider_settings() -> ProviderSettings:
    """The council's own provider, from ``PORTAL_COUNCIL_OIDC_*``."""
    if not selectors.council_sso_configured():
        raise NotFound(
            _l("The council has no single sign-on configured."), code="sso_not_configured"
        )
    config = current_app.config
    return ProviderSettings(
        issuer=config["PORTAL_COUNCIL_OIDC_ISSUER"],
        client_id=config["PORTAL_COUNCIL_OIDC_CLIENT_ID"],
        client_secret=config["PORTAL_COUNCIL_OIDC_CLIENT_SECRET"],
        redirect_uri=redirect_uri_for(None),
        clock_skew=config["PORTAL_SSO_CLOCK_SKEW_SECONDS"],
    )


# ---------------------------------------------------------------- the conversation with a provider

# Pages keep a sign-in in flight (``Pending``, imported above) and show the gateway's
# refusals (``SsoFailed``, with its stage); they reach the OpenID gateway only through here.


def sign_in_begin(
    connection: SsoConnection | None,
    *,
    context: dict[str, Any],
    login_hint: str | None = None,
    prompt: str | None = None,
) -> tuple[str, Pending]:
    """Where to send the browser for a sign-in, and what to keep until it comes back.

    ``connection`` is the organisation's; ``None`` means the council's own provider.
    """
    settings = council_provider_settings() if connection is None else provider_settings(connection)
    return gateway.begin(settings, login_hint=login_hint, prompt=prompt, context=context)


def sign_in_finish(
    connection: SsoConnection | None, pending: Pending, query: dict[str, str]
) -> dict[str, Any]:
    """The verified claims of a sign-in the provider sent back (``query`` is the callback's)."""
    settings = council_provider_settings() if connection is None else provider_settings(connection)
    return gateway.finish(settings, pending, query)


# ---------------------------------------------------------------- domains

# Mail services shared by the public: nobody may claim them for an organisation.
SHARED_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "t-online.de",
        "mail.ru",
        "yandex.ru",
        "ya.ru",
        "rambler.ru",
        "qq.com",
        "163.com",
    }
)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def check_domain(value: str) -> str:
    """A host name in lower case (IDNA-encoded), with at least two labels."""
    value = (value or "").strip().lower().lstrip("@").rstrip(".")
    try:
        value = value.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError("Enter a domain name such as example.com.") from exc
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError("Enter a domain name such as example.com.")
    if labels[-1].isdigit():
        raise ValueError("Enter a domain name, not an address.")
    if value in SHARED_MAIL_DOMAINS:
        raise ValueError(f"{value} is a public mail service; it cannot belong to an organisation.")
    return value


class _DomainFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: Annotated[str, Stripped, AfterValidator(check_domain)]


def domain_claim(
    session: Session, *, actor: Actor, organisation: Organisation, domain: str
) -> EmailDomain:
    """An org admin claims an email domain; it routes to SSO once a council admin verifies it."""
    _may_configure(actor, organisation.id)
    fields = parse(_DomainFields, {"domain": domain})
    mine = session.scalar(
        sa.select(EmailDomain).where(
            EmailDomain.organisation_id == organisation.id, EmailDomain.domain == fields.domain
        )
    )
    if mine is not None:
        raise Conflict(
            _l(
                "%(domain)s is already claimed (%(status)s).",
                domain=fields.domain,
                status=state_word(mine.status),
            ),
            code="domain_claimed",
            errors={"domain": [_l("Already claimed by your organisation.")]},
        )
    if selectors.verified_domain(session, fields.domain) is not None:
        raise Conflict(
            _l("%(domain)s is verified for another organisation.", domain=fields.domain),
            code="domain_taken",
            errors={"domain": [_l("This domain belongs to another organisation.")]},
        )
    claim = EmailDomain(
        organisation_id=organisation.id,
        domain=fields.domain,
        status=DomainStatus.PENDING,
        claimed_by_id=actor.user_id,
    )
    session.add(claim)
    session.flush()
    audit_record(
        session,
        actor=actor,
        action="domain.claim",
        target_type="email_domain",
        target_id=claim.id,
        target_label=claim.domain,
        organisation_id=organisation.id,
        after={"domain": claim.domain, "status": claim.status},
    )
    return claim


def domain_verify(session: Session, *, actor: Actor, claim: EmailDomain) -> EmailDomain:
    """A council admin verifies a claim; a domain is verified for one organisation at most."""
    policy.require(
        actor,
        Action.SSO_DOMAIN_VERIFY,
        organisation_id=claim.organisation_id,
        message=_l("Only council admins verify domains."),
    )
    if claim.status == DomainStatus.VERIFIED:
        return claim
    holder = selectors.verified_domain(session, claim.domain)
    if holder is not None:
        raise Conflict(
            _l(
                "%(domain)s is already verified for %(organisation)s.",
                domain=claim.domain,
                organisation=holder.organisation.name,
            ),
            code="domain_taken",
        )
    claim.status = DomainStatus.VERIFIED
    claim.verified_by_id = actor.user_id
    claim.verified_at = now_utc()
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # a concurrent approval for another organisation won
        raise Conflict(
            _l("%(domain)s was just verified for another organisation.", domain=claim.domain),
            code="domain_taken",
        ) from exc
    audit_record(
        session,
        actor=actor,
        action="domain.verify",
        target_type="email_domain",
        target_id=claim.id,
        target_label=claim.domain,
        organisation_id=claim.organisation_id,
        before={"status": DomainStatus.PENDING},
        after={"status": DomainStatus.VERIFIED},
    )
    return claim


def domain_remove(session: Session, *, actor: Actor, claim: EmailDomain) -> None:
    """Withdraw a claim (its organisation's admin) or reject or revoke it (a council admin)."""
    _may_configure(actor, claim.organisation_id)
    audit_record(
        session,
        actor=actor,
        action="domain.reject" if actor.role == Role.COUNCIL_ADMIN else "domain.remove",
        target_type="email_domain",
        target_id=claim.id,
        target_label=claim.domain,
        organisation_id=claim.organisation_id,
        before={"domain": claim.domain, "status": claim.status},
    )
    session.delete(claim)
    session.flush()


# ---------------------------------------------------------------- signing in


def password_sign_in(session: Session, *, email: str, password: str) -> User:
    """Sign in with a password, unless the email's organisation enforces SSO.

    Where SSO is enforced, only the break-glass admin it names may use a
    password; everyone else is told to continue with the provider.
    """
    connection = selectors.enforcing_connection(session, email)
    if connection is not None:
        break_glass = connection.break_glass_user
        if break_glass is None or break_glass.email != (email or "").strip().lower():
            login_failed("sso_required")
            raise SignInRefused(
                _l(
                    "%(organisation)s signs in with its own identity provider; passwords "
                    "are turned off. Continue with single sign-on.",
                    organisation=connection.organisation.name,
                ),
                code="sso_required",
            )
    return authenticate(session, email=email, password=password)


def _groups(claims: dict[str, Any], claim: str) -> list[str]:
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []


def check_claims(
    session: Session, *, connection: SsoConnection, claims: dict[str, Any]
) -> tuple[str, User | None]:
    """The email the claims sign in, and its account if it exists; or :class:`SsoRefused`.

    Nothing is written: the sign-in and the "test connection" report use it alike.
    """
    org = connection.organisation
    raw = claims.get("email")
    if not raw or not isinstance(raw, str):
        raise SsoRefused(
            _l(
                "Your identity provider did not send an email address. Ask your IT "
                "team to release the “email” claim to the portal."
            ),
            code="email_missing",
        )
    try:
        email = check_email(raw)
    except ValueError as exc:
        raise SsoRefused(
            _l("The provider sent “%(raw)s”, which is not an email address.", raw=raw)
        ) from exc
    if claims.get("email_verified") is False:
        raise SsoRefused(
            _l("Your provider says %(email)s is not verified.", email=email),
            code="email_unverified",
        )
    domain = selectors.email_domain_of(email)
    if not selectors.is_verified_domain_of(session, organisation_id=org.id, domain=domain):
        raise SsoRefused(
            _l(
                "%(email)s is not on an email domain verified for %(org)s, so it "
                "cannot sign in through its provider.",
                email=email,
                org=org.name,
            ),
            code="email_domain_not_verified",
        )
    if (
        connection.group_claim
        and connection.required_group
        and connection.required_group not in _groups(claims, connection.group_claim)
    ):
        raise SsoRefused(
            _l(
                "Your provider does not put you in the group “%(required_group)s” that "
                "%(org)s requires for the portal. Ask your IT team for access.",
                required_group=connection.required_group,
                org=org.name,
            ),
            code="not_in_required_group",
        )
    user = session.scalar(sa.select(User).where(User.email == email))
    if user is not None:
        if user.organisation_id != org.id:
            raise SsoRefused(
                _l(
                    "%(email)s has an account that does not belong to %(org)s.",
                    email=email,
                    org=org.name,
                ),
                code="account_elsewhere",
            )
        if user.sso_subject and user.sso_subject != str(claims.get("sub")):
            raise SsoRefused(
                _l(
                    "%(email)s is linked to another identity at your provider. Ask your "
                    "organisation's admin.",
                    email=email,
                ),
                code="subject_mismatch",
            )
    elif not connection.jit_enabled:
        raise SsoRefused(
            _l(
                "There is no account for %(email)s yet. Ask your organisation's admin to add you.",
                email=email,
            ),
            code="no_account",
        )
    return email, user


def sso_account(
    session: Session, *, connection: SsoConnection, claims: dict[str, Any], ip: str | None = None
) -> User:
    """The account verified claims sign in to, created on the first sign-in (JIT, role member)."""
    org = connection.organisation
    email, user = check_claims(session, connection=connection, claims=claims)
    actor = Actor.system(f"single sign-on ({org.slug})", organisation_id=org.id, ip=ip)
    if user is None:
        name = claims.get("name") if isinstance(claims.get("name"), str) else ""
        user = user_create(
            session,
            actor=actor,
            email=email,
            role=Role.MEMBER,
            organisation=org,
            name=(name or "")[:200],
        )
        audit_record(
            session,
            actor=actor,
            action="sso.jit_provision",
            target_type="user",
            target_id=user.id,
            target_label=email,
            organisation_id=org.id,
            after={"issuer": connection.issuer},
        )
    refusal = sign_in_refusal(user)
    if refusal:
        raise SsoRefused(refusal, code="account_unavailable")
    if not user.sso_subject:
        user.sso_subject = str(claims["sub"])
        session.flush()
    return user


def council_account(session: Session, *, claims: dict[str, Any]) -> User:
    """The council staff account the council provider's claims sign in to (never created)."""
    raw = claims.get("email")
    try:
        email = check_email(raw) if isinstance(raw, str) else ""
    except ValueError:
        email = ""
    if not email or claims.get("email_verified") is False:
        raise SsoRefused(
            _l("The council's provider did not send a verified email address."),
            code="email_missing",
        )
    user = session.scalar(sa.select(User).where(User.email == email))
    if user is None or not user.is_council:
        raise SsoRefused(
            _l(
                "%(email)s is not a council staff account. Ask a council admin to invite you.",
                email=email,
            ),
            code="no_account",
        )
    refusal = sign_in_refusal(user)
    if refusal:
        raise SsoRefused(refusal, code="account_unavailable")
    return user


# ---------------------------------------------------------------- people given seats


class _ProvisionFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email


def _not_assignable(email: str, organisation: Organisation) -> Conflict:
    """The one answer for an address this organisation cannot give a seat to.

    An account in another organisation (or on the council's staff) and a new
    address on a domain another organisation has verified get the same answer,
    which names neither: it must not tell an organisation's admin who has an
    account elsewhere.
    """
    return Conflict(
        _l(
            "%(email)s cannot be given a seat in %(organisation)s.",
            email=email,
            organisation=organisation.name,
        ),
        code="email_not_assignable",
        errors={"user_email": [_l("This address cannot be given a seat in this organisation.")]},
    )


def user_provision(
    session: Session, *, actor: Actor, organisation: Organisation, email: str
) -> User:
    """The member account for ``email`` in ``organisation``, created and invited if new.

    A new account has no password until its person follows the invitation. An
    email that belongs to another organisation or to council staff, or a new one on
    a domain another organisation has verified (its people sign in through that
    organisation's provider, so they cannot be provisioned here), is refused with
    one answer (:func:`_not_assignable`) that does not say which.
    """
    policy.require(actor, Action.SSO_PROVISION, organisation_id=organisation.id)
    fields = parse(_ProvisionFields, {"email": email})
    # Whose the address is, council-wide (one account per email); only the answer leaves.
    with council_wide(session):
        holder = session.execute(
            sa.select(User.id, User.organisation_id).where(User.email == fields.email)
        ).first()
    if holder is not None:
        if holder.organisation_id != organisation.id:
            raise _not_assignable(fields.email, organisation)
        user = session.get(User, holder.id)
        assert user is not None  # the organisation's own account: in scope
        return user
    claim = selectors.verified_domain(session, selectors.email_domain_of(fields.email))
    if claim is not None and claim.organisation_id != organisation.id:
        raise _not_assignable(fields.email, organisation)
    user = user_create(
        session, actor=actor, email=fields.email, role=Role.MEMBER, organisation=organisation
    )
    invitation_create(
        session, actor=actor, email=fields.email, role=Role.MEMBER, organisation=organisation
    )
    return user
