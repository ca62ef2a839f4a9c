"""``portal vendor-admin …``: a vendor's admins from the command line (issue 15, SPEC 8.1).

``invite`` sends the same single-use invitation a council admin sends from the vendor's
council page; ``list`` prints the vendor's admins and pending invitations.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.identity import selectors
from portal.identity.invitations import invitation_create
from portal.kernel.actor import Actor, Role
from portal.kernel.errors import DomainError


def _fail(error: DomainError) -> click.ClickException:
    fields = "; ".join(
        f"{k}: {' '.join(str(m) for m in v)}"
        for k, v in (error.errors or {}).items()
        if " ".join(str(m) for m in v) != str(error.detail)
    )
    return click.ClickException(f"{error.detail} {fields}".strip())


@click.group("vendor-admin")
def vendor_admin() -> None:
    """A vendor's admins, who use the vendor portal."""


@vendor_admin.command("invite")
@click.option("--vendor", "slug", required=True, help="The vendor's slug.")
@click.option("--email", required=True, help="Whom to invite.")
@with_appcontext
def vendor_admin_invite(slug: str, email: str) -> None:
    """Invite EMAIL to be an admin of the vendor: a single-use link goes by mail."""
    session = db_session()
    try:
        vendor = vendor_by_slug(session, slug)
        invitation, _token = invitation_create(
            session,
            actor=Actor.system("cli: vendor-admin invite"),
            email=email,
            role=Role.VENDOR_ADMIN,
            organisation=None,
            vendor=vendor,
        )
        session.commit()
    except DomainError as error:
        session.rollback()
        raise _fail(error) from error
    click.echo(f"Invitation to {invitation.email} as an admin of {vendor.slug} created.")


@vendor_admin.command("list")
@click.option("--vendor", "slug", required=True, help="The vendor's slug.")
@with_appcontext
def vendor_admin_list(slug: str) -> None:
    """Print the vendor's admins (email, state) and pending invitations."""
    session = db_session()
    try:
        vendor = vendor_by_slug(session, slug)
    except DomainError as error:
        raise _fail(error) from error
    for user in selectors.vendor_admins(session, vendor_id=vendor.id):
        click.echo(f"{user.email}\t{'active' if user.is_active else 'inactive'}")
    for invitation in selectors.vendor_invitations_pending(session, vendor_id=vendor.id):
        click.echo(f"{invitation.email}\tinvited ({invitation.state})")
