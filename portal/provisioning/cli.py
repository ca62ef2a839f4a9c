"""``portal provisioning …``: provisioning into vendors' applications by hand (issue 17).

``reconcile [--vendor SLUG] [--fix]``: compare what vendors' applications hold over SCIM
with the seats of their products, print the drift, store the run (the delivery log
pages show it), and with ``--fix`` set it right. Without ``--fix`` nothing changes at
the vendor (the scheduled job fixes as each vendor's setting says).
"""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from portal.catalogue.models import Vendor
from portal.catalogue.selectors import vendor_by_slug
from portal.db import db_session
from portal.kernel.actor import Actor
from portal.kernel.errors import DomainError
from portal.provisioning.models import VendorProvisioning
from portal.provisioning.reconcile import reconcile_vendor
from portal.provisioning.reconcile_models import RunState


@click.group("provisioning")
def provisioning() -> None:
    """Provisioning into vendors' applications (SCIM, webhooks)."""


@provisioning.command("reconcile")
@click.option("--vendor", "slug", help="Only this vendor (its slug); default: every SCIM vendor.")
@click.option("--fix", is_flag=True, help="Set the drift right at the vendor (default: list it).")
@with_appcontext
def provisioning_reconcile(slug: str | None, fix: bool) -> None:
    """List (and with --fix, set right) the drift between vendors' users and the seats;
    exit 1 if a vendor could not be read."""
    session = db_session()
    actor = Actor.system("cli: provisioning reconcile")
    try:
        if slug is not None:
            vendors = [vendor_by_slug(session, slug)]
        else:
            vendors = list(
                session.scalars(
                    sa.select(Vendor)
                    .join(VendorProvisioning, VendorProvisioning.vendor_id == Vendor.id)
                    .where(
                        VendorProvisioning.scim_base_url.is_not(None),
                        VendorProvisioning.scim_token_sealed.is_not(None),
                    )
                    .order_by(Vendor.slug)
                )
            )
        runs = [reconcile_vendor(session, actor=actor, vendor=v, fix=fix) for v in vendors]
    except DomainError as error:
        raise click.ClickException(str(error.detail)) from None
    session.commit()
    if not runs:
        click.echo("No vendor has a SCIM connection: nothing to reconcile.")
    failed = 0
    for vendor, run in zip(vendors, runs, strict=True):
        if run.state == RunState.FAILED:
            failed += 1
            click.echo(f"{vendor.slug}\tfailed\t{run.error}")
            continue
        click.echo(
            f"{vendor.slug}\t{run.vendor_users} at the vendor, {run.seated_people} with a seat, "
            f"{run.drift_count} drift" + (f", {run.fixed_count} fixed" if run.fix else "")
        )
        for finding in run.findings:
            fixed = f"\t{finding.fix.value}" if finding.fix else ""
            why = f"\t{finding.fix_error}" if finding.fix_error else ""
            click.echo(f"  {finding.kind.value}\t{finding.user_name}{fixed}{why}")
    if failed:
        raise SystemExit(1)
