"""``portal suppliers documents`` and ``portal suppliers compliance-check``: vendors'
compliance documents from the command line (issue 15). The commands join the ``suppliers``
group (:mod:`portal.suppliers.cli`) when this module is imported (:mod:`portal.cli` does)."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from portal.catalogue.models import Vendor
from portal.db import db_session
from portal.kernel.actor import Actor
from portal.kernel.clock import now_utc
from portal.suppliers import compliance
from portal.suppliers.cli import suppliers
from portal.suppliers.compliance_models import ComplianceDocument

CLI = Actor.system("cli: suppliers")


@suppliers.command("documents")
@click.option("--vendor", "slug", help="Only this vendor's documents (its slug).")
@click.option(
    "--expiring",
    is_flag=True,
    help=f"Only documents expired or expiring within {compliance.EXPIRY_WARNING_DAYS} days.",
)
@with_appcontext
def suppliers_documents(slug: str | None, expiring: bool) -> None:
    """List compliance documents: vendor, kind, expiry and its state, title (tab-separated)."""
    session = db_session()
    today = now_utc().date()
    query = sa.select(ComplianceDocument).join(Vendor).order_by(Vendor.slug, ComplianceDocument.id)
    if slug is not None:
        vendor = session.scalar(sa.select(Vendor).where(Vendor.slug == slug.strip().lower()))
        if vendor is None:
            raise click.ClickException(f"No vendor {slug!r}.")
        query = query.where(ComplianceDocument.vendor_id == vendor.id)
    shown = 0
    for document in session.scalars(query):
        if document.expired(today):
            state = "expired"
        elif document.expiring(today, within_days=compliance.EXPIRY_WARNING_DAYS):
            state = "expiring"
        else:
            state = "valid"
        if expiring and state == "valid":
            continue
        until = document.expires_on.isoformat() if document.expires_on else "-"
        required = "required" if document.required else "-"
        click.echo(
            f"{document.vendor.slug}\t{document.kind.value}\t{until}\t{state}\t{required}"
            f"\t{document.title}"
        )
        shown += 1
    if not shown:
        click.echo("No documents.")


@suppliers.command("compliance-check")
@with_appcontext
def suppliers_compliance_check() -> None:
    """Run the daily expiry check now (as the job suppliers.compliance_expiry does): put
    vendors whose required documents expired under review, if the council's setting says so."""
    session = db_session()
    if not compliance.settings_get(session).compliance_review_on_expiry:
        click.echo("The council's setting is off: expired documents put no vendor under review.")
        return
    acted = compliance.compliance_expiry_check(session, actor=CLI, today=now_utc().date())
    session.commit()
    for document in acted:
        click.echo(
            f"{document.vendor.slug}\t{document.vendor.status}\t{document.title} expired "
            f"{document.expires_on}"
        )
    if not acted:
        click.echo("No newly expired required documents.")
