"""Reading SSO connections and email domains, and finding where an email signs in."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from portal.db import council_wide
from portal.kernel.errors import NotFound
from portal.kernel.i18n import _l
from portal.kernel.scope import Scope
from portal.sso.models import DomainStatus, EmailDomain, SsoConnection
from portal.tenancy.models import Organisation, OrganisationStatus


def email_domain_of(email: str) -> str:
    """The lower-case domain part of an email address ('' when there is none)."""
    _, at, domain = (email or "").strip().lower().rpartition("@")
    return domain if at else ""


def connection_of(session: Session, *, organisation_id: int) -> SsoConnection | None:
    """The organisation's SSO connection, if it has one."""
    return session.scalar(
        sa.select(SsoConnection).where(SsoConnection.organisation_id == organisation_id)
    )


def domains_of(session: Session, *, organisation_id: int) -> list[EmailDomain]:
    """The organisation's claimed and verified domains, by name."""
    return list(
        session.scalars(
            sa.select(EmailDomain)
            .where(EmailDomain.organisation_id == organisation_id)
            .order_by(EmailDomain.domain)
        )
    )


def domain_in_scope(session: Session, *, scope: Scope, domain_id: int) -> EmailDomain:
    """One domain claim in ``scope`` (council staff see every one), or :class:`NotFound`."""
    query = sa.select(EmailDomain).where(
        EmailDomain.id == domain_id, scope.filter(EmailDomain.organisation_id)
    )
    found = session.scalar(query)
    if found is None:
        raise NotFound(_l("No such domain."))
    return found


def domains_for_council(session: Session) -> list[EmailDomain]:
    """Every claim, pending first, for council admins to approve."""
    return list(
        session.scalars(
            sa.select(EmailDomain)
            .join(Organisation, Organisation.id == EmailDomain.organisation_id)
            .order_by(
                sa.case((EmailDomain.status == DomainStatus.PENDING, 0), else_=1),
                EmailDomain.domain,
                Organisation.name,
            )
        )
    )


def verified_domain(session: Session, domain: str) -> EmailDomain | None:
    """The verified claim on ``domain`` (at most one organisation holds it).

    Whoever asks, the claim is looked for council-wide: a domain belongs to one
    organisation at most, and another's claim is what refuses this one's.
    """
    if not domain:
        return None
    with council_wide(session):
        return session.scalar(
            sa.select(EmailDomain).where(
                EmailDomain.domain == domain, EmailDomain.status == DomainStatus.VERIFIED
            )
        )


def is_verified_domain_of(session: Session, *, organisation_id: int, domain: str) -> bool:
    """Whether ``domain`` is verified for this organisation."""
    found = verified_domain(session, domain)
    return found is not None and found.organisation_id == organisation_id


@dataclass(frozen=True)
class Realm:
    """Where an email signs in: an organisation's provider, or the council's."""

    kind: str  # "organisation" or "council"
    label: str
    organisation: Organisation | None = None
    connection: SsoConnection | None = None


def council_sso_configured() -> bool:
    """Whether the council's own provider is configured (``PORTAL_COUNCIL_OIDC_*``)."""
    config = current_app.config
    return bool(
        config.get("PORTAL_COUNCIL_OIDC_ISSUER")
        and config.get("PORTAL_COUNCIL_OIDC_CLIENT_ID")
        and config.get("PORTAL_COUNCIL_OIDC_CLIENT_SECRET")
    )


def realm_for_email(session: Session, email: str) -> Realm | None:
    """The provider an email is sent to from ``/login``, or None for a password.

    An organisation's verified domain with an enabled connection goes to its
    provider (while the organisation is active); a council domain listed in
    ``PORTAL_COUNCIL_OIDC_DOMAINS`` goes to the council's provider.
    """
    domain = email_domain_of(email)
    if not domain:
        return None
    claim = verified_domain(session, domain)
    if claim is not None:
        connection = connection_of(session, organisation_id=claim.organisation_id)
        org = claim.organisation
        if (
            connection is not None
            and connection.enabled
            and org.status == OrganisationStatus.ACTIVE
        ):
            return Realm(
                kind="organisation", label=org.name, organisation=org, connection=connection
            )
        return None
    if council_sso_configured() and domain in current_app.config.get(
        "PORTAL_COUNCIL_OIDC_DOMAINS", ()
    ):
        return Realm(kind="council", label=current_app.config["PORTAL_COUNCIL_NAME"])
    return None


def enforcing_connection(session: Session, email: str) -> SsoConnection | None:
    """The connection that forbids password sign-in for this email's domain, if any."""
    claim = verified_domain(session, email_domain_of(email))
    if claim is None:
        return None
    connection = connection_of(session, organisation_id=claim.organisation_id)
    if connection is not None and connection.enabled and connection.enforce_sso:
        return connection
    return None
