"""SSO test fixtures: real OpenID providers (oidc-provider) and organisations connected to them.

``idp`` and ``idp_b`` are two separate providers (two issuers, two key sets),
started once per test run on 127.0.0.1. ``sso_org`` makes an active
organisation with a verified domain, an org admin with a password, and a
connection to a provider with a client registered for that organisation's
redirect URI. ``begin_sso`` and ``finish_sso`` drive the portal's side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from portal.db import db
from tests.conftest import SYSTEM, OrgRef, UserRef, post_form
from tests.oidc.peer import OidcProvider

PORTAL = "http://portal.test"


@pytest.fixture(scope="session")
def idp() -> Iterator[OidcProvider]:
    provider = OidcProvider()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def idp_b() -> Iterator[OidcProvider]:
    provider = OidcProvider()
    yield provider
    provider.stop()


@pytest.fixture(autouse=True)
def _portal_address(request) -> Iterator[None]:
    """Providers send people back to ``PORTAL`` whatever another test left in the config."""
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    before = app.config["PORTAL_BASE_URL"]
    app.config["PORTAL_BASE_URL"] = PORTAL
    yield
    app.config["PORTAL_BASE_URL"] = before


@pytest.fixture(autouse=True)
def _fresh_provider_caches() -> Iterator[None]:
    from portal.identity import sso

    sso.clear_caches()
    yield
    sso.clear_caches()


@dataclass
class SsoOrg:
    org: OrgRef
    domain: str
    admin: UserRef
    issuer: str
    client_id: str
    client_secret: str

    @property
    def redirect_uri(self) -> str:
        return f"{PORTAL}/sso/org/{self.org.slug}/callback"


def connect(app, org: OrgRef, data: dict[str, Any]) -> None:
    """Save an organisation's connection through the service (as its admin would)."""
    from portal.sso.services import connection_save
    from portal.tenancy.models import Organisation

    with app.app_context():
        organisation = db.session.get(Organisation, org.id)
        connection_save(db.session, actor=SYSTEM, organisation=organisation, data=data)
        db.session.commit()
        db.session.remove()


def verify_domain(app, org: OrgRef, domain: str) -> None:
    from portal.sso.services import domain_claim, domain_verify
    from portal.tenancy.models import Organisation

    with app.app_context():
        organisation = db.session.get(Organisation, org.id)
        claim = domain_claim(db.session, actor=SYSTEM, organisation=organisation, domain=domain)
        domain_verify(db.session, actor=SYSTEM, claim=claim)
        db.session.commit()
        db.session.remove()


@pytest.fixture
def sso_org(app, make_org, make_user, idp) -> Callable[..., SsoOrg]:
    """An organisation signing in through ``provider`` (default ``idp``)."""

    def make(slug: str, *, provider: OidcProvider | None = None, **settings: Any) -> SsoOrg:
        provider = provider or idp
        org = make_org(slug)
        domain = f"{slug}.example"
        verify_domain(app, org, domain)
        admin = make_user("org_admin", org, email=f"admin@{domain}")
        client_id, secret = provider.register_client(f"{PORTAL}/sso/org/{slug}/callback")
        data = {"issuer": provider.issuer, "client_id": client_id, "client_secret": secret}
        data.update(settings)
        connect(app, org, data)
        return SsoOrg(org, domain, admin, provider.issuer, client_id, secret)

    return make


def begin_sso(client, email: str, **extra: Any):
    """Type the email on /login and continue: the portal's answer (a redirect to the provider)."""
    return post_form(client, "/login", {"email": email, "password": "", **extra})


def finish_sso(client, callback_url: str):
    """Hand the provider's redirect back to the portal (as the browser would)."""
    parts = urlsplit(callback_url)
    assert f"{parts.scheme}://{parts.netloc}" == PORTAL, callback_url
    return client.get(parts.path + ("?" + parts.query if parts.query else ""))


def live_sessions(app, email: str) -> int:
    """How many unrevoked sign-in sessions the account with ``email`` has (0 if none)."""
    import sqlalchemy as sa

    from portal.identity.models import User, UserSession

    with app.app_context():
        count = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(UserSession)
            .join(User, User.id == UserSession.user_id)
            .where(User.email == email, UserSession.revoked_at.is_(None))
        )
        db.session.remove()
        return count or 0


def account(app, email: str):
    """The account with ``email`` as a dict of columns, or None."""
    import sqlalchemy as sa

    from portal.identity.models import User

    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        values = (
            None
            if user is None
            else {c.key: getattr(user, c.key) for c in sa.inspect(User).column_attrs}
        )
        db.session.remove()
        return values
