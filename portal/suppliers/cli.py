"""``portal suppliers …``: the supplier commands (``poll``: read vendors' status pages)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from portal.db import db_session
from portal.kernel.actor import Actor
from portal.kernel.errors import DomainError
from portal.suppliers import selectors, statuspage


@click.group("suppliers")
def suppliers() -> None:
    """Suppliers: service status from vendors' status pages."""


@suppliers.command("poll")
@click.option("--vendor", "slug", help="Only this vendor (its slug); default: every vendor.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=statuspage.TIMEOUT,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@with_appcontext
def suppliers_poll(slug: str | None, timeout: float) -> None:
    """Read the status page of every vendor that has one (or of --vendor) now, as the
    scheduled job suppliers.poll_status does, and print what each said."""
    session = db_session()
    if slug is not None and not selectors.vendors_with_status_page(session, slug=slug):
        raise click.ClickException(f"No vendor {slug!r} with a status page address.")
    session.rollback()
    try:
        vendors, results = statuspage.poll_outside_transaction(
            session, Actor.system("cli: suppliers poll"), slug=slug, timeout=timeout
        )
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    session.commit()
    if not results:
        click.echo("No vendor has a status page address: nothing to read.")
    failed = 0
    for result in results:
        if result.ok:
            vendor = next(v for v in vendors if v.slug == result.vendor_slug)
            click.echo(
                f"{result.vendor_slug}\t{vendor.service_status.value}"
                f"{' (changed)' if result.status_changed else ''}\tincidents: "
                f"{result.incidents_opened} opened, {result.incidents_updated} updated, "
                f"{result.incidents_resolved} resolved"
            )
        else:
            failed += 1
            click.echo(f"{result.vendor_slug}\tFAILED\t{result.error}")
    if failed:
        raise click.ClickException(f"{failed} of {len(results)} status pages could not be read.")
